"""Small pydantic models of the HCS documents the service reads.

Only the fields the service acts on are declared; every model allows and keeps
extra fields, so a full schema document passes through. (Full schema models
live in aiohcs.schema; these stay small on purpose.)

`parse_document` turns any failure into HcsFault(HCS_E_INVALID_JSON) whose
message names the JSON field, e.g. ``Container.Storage: Input should be an
object``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aiohcs import hresults
from aiohcs.host.errors import HcsFault


class Document(BaseModel):
    # strict: "Storage": 5 or "ReadOnly": "yes" are shape errors, not coercions.
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


class Version(Document):
    Major: int
    Minor: int


class Layer(Document):
    Id: str | None = None
    Path: str
    PathType: str | None = None


class StorageSettings(Document):
    Layers: list[Layer] = Field(default_factory=list)
    Path: str | None = None


class MappedDirectory(Document):
    HostPath: str
    ContainerPath: str
    ReadOnly: bool = False


class ContainerMemory(Document):
    SizeInMB: int | None = Field(default=None, ge=0)


class ContainerProcessor(Document):
    Count: int | None = Field(default=None, ge=0)
    Maximum: int | None = Field(default=None, ge=0, le=10000)
    Weight: int | None = Field(default=None, ge=0, le=10000)


class ContainerSettings(Document):
    GuestOs: dict[str, Any] | None = None
    Storage: StorageSettings
    MappedDirectories: list[MappedDirectory] = Field(default_factory=list)
    Memory: ContainerMemory | None = None
    Processor: ContainerProcessor | None = None


class ComputeSystem(Document):
    Owner: str | None = None
    SchemaVersion: Version | None = None
    HostingSystemId: str | None = None
    HostedSystem: dict[str, Any] | None = None
    Container: ContainerSettings | None = None
    VirtualMachine: dict[str, Any] | None = None
    ShouldTerminateOnLastHandleClosed: bool = False

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> ComputeSystem:
        present = [
            n
            for n in ("Container", "VirtualMachine", "HostedSystem")
            if getattr(self, n) is not None
        ]
        if len(present) != 1:
            got = ", ".join(present) if present else "none"
            raise ValueError(
                f"exactly one of Container, VirtualMachine, HostedSystem is required (got {got})"
            )
        return self


class ProcessParameters(Document):
    ApplicationName: str | None = None
    CommandLine: str | None = None
    CommandArgs: list[str] | None = None
    User: str | None = None
    WorkingDirectory: str | None = None
    Environment: dict[str, str] | None = None
    EmulateConsole: bool = False
    CreateStdInPipe: bool = False
    CreateStdOutPipe: bool = False
    CreateStdErrPipe: bool = False
    ConsoleSize: list[int] | None = Field(default=None, min_length=2, max_length=2)


class ShutdownOptions(Document):
    Mechanism: str | None = None
    Type: str | None = None
    Force: bool = False
    Reason: str | None = None
    # aiohcs extension: seconds between SIGTERM and SIGKILL (default: service flag).
    GracePeriodSeconds: float | None = Field(default=None, ge=0)


class SignalProcessOptions(Document):
    Signal: int | str


class ConsoleSizeSettings(Document):
    Height: int = Field(ge=0, le=0xFFFF)
    Width: int = Field(ge=0, le=0xFFFF)


class CloseHandleSettings(Document):
    Handle: str


class ProcessModifyRequest(Document):
    Operation: str
    ConsoleSize: ConsoleSizeSettings | None = None
    CloseHandle: CloseHandleSettings | None = None


class SystemQuery(Document):
    Ids: list[str] | None = None
    Names: list[str] | None = None
    Types: list[str] | None = None
    Owners: list[str] | None = None


class PropertyQuery(Document):
    PropertyTypes: list[str] = Field(default_factory=list)


D = TypeVar("D", bound=Document)


def field_path(loc: tuple[int | str, ...]) -> str:
    """('Container', 'Storage', 'Layers', 0, 'Path') -> 'Container.Storage.Layers[0].Path'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_validation_error(err: ValidationError, root: str = "(document)") -> str:
    """One line per problem: ``Path.To.Field: problem``."""
    lines = []
    for e in err.errors(include_url=False):
        # model-level validators report an empty loc; union members add the
        # member type name to loc ("int", "str"), which only confuses readers.
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        where = field_path(loc) or root
        msg = str(e["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if msg.startswith("Input should be a valid dictionary"):
            msg = "Input should be a JSON object"
        lines.append(f"{where}: {msg}")
    return "; ".join(dict.fromkeys(lines))


_UNION_TAGS = frozenset({"int", "str", "float", "bool"})


def parse_document(model: type[D], text: str, what: str) -> D:
    """Parse `text` as `model`; ``""`` means "no document" (all defaults).

    `what` names the document in messages ("ComputeSystem", "ProcessParameters").
    """
    if text.strip() == "":
        text = "{}"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise HcsFault(hresults.HCS_E_INVALID_JSON, f"{what}: invalid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise HcsFault(
            hresults.HCS_E_INVALID_JSON,
            f"{what}: expected a JSON object, got {type(raw).__name__}",
        )
    try:
        return model.model_validate(raw, strict=None)
    except ValidationError as e:
        raise HcsFault(hresults.HCS_E_INVALID_JSON, describe_validation_error(e, what)) from None
