"""A small hand-written subset of the HCS schema 2.x as pydantic v2 models.

Attributes are snake_case, JSON names PascalCase (``alias``); construct with
either.  Every model keeps unknown fields (``extra="allow"``) so a document
from a newer schema round-trips unchanged, and output is meant to be produced
with ``model_dump_json(by_alias=True, exclude_unset=True)`` (what
:func:`aiohcs._documents.to_json` does) so only what the caller set is sent.

A later task generates the full schema; names here follow the schema so that
code written against this subset keeps working.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal


class HcsModel(BaseModel):
    """Base of every schema model: PascalCase aliases, extra fields kept."""

    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="allow",
    )

    def to_json(self) -> str:
        """The document as HCS expects it: PascalCase, only the fields that were set."""
        return self.model_dump_json(by_alias=True, exclude_unset=True)


class Version(HcsModel):
    major: int
    minor: int


class Layer(HcsModel):
    id: str | None = None
    path: str
    path_type: str | None = None


class Storage(HcsModel):
    layers: list[Layer] = Field(default_factory=list)
    path: str | None = None


class MappedDirectory(HcsModel):
    host_path: str
    container_path: str
    read_only: bool | None = None


class Container(HcsModel):
    guest_os: dict[str, Any] | None = None
    storage: Storage | None = None
    mapped_directories: list[MappedDirectory] | None = None
    memory: dict[str, Any] | None = None
    processor: dict[str, Any] | None = None
    networking: dict[str, Any] | None = None


class ComputeSystem(HcsModel):
    owner: str | None = None
    schema_version: Version | None = None
    hosting_system_id: str | None = None
    hosted_system: dict[str, Any] | None = None
    container: Container | None = None
    virtual_machine: dict[str, Any] | None = None
    should_terminate_on_last_handle_closed: bool | None = None


class ProcessParameters(HcsModel):
    application_name: str | None = None
    command_line: str | None = None
    command_args: list[str] | None = None
    user: str | None = None
    working_directory: str | None = None
    environment: dict[str, str] | None = None
    restricted_token: bool | None = None
    emulate_console: bool | None = None
    create_std_in_pipe: bool | None = None
    create_std_out_pipe: bool | None = None
    create_std_err_pipe: bool | None = None
    console_size: list[int] | None = None
    use_existing_login: bool | None = None
    use_legacy_console: bool | None = None


class ProcessDetails(HcsModel):
    process_id: int | None = None
    image_name: str | None = None
    create_timestamp: str | None = None
    user_time100ns: int | None = Field(default=None, alias="UserTime100ns")
    kernel_time100ns: int | None = Field(default=None, alias="KernelTime100ns")
    memory_commit_bytes: int | None = None
    memory_working_set_private_bytes: int | None = None
    memory_working_set_shared_bytes: int | None = None


class Properties(HcsModel):
    """Result of HcsGetComputeSystemProperties and element of HcsEnumerateComputeSystems."""

    id: str | None = None
    system_type: str | None = None
    runtime_os_type: str | None = None
    name: str | None = None
    owner: str | None = None
    runtime_id: str | None = None
    state: str | None = None
    stopped: bool | None = None
    exit_type: str | None = None
    process_list: list[ProcessDetails] | None = None
    statistics: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    terminate_on_last_handle_closed: bool | None = None
    system_guid: str | None = Field(default=None, alias="SystemGUID")


class ProcessStatus(HcsModel):
    """HcsEventProcessExited data, HcsWaitForProcessExit and HcsGetProcessProperties result."""

    process_id: int | None = None
    exited: bool | None = None
    exit_code: int | None = None
    last_wait_result: int | None = None


class SystemExitStatus(HcsModel):
    """HcsEventSystemExited data and HcsWaitForComputeSystemExit result."""

    status: int | None = None
    exit_type: str | None = None
    attribution: list[dict[str, Any]] | None = None


class ResultError(HcsModel):
    """The failure document of any operation."""

    error: int | None = None
    error_message: str | None = None
    error_events: list[dict[str, Any]] | None = None
    attribution: list[dict[str, Any]] | None = None


class ServiceProperties(HcsModel):
    """Result of HcsGetServiceProperties: one entry per requested property type."""

    properties: list[Any] | None = None
    property_responses: dict[str, Any] | None = None


class SystemQuery(HcsModel):
    ids: list[str] | None = None
    names: list[str] | None = None
    types: list[str] | None = None
    owners: list[str] | None = None


class PropertyQuery(HcsModel):
    """System_PropertyQuery / Service_PropertyQuery."""

    property_types: list[str] | None = None


__all__ = [
    "ComputeSystem",
    "Container",
    "HcsModel",
    "Layer",
    "MappedDirectory",
    "ProcessDetails",
    "ProcessParameters",
    "ProcessStatus",
    "Properties",
    "PropertyQuery",
    "ResultError",
    "ServiceProperties",
    "Storage",
    "SystemExitStatus",
    "SystemQuery",
    "Version",
]
