"""Parsing documents, readable errors, and the strict check.

Two levels (see docs/schema.md, "Validation"):

* lenient (``parse`` / ``validate(..., strict=False)``): types, ranges and the
  document rules (e.g. ComputeSystem needs exactly one of Container,
  VirtualMachine, HostedSystem).  Unknown properties and enum values are kept,
  because real HCS hosts send and accept fields the published schema lacks.
* strict (``validate(..., strict=True)``): the lenient checks, then every
  property and enum value kept that no schema file (nor the short list of
  known extensions) defines is an error, with a "did you mean" for wrong case.
  This is how a host pinned to the published schema judges a document.

Every problem is reported as ``JSON.Path: problem``, for example
``VirtualMachine.ComputeTopology.Memory.SizeInMB: expected integer, got "lots"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ._base import HcsEnum, HcsModel, json_name

M = TypeVar("M", bound=HcsModel)


@dataclass(frozen=True)
class Problem:
    """One problem of a document: where (a JSON path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SchemaError(ValueError):
    """A document does not fit its model.  ``str()`` is one line: problems joined by ``; ``."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def join_path(path: str, part: int | str) -> str:
    """``join_path("Devices.Scsi", "Primary disk")`` -> ``Devices.Scsi["Primary disk"]``."""
    if isinstance(part, int):
        return f"{path}[{part}]"
    if not _IDENT.match(part):
        return f"{path}[{json.dumps(part)}]"
    return f"{path}.{part}" if path else part


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, BaseModel):
        return f"a {type(value).__name__}"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_EXPECTED = {
    "int_type": "expected integer",
    "int_parsing": "expected integer",
    "string_type": "expected string",
    "bool_type": "expected boolean",
    "bool_parsing": "expected boolean",
    "float_type": "expected number",
    "list_type": "expected array",
    "dict_type": "expected object",
    "model_type": "expected object",
    "model_attributes_type": "expected object",
}


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {_shown(err.get('input'))}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}, got {_shown(err.get('input'))}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}, got {_shown(err.get('input'))}"
    if kind == "json_invalid":
        return f"invalid JSON: {ctx.get('error', err['msg'])}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "enum_type":
        msg = f"{msg}, got {_shown(err.get('input'))}"
    return msg


def format_validation_error(err: ValidationError, root: str = "") -> list[Problem]:
    """pydantic's ValidationError as problems with JSON paths (``A.B[0].C: expected ...``).

    ``root`` names the document for problems of the document itself (empty loc),
    e.g. ``ComputeSystem: exactly one of Container, ...``.
    """
    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for e in err.errors(include_url=False):
        path = ""
        for part in e["loc"]:
            path = join_path(path, part)
        where = path or root or err.title
        p = (where, _message(e))
        if p not in seen:
            seen.add(p)
            out.append(Problem(*p))
    return out


def describe_validation_error(err: ValidationError, root: str = "") -> str:
    """One line: every problem of ``err`` as ``Path: problem``, joined by ``; ``."""
    return "; ".join(str(p) for p in format_validation_error(err, root))


def parse(model: type[M], data: str | bytes | Mapping[str, Any] | HcsModel) -> M:
    """Parse a document (JSON text, a dict, or a model) leniently; raise SchemaError."""
    try:
        if isinstance(data, str | bytes):
            return model.model_validate_json(data)
        if isinstance(data, HcsModel):
            data = data.model_dump(mode="json")
        return model.model_validate(data)
    except ValidationError as e:
        raise SchemaError(format_validation_error(e, model.__name__)) from None


# --------------------------------------------------------------------------- strict


def _suggest(key: str, known: list[str]) -> str:
    lower = key.lower().replace("_", "")
    for k in known:
        if k.lower() == lower:
            return f" (did you mean {k!r}? property names are case-sensitive)"
    return ""


def strict_problems(doc: HcsModel, root: str = "") -> list[Problem]:
    """What the strict check finds in an already parsed document: properties and
    enum values no schema file defines, and the strict document rules."""
    problems: list[Problem] = []
    _walk(doc, root, problems)
    return problems


def _walk(value: Any, path: str, problems: list[Problem]) -> None:
    if isinstance(value, HcsModel):
        cls = type(value)
        known = [json_name(cls, attr) for attr in cls.model_fields]
        for key in value.model_extra or {}:
            problems.append(
                Problem(
                    join_path(path, key),
                    f"unknown property of {cls.__name__}{_suggest(key, known)}",
                )
            )
        for attr in cls.model_fields:
            if attr in value.model_fields_set:
                _walk(getattr(value, attr), join_path(path, json_name(cls, attr)), problems)
        rule = _STRICT_RULES.get(cls.__name__)
        if rule is not None:
            problems.extend(Problem(path or cls.__name__, m) for m in rule(value))
    elif isinstance(value, HcsEnum):
        if not value.is_known:
            problems.append(
                Problem(
                    path,
                    f"unknown value {value.value!r} of {type(value).__name__} "
                    f"(expected {type(value)._expected()})",
                )
            )
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, join_path(path, i), problems)
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(v, join_path(path, str(k)), problems)


def _modify_setting_request(doc: Any) -> list[str]:
    if doc.resource_path is None and doc.guest_request is None:
        return ["ResourcePath is required (or GuestRequest for a guest-only request)"]
    return []


_STRICT_RULES = {"ModifySettingRequest": _modify_setting_request}


def validate(
    model: type[M], data: str | bytes | Mapping[str, Any] | HcsModel, *, strict: bool = False
) -> M:
    """Parse ``data`` as ``model``; with ``strict`` also reject anything unknown.

    Raises :class:`SchemaError` listing every problem as ``JSON.Path: problem``.
    """
    doc = parse(model, data)
    if strict:
        problems = strict_problems(doc)
        if problems:
            raise SchemaError(problems)
    return doc
