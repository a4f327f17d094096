"""What a compute-system backend provides, and how one is chosen for a document.

The state machine (aiohcs.host.system) is backend-agnostic; a backend knows how
to run one kind of system. Containers: aiohcs.host.container. A VM backend
(aiohcs.host.vm, QEMU): VirtualMachine documents. Optional backend methods
(save, modify, memory_properties, guest_connection_properties, and a `notify`
attribute for system events) are looked up by the compute system.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohcs import hresults
from aiohcs.host.documents import ComputeSystem, ProcessParameters
from aiohcs.host.errors import HcsFault
from aiohcs.host.reaper import ExitStatus, Reaper

if TYPE_CHECKING:
    from aiohcs.host.container.runtime import Runtime


@dataclass(slots=True)
class LaunchedProcess:
    pid: int  # as seen inside the system; what the client is told
    host_pid: int
    exited: asyncio.Future[ExitStatus]
    client_fds: dict[int, int] = field(default_factory=dict)  # fdmask bit -> fd to hand over
    console: int | None = None  # pty master kept by the service for resize / ^D
    # A process the service cannot signal itself (inside a VM): signals, pty
    # resize and stdin EOF go through this object instead.
    remote: RemoteProcess | None = None


class RemoteProcess(Protocol):
    async def signal(self, signum: int) -> None: ...

    async def resize(self, height: int, width: int) -> None: ...

    async def close_stdin(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BackendContext:
    """Service-wide things a backend needs."""

    state_dir: Path
    reaper: Reaper
    runtime: Runtime
    init_path: Path
    vm_accel: str = "auto"  # QEMU accelerator: auto, kvm or tcg


class SystemBackend(Protocol):
    system_type: str

    async def prepare(self) -> None:
        """Validate and lay out what `start` needs (at create time)."""

    async def start(self) -> asyncio.Future[ExitStatus]:
        """Start the system; the future resolves when it has exited."""

    async def stop(self, sig: str) -> None:
        """Deliver `sig` ("TERM" or "KILL") to the whole system."""

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def create_process(self, params: ProcessParameters) -> LaunchedProcess: ...

    async def process_list(self) -> list[dict[str, Any]]: ...

    async def statistics(self, start_time: float) -> dict[str, Any]: ...

    async def cleanup(self) -> None:
        """Release runtime state, mounts and files after exit (idempotent)."""


def make_backend(system_id: str, doc: ComputeSystem, ctx: BackendContext) -> SystemBackend:
    if doc.container is not None:
        from aiohcs.host.container.backend import ContainerBackend

        return ContainerBackend(system_id, doc.container, ctx)
    if doc.virtual_machine is not None:
        from aiohcs.host.vm.backend import VmBackend

        # qemu.build_plan reads the section as JSON values.
        return VmBackend(system_id, doc.virtual_machine.model_dump(mode="json"), ctx)
    raise HcsFault(
        hresults.E_NOT_SUPPORTED,
        "HostedSystem: hosted systems are not supported by this host service",
    )
