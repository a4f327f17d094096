"""The HCS documents the host service reads, parsed with :mod:`aiohcs.schema`.

There is one model set: every incoming document is validated by the generated
model of its schema definition (``ComputeSystem``, ``ProcessParameters``,
``ModifySettingRequest``, ``System_PropertyQuery``, ...), and every problem is
reported in the shared format of :func:`aiohcs.schema.format_validation_error`
(``VirtualMachine.ComputeTopology.Memory.SizeInMB: expected integer, got
"lots"``) as ``HcsFault(HCS_E_INVALID_JSON)``.

On top of the schema, :func:`parse_document` applies

* the host's strictness rule (docs/host.md, "Validation"): a property that
  differs from a known one only in case (``UEFI`` for ``Uefi``) and the
  properties of the 2018 pre-release v2 format (``DRAFT_PROPERTIES``) are
  rejected, like ``ModifySettingRequest`` without ``ResourcePath`` (nor
  ``GuestRequest``); every other unknown property or enum value is kept and
  logged, because real hosts accept fields newer than the published schema;
* the host's semantic checks: fields the service cannot act without
  (``Container.Storage``, ``Layers[i].Path``, ``ProcessModifyRequest.Operation``,
  ...) and ranges of what the runtimes take.  The backends check the rest
  (directories exist, a VM's boot method, unsupported VM fields).

The names below are the generated models themselves, read like any model
(snake_case attributes: ``doc.container``, ``params.user``), except two
subclasses that declare host extensions: ``SignalProcessOptions.signal`` may
also be a Linux signal number or name, and ``ShutdownOptions`` has
``grace_period_seconds`` (JSON ``GracePeriodSeconds``).
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import Field, ValidationError

from aiohcs import hresults, schema
from aiohcs.host.errors import HcsFault
from aiohcs.schema import HcsModel, Problem

log = logging.getLogger(__name__)

# A document with no definition of its own (kept for callers that do not
# name a model): any JSON object, fields kept as they are.
Document = HcsModel

# The documents the host reads with the generated models as they are.
ContainerSettings = schema.Container
ComputeSystem = schema.ComputeSystem
ProcessParameters = schema.ProcessParameters
ProcessModifyRequest = schema.ProcessModifyRequest
SystemQuery = schema.SystemQuery
# ``System_PropertyQuery`` or ``Service_PropertyQuery`` (both have ``PropertyTypes``;
# parse_document judges by the name it is given).
PropertyQuery = schema.SystemPropertyQuery

# The runtimes take the memory limit in bytes as an int64.
MAX_MEMORY_MB = (2**63 - 1) // (1024 * 1024)

# Properties of the 2018 pre-release v2 format (hcsshim uvm/sample.go; realdocs
# 20-23), by model: real HCS rejects them with HCS_E_INVALID_JSON.
DRAFT_PROPERTIES: dict[str, frozenset[str]] = {
    "ModifySettingRequest": frozenset({"ResourceType", "ResourceUri", "HostedSettings"}),
    "VirtualMachineMemory": frozenset({"Startup"}),
    "Devices": frozenset({"VPMem", "GuestInterface", "VirtualSMBShares"}),
}


# The generated models build lazily; build the ones subclassed here first, so the
# subclasses inherit resolved fields.
for _parent in (schema.ShutdownOptions, schema.SignalProcessOptions):
    _parent.model_rebuild()


class ShutdownOptions(schema.ShutdownOptions):
    # aiohcs extension: seconds between SIGTERM and SIGKILL (default: service flag).
    grace_period_seconds: float | int | None = Field(default=None, ge=0)


class SignalProcessOptions(schema.SignalProcessOptions):
    # aiohcs extension: a Linux signal number or name ("TERM", "SIGKILL") as well
    # as the schema's ProcessSignal values.
    signal: schema.ProcessSignal | int | None = None  # type: ignore[assignment]  # widened


# ------------------------------------------------------------------ host rules


def _required(value: Any, path: str) -> None:
    if value is None:
        raise HcsFault(hresults.HCS_E_INVALID_JSON, f"{path}: required")


def _at_most(value: int | None, limit: int, path: str) -> None:
    if value is not None and not 0 <= value <= limit:
        raise HcsFault(
            hresults.HCS_E_INVALID_JSON, f"{path}: must be between 0 and {limit}, got {value}"
        )


def check_container(c: schema.Container) -> None:
    """What the container backend cannot act without (paths are checked by oci.py)."""
    _required(c.storage, "Container.Storage")
    assert c.storage is not None
    for i, layer in enumerate(c.storage.layers or []):
        _required(layer.path, f"Container.Storage.Layers[{i}].Path")
    for i, md in enumerate(c.mapped_directories or []):
        _required(md.host_path, f"Container.MappedDirectories[{i}].HostPath")
        _required(md.container_path, f"Container.MappedDirectories[{i}].ContainerPath")
    if c.memory is not None:
        _at_most(c.memory.size_in_mb, MAX_MEMORY_MB, "Container.Memory.SizeInMB")
    if c.processor is not None:
        _at_most(c.processor.maximum, 10000, "Container.Processor.Maximum")
        _at_most(c.processor.weight, 10000, "Container.Processor.Weight")


def _check_compute_system(doc: schema.ComputeSystem) -> None:
    # Exactly one of Container / VirtualMachine / HostedSystem is a rule of the
    # generated model itself (aiohcs.schema._rules).
    if doc.schema_version is not None:
        _required(doc.schema_version.major, "SchemaVersion.Major")
        _required(doc.schema_version.minor, "SchemaVersion.Minor")
    if doc.container is not None:
        check_container(doc.container)


def _check_process_parameters(doc: schema.ProcessParameters) -> None:
    if doc.console_size is not None and len(doc.console_size) != 2:
        raise HcsFault(
            hresults.HCS_E_INVALID_JSON,
            f"ConsoleSize: expected [height, width], got {len(doc.console_size)} numbers",
        )


def _check_signal(doc: schema.SignalProcessOptions) -> None:
    _required(doc.signal, "Signal")


def _check_process_modify(doc: schema.ProcessModifyRequest) -> None:
    _required(doc.operation, "Operation")
    if doc.console_size is not None:
        _required(doc.console_size.height, "ConsoleSize.Height")
        _required(doc.console_size.width, "ConsoleSize.Width")
    if doc.close_handle is not None:
        _required(doc.close_handle.handle, "CloseHandle.Handle")


_CHECKS: dict[type[HcsModel], Callable[[Any], None]] = {
    schema.ComputeSystem: _check_compute_system,
    schema.ProcessParameters: _check_process_parameters,
    schema.SignalProcessOptions: _check_signal,
    schema.ProcessModifyRequest: _check_process_modify,
}


def strictness_problems(doc: HcsModel, root: str = "") -> tuple[list[Problem], list[Problem]]:
    """The strict check of aiohcs.schema, split by the host's rule into
    (rejected, tolerated): wrong-case spellings of known properties, draft
    properties and the strict document rules are rejected; other unknown
    properties and enum values are tolerated."""
    rejected: list[Problem] = []
    tolerated: list[Problem] = []
    for p in schema.strict_problems(doc, root):
        if p.message.startswith("unknown property of "):
            owner = p.message.removeprefix("unknown property of ").split(" ", 1)[0]
            key = p.path.rsplit(".", 1)[-1]
            if "did you mean" in p.message:
                rejected.append(p)
            elif key in DRAFT_PROPERTIES.get(owner, ()):
                rejected.append(Problem(p.path, f"{p.message} (a pre-release v2 property)"))
            else:
                tolerated.append(p)
        elif p.message.startswith("unknown value "):
            tolerated.append(p)
        else:
            rejected.append(p)
    return rejected, tolerated


# ------------------------------------------------------------------ parsing

D = TypeVar("D", bound=HcsModel)


def _schema_model(model: type[HcsModel], what: str) -> type[HcsModel]:
    """The generated model that judges a document: ``what`` when it names a schema
    definition that ``model`` does not already derive from, else ``model``."""
    named = schema.DEFINITIONS.get(what)
    if (
        isinstance(named, type)
        and issubclass(named, HcsModel)
        and not issubclass(model, named)
        and named is not model
    ):
        return named
    return model


def parse_document(model: type[D], text: str, what: str) -> D:
    """Parse ``text`` as ``model``; ``""`` means "no document" (all defaults).

    ``what`` names the document: the schema definition (``"ComputeSystem"``,
    ``"System_PropertyQuery"``, ``"ModifySettingRequest"``) and the root of
    messages about the document as a whole.  Every failure is
    ``HcsFault(HCS_E_INVALID_JSON)`` naming the JSON path.
    """
    if text.strip() == "":
        text = "{}"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise HcsFault(hresults.HCS_E_INVALID_JSON, f"{what}: invalid JSON: {e}") from None
    except RecursionError:
        raise HcsFault(
            hresults.HCS_E_INVALID_JSON, f"{what}: invalid JSON: nested too deeply"
        ) from None
    if not isinstance(raw, dict):
        raise HcsFault(
            hresults.HCS_E_INVALID_JSON,
            f"{what}: expected a JSON object, got {type(raw).__name__}",
        )
    judge = _schema_model(model, what)
    try:
        doc = judge.model_validate(raw)
    except ValidationError as e:
        raise HcsFault(
            hresults.HCS_E_INVALID_JSON, schema.describe_validation_error(e, what)
        ) from None
    except RecursionError:
        raise HcsFault(
            hresults.HCS_E_INVALID_JSON, f"{what}: invalid JSON: nested too deeply"
        ) from None
    rejected, tolerated = strictness_problems(doc)
    if rejected:
        raise HcsFault(hresults.HCS_E_INVALID_JSON, "; ".join(str(p) for p in rejected))
    for p in tolerated:
        log.info("%s: accepted but not in the published schema: %s", what, p)
    for base, check in _CHECKS.items():
        if isinstance(doc, base):
            check(doc)
    if isinstance(doc, model):
        return doc
    # ``what`` chose a different definition than ``model`` (e.g. PropertyQuery for
    # Service_PropertyQuery): the document is valid, give it the caller's type.
    return model.model_validate(doc.model_dump(mode="json"))


def command_args(params: ProcessParameters) -> list[str]:
    """The argv of a process: CommandArgs, else CommandLine split like a POSIX
    shell, else ApplicationName. Shared by the container and VM backends, so
    both reject a process with nothing to run the same way (HCS_E_INVALID_JSON)."""
    if params.command_args:
        return list(params.command_args)
    if params.command_line:
        try:
            args = shlex.split(params.command_line)
        except ValueError as e:
            raise HcsFault(hresults.HCS_E_INVALID_JSON, f"CommandLine: {e}") from None
        if args:
            return args
    if params.application_name:
        return [params.application_name]
    raise HcsFault(
        hresults.HCS_E_INVALID_JSON,
        "ProcessParameters: CommandArgs or CommandLine is required",
    )
