"""The host service: socket server, system table and request dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohcs import _wire, hresults
from aiohcs._wire import Header, Op
from aiohcs.host import persist
from aiohcs.host.backend import BackendContext, make_backend
from aiohcs.host.connection import Connection, Reply
from aiohcs.host.container import oci, rootfs
from aiohcs.host.container.backend import ContainerBackend
from aiohcs.host.container.runtime import Runtime, RuntimeFailure
from aiohcs.host.documents import (
    ComputeSystem as ComputeSystemDocument,
)
from aiohcs.host.documents import (
    Document,
    ProcessModifyRequest,
    ProcessParameters,
    PropertyQuery,
    ShutdownOptions,
    SignalProcessOptions,
    SystemQuery,
    parse_document,
)
from aiohcs.host.errors import HcsFault, system_not_found
from aiohcs.host.reaper import Reaper
from aiohcs.host.system import ComputeSystem, ProcessHandle, SystemHandle, begin_critical
from aiohcs.host.vm import plan9 as vm_plan9

log = logging.getLogger(__name__)

SUPPORTED_SCHEMA_VERSIONS = [{"Major": 2, "Minor": m} for m in range(1, 7)]
SYSTEM_PROPERTY_TYPES = {
    "State",
    "ProcessList",
    "Statistics",
    "TerminateOnLastHandleClosed",
    "Memory",  # VMs only (E_NOT_SUPPORTED for containers)
    "GuestConnection",  # VMs only
}
KNOWN_UNSUPPORTED_SYSTEM_PROPERTIES = {
    "SharedMemoryRegion",
    "GuestMemory",
    "ContainerCredentialGuard",
    "ICHeartbeatStatus",
    "ProcessorTopology",
    "CpuGroup",
    "SystemGUID",
}
SERVICE_PROPERTY_TYPES = {"Basic"}
KNOWN_UNSUPPORTED_SERVICE_PROPERTIES = {
    "CpuGroup",
    "ProcessorTopology",
    "ContainerCredentialGuard",
    "QoSCapabilities",
    "Memory",
}


@dataclass(frozen=True, slots=True)
class Settings:
    socket_path: Path
    state_dir: Path
    runtime_name: str
    runtime_path: str
    init_path: Path
    shutdown_grace: float = 10.0
    vm_accel: str = "auto"  # QEMU accelerator for VMs: auto, kvm, tcg
    # Stopping the service leaves running containers running (--keep-systems).
    keep_systems: bool = False


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HcsFault(hresults.HCS_E_INVALID_JSON, f"payload is not UTF-8: {e}") from None


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reaper = Reaper()
        self.runtime = Runtime(
            settings.runtime_name,
            settings.runtime_path,
            settings.state_dir / "runtime",
            self.reaper,
        )
        self.ctx = BackendContext(
            settings.state_dir,
            self.reaper,
            self.runtime,
            settings.init_path,
            vm_accel=settings.vm_accel,
        )
        self.systems: dict[str, ComputeSystem] = {}
        self.connections: set[Connection] = set()
        self._numbers = itertools.count(1)
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[int, Callable[[Connection, Header, bytes], Awaitable[Reply]]] = {
            Op.HELLO: self._hello,
            Op.ENUMERATE: self._enumerate,
            Op.CREATE_SYSTEM: self._create_system,
            Op.OPEN_SYSTEM: self._open_system,
            Op.START: self._start,
            Op.SHUTDOWN: self._shutdown,
            Op.TERMINATE: self._terminate,
            Op.CRASH: self._not_supported("CrashComputeSystem"),
            Op.PAUSE: self._pause,
            Op.RESUME: self._resume,
            Op.SAVE: self._save,
            Op.GET_PROPERTIES: self._get_properties,
            Op.MODIFY: self._modify,
            Op.CREATE_PROCESS: self._create_process,
            Op.OPEN_PROCESS: self._open_process,
            Op.TERMINATE_PROCESS: self._terminate_process,
            Op.SIGNAL_PROCESS: self._signal_process,
            Op.GET_PROCESS_INFO: self._get_process_info,
            Op.GET_PROCESS_PROPERTIES: self._get_process_properties,
            Op.MODIFY_PROCESS: self._modify_process,
            Op.GET_SERVICE_PROPERTIES: self._get_service_properties,
            Op.MODIFY_SERVICE_SETTINGS: self._not_supported("ModifyServiceSettings"),
        }

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.reaper.install(loop)
        for d in (self.settings.state_dir, self.settings.state_dir / "runtime"):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.settings.state_dir / "systems").mkdir(exist_ok=True, mode=0o700)
        adopted = await self._recover()
        await self._clean_leftovers(adopted)
        self._listener = self._bind(self.settings.socket_path)
        self._accepting = asyncio.ensure_future(self._accept_loop())
        log.info(
            "listening on %s (runtime %s, state %s)",
            self.settings.socket_path,
            self.runtime.name,
            self.settings.state_dir,
        )

    @staticmethod
    def _bind(path: Path) -> socket.socket:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        # Owner only from the first instant: umask covers the bind, chmod makes sure.
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
        return sock

    # ------------------------------------------------------------ restart survival

    def _persister(self, document: dict[str, Any]) -> Callable[[ComputeSystem], None]:
        """What a container system calls on every state change: write its state.json."""

        def save(system: ComputeSystem) -> None:
            backend = system.backend
            assert isinstance(backend, ContainerBackend)
            saved = persist.SavedSystem(
                id=system.id,
                document=document,
                owner=system.document.owner or "",
                runtime_container=backend.cid,
                state=system.state,
                start_time=system.start_time,
                init_pid=backend.init_pid,
                runtime_id=system.runtime_id,
            )
            persist.save(backend.dir, saved)

        return save

    async def _recover(self) -> set[str]:
        """Re-adopt the containers an earlier run left running; their runtime ids.

        Everything else under <state>/systems (no, unreadable or corrupt
        state.json, not running any more) is left to _clean_leftovers.
        """
        adopted: set[str] = set()
        systems = self.settings.state_dir / "systems"
        for d in sorted(systems.iterdir()) if systems.is_dir() else []:
            if not (d / persist.STATE_FILE).exists():
                continue
            try:
                saved = persist.load(d)
                system = await self._adopt(saved, d)
            except (OSError, ValueError, HcsFault, RuntimeFailure) as e:
                log.warning("state of %s is unusable (%s); cleaning it up", d, e)
                continue
            if system is None:
                log.warning(
                    "system %s (%s) is not running any more; cleaning it up", saved.id, saved.state
                )
                continue
            adopted.add(saved.runtime_container)
            log.warning(
                "re-adopted system %s (%s, init pid %s)", system.id, system.state, saved.init_pid
            )
            if system.document.should_terminate_on_last_handle_closed:
                # Its handles died with the earlier run: its last handle is closed.
                log.info("system %s: no handles after the restart, terminating", system.id)
                system.terminate_unhandled()
        return adopted

    async def _adopt(self, saved: persist.SavedSystem, d: Path) -> ComputeSystem | None:
        if oci.safe_name(saved.id) != saved.runtime_container or d.name != saved.runtime_container:
            raise ValueError(f"id {saved.id!r} does not belong to directory {d.name}")
        if saved.state not in ("Running", "Paused") or saved.init_pid is None:
            return None
        if saved.id in self.systems:
            raise ValueError(f"a second state file for system {saved.id!r}")
        doc = parse_document(ComputeSystemDocument, json.dumps(saved.document), "ComputeSystem")
        if doc.container is None:
            raise ValueError("only containers are re-adopted")
        backend = ContainerBackend(saved.id, doc.container, self.ctx)
        found = await backend.adopt(saved.init_pid)
        if found is None:
            return None
        status, exited = found
        system = ComputeSystem(saved.id, doc, backend, self.system_unused)
        system.runtime_id = saved.runtime_id
        system.persist = self._persister(saved.document)
        self.systems[saved.id] = system
        system.adopt(exited, "Paused" if status == "paused" else "Running", saved.start_time)
        return system

    async def _clean_leftovers(self, adopted: set[str]) -> None:
        """Delete runtime containers and mounts left by an earlier run, except `adopted`."""
        try:
            leftovers = await self.runtime.list()
        except (RuntimeFailure, ValueError) as e:
            log.warning("could not list leftover runtime containers: %s", e)
            leftovers = []
        for entry in leftovers:
            cid = str(entry.get("id", ""))
            if cid in adopted:
                continue
            log.warning("deleting leftover runtime container %s (%s)", cid, entry.get("status"))
            try:
                await self.runtime.delete(cid)
            except RuntimeFailure as e:
                log.error("could not delete leftover container %s: %s", cid, e)
        systems = self.settings.state_dir / "systems"
        for d in sorted(systems.iterdir()) if systems.is_dir() else []:
            if d.name in adopted:
                continue
            target = d / "rootfs"
            if await asyncio.to_thread(rootfs.is_mountpoint, str(target)):
                log.warning("unmounting leftover rootfs %s", target)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(rootfs.unmount, str(target))
            # Host bind mounts of a VM's run-time Plan9 shares (plan9-hot/*):
            # rmtree would delete the shared files through them.
            mounted = await asyncio.to_thread(vm_plan9.mounts_under, str(d))
            if mounted:
                log.warning("unmounting leftover mounts in %s: %s", d, mounted)
                if await asyncio.to_thread(vm_plan9.unmount_all_under, str(d)):
                    log.error("leftover mounts in %s stay; not removing it", d)
                    continue
            log.warning("removing leftover system directory %s", d)
            await asyncio.to_thread(shutil.rmtree, d, True)

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(self._listener)
            except OSError as e:
                log.error("accept: %s", e)
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            conn = Connection(self, sock, next(self._numbers))
            self.connections.add(conn)
            log.debug("connection %d opened", conn.number)
            self._spawn(conn.serve())

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget_connection(self, conn: Connection) -> None:
        self.connections.discard(conn)
        log.debug("connection %d closed", conn.number)

    async def stop(self) -> None:
        """Stop listening; terminate what is still running, or with keep_systems
        leave running containers running for the next run to re-adopt."""
        if self._accepting is not None:
            # cancel first: the pending sock_accept unregisters its fd
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(OSError):
                self.settings.socket_path.unlink()
        serving = [t for t in self._tasks if not t.done()]
        for conn in list(self.connections):
            conn.abort()
        if serving:
            # the accept loop never ends by itself; connections end on EOF
            await asyncio.wait(serving, timeout=5)
        for system in list(self.systems.values()):
            if self.settings.keep_systems and await self._keep(system):
                continue
            log.debug("stopping system %s (%s)", system.id, system.state)
            if system.state != "Stopped":
                with contextlib.suppress(HcsFault):
                    await system.terminate()
            # "Stopped" is set before the runtime delete and the unmount are
            # done: wait for those, or the overlay would stay mounted.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(system.stopped.wait(), 30)
        self.reaper.uninstall()

    async def _keep(self, system: ComputeSystem) -> bool:
        """Leave `system` running across the restart, if it is a running container.

        Systems that terminate when their last handle closes are not kept: the
        handles closed with the connections (they are being terminated).
        """
        if not isinstance(system.backend, ContainerBackend) or system.persist is None:
            return False
        if system.document.should_terminate_on_last_handle_closed:
            return False
        try:
            # Let a pause/resume in flight finish, so state.json is final.
            await asyncio.wait_for(system.lock.acquire(), 10)
        except TimeoutError:
            log.warning("system %s: busy; keeping it as it is", system.id)
            return system.state in ("Running", "Paused")
        try:
            if system.state not in ("Running", "Paused"):
                return False
            system.changed()
            log.info("leaving system %s %s (--keep-systems)", system.id, system.state)
            return True
        finally:
            system.lock.release()

    def system_unused(self, system: ComputeSystem) -> None:
        if self.systems.get(system.id) is system:
            del self.systems[system.id]
            log.info("system %s removed", system.id)

    def _system(self, system_id: str) -> ComputeSystem:
        system = self.systems.get(system_id)
        if system is None:
            raise system_not_found(system_id)
        return system

    # ------------------------------------------------------------ dispatch

    async def dispatch(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        handler = self._handlers.get(header.op)
        if handler is None:
            raise HcsFault(hresults.HCS_E_UNKNOWN_MESSAGE, f"unknown op code {header.op}")
        return await handler(conn, header, payload)

    @staticmethod
    def _not_supported(name: str) -> Callable[[Connection, Header, bytes], Awaitable[Reply]]:
        async def handler(conn: Connection, header: Header, payload: bytes) -> Reply:
            raise HcsFault(
                hresults.E_NOT_SUPPORTED, f"{name} is not supported by this host service"
            )

        return handler

    async def _hello(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        client = payload.decode("utf-8", errors="replace")
        log.debug("connection %d: hello from %r", conn.number, client)
        doc = {
            "ProtocolVersion": _wire.VERSION,
            "Service": "aiohcs",
            "Runtime": self.runtime.name,
            "SupportedSchemaVersions": SUPPORTED_SCHEMA_VERSIONS,
        }
        return Reply(json.dumps(doc).encode())

    # --- systems

    async def _enumerate(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        query = parse_document(SystemQuery, _text(payload), "SystemQuery")
        out = []
        for system in self.systems.values():
            props = system.basic_properties()
            if query.ids is not None and system.id not in query.ids:
                continue
            if query.names is not None and props["Name"] not in query.names:
                continue
            if query.types is not None and props["SystemType"] not in query.types:
                continue
            if query.owners is not None and props["Owner"] not in query.owners:
                continue
            out.append(props)
        return Reply(json.dumps(out).encode())

    async def _create_system(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        system_id, config = _wire.split_two(payload)
        if not system_id:
            raise HcsFault(hresults.E_INVALIDARG, "id: a compute system id is required")
        if "\0" in config or len(system_id) > 1024:
            raise HcsFault(hresults.E_INVALIDARG, "id: invalid compute system id")
        if system_id in self.systems:
            raise HcsFault(
                hresults.HCS_E_SYSTEM_ALREADY_EXISTS,
                f"a compute system with id {system_id!r} already exists",
            )
        doc = parse_document(ComputeSystemDocument, config, "ComputeSystem")
        if doc.schema_version is not None and doc.schema_version.major != 2:
            raise HcsFault(
                hresults.HCS_E_INVALID_JSON,
                f"SchemaVersion: {doc.schema_version.major}.{doc.schema_version.minor} is not "
                "supported (supported: 2.x)",
            )
        backend = make_backend(system_id, doc, self.ctx)
        if oci.safe_name(system_id) in {oci.safe_name(s) for s in self.systems}:
            raise HcsFault(
                hresults.HCS_E_SYSTEM_ALREADY_EXISTS,
                f"compute system id {system_id!r} collides with an existing system",
            )
        system = ComputeSystem(system_id, doc, backend, self.system_unused)
        # Reserve the id before the first await so a concurrent create fails.
        self.systems[system_id] = system
        begin_critical()
        try:
            await backend.prepare()
        except BaseException:
            del self.systems[system_id]
            with contextlib.suppress(Exception):
                await backend.cleanup()
            raise
        if isinstance(backend, ContainerBackend):
            system.persist = self._persister(json.loads(config))
            system.changed()
        handle = SystemHandle(conn, header.new_handle, system)
        system.add_handle(handle)
        log.info("system %s created", system_id)
        return Reply(handle=handle)

    async def _open_system(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        system = self._system(_text(payload).partition("\0")[0])
        handle = SystemHandle(conn, header.new_handle, system)
        system.add_handle(handle)
        return Reply(handle=handle)

    async def _start(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        await h.system.start()
        return Reply()

    async def _shutdown(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        options = parse_document(ShutdownOptions, _text(payload), "ShutdownOptions")
        await h.system.shutdown(options, self.settings.shutdown_grace)
        return Reply()

    async def _terminate(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        await h.system.terminate()
        return Reply()

    async def _pause(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        # Checked like every other option document, though no backend needs its
        # values yet (suspension levels are a Hyper-V notion).
        parse_document(Document, _text(payload), "PauseOptions")
        await h.system.pause()
        return Reply()

    async def _resume(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        await h.system.resume()
        return Reply()

    async def _save(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        options = parse_document(Document, _text(payload), "SaveOptions")
        await h.system.save(options.model_dump())
        return Reply()

    async def _modify(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        request = parse_document(Document, _text(payload), "ModifySettingRequest")
        await h.system.modify(request.model_dump())
        return Reply()

    async def _get_properties(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        query = parse_document(PropertyQuery, _text(payload), "System_PropertyQuery")
        property_types = [str(t) for t in query.property_types or []]
        for i, ptype in enumerate(property_types):
            if ptype in KNOWN_UNSUPPORTED_SYSTEM_PROPERTIES:
                raise HcsFault(
                    hresults.E_NOT_SUPPORTED,
                    f"PropertyTypes[{i}]: {ptype!r} is not supported for "
                    f"{h.system.backend.system_type} systems",
                )
            if ptype not in SYSTEM_PROPERTY_TYPES:
                raise HcsFault(
                    hresults.HCS_E_INVALID_JSON,
                    f"PropertyTypes[{i}]: unknown property type {ptype!r} (supported: "
                    f"{', '.join(sorted(SYSTEM_PROPERTY_TYPES))})",
                )
        props = await h.system.properties(property_types)
        return Reply(json.dumps(props).encode())

    # --- processes

    async def _create_process(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        params = parse_document(ProcessParameters, _text(payload), "ProcessParameters")
        record = await h.system.create_process(params)
        handle = ProcessHandle(conn, header.new_handle, record)
        record.add_handle(handle)
        fds = dict(record.launched.client_fds)
        record.launched.client_fds.clear()  # ownership moves to the reply
        return Reply(arg=record.pid, fds=fds, handle=handle)

    async def _open_process(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.system_handle(header.handle)
        record = h.system.find_process(header.arg)
        handle = ProcessHandle(conn, header.new_handle, record)
        record.add_handle(handle)
        return Reply(handle=handle)

    async def _terminate_process(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.process_handle(header.handle)
        h.process.send_signal(9)
        return Reply()

    async def _signal_process(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.process_handle(header.handle)
        options = parse_document(SignalProcessOptions, _text(payload), "SignalProcessOptions")
        h.process.signal(options)
        return Reply()

    async def _get_process_info(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.process_handle(header.handle)
        return Reply(arg=h.process.pid)

    async def _get_process_properties(
        self, conn: Connection, header: Header, payload: bytes
    ) -> Reply:
        h = await conn.process_handle(header.handle)
        return Reply(json.dumps(h.process.status_document()).encode())

    async def _modify_process(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        h = await conn.process_handle(header.handle)
        request = parse_document(ProcessModifyRequest, _text(payload), "ProcessModifyRequest")
        h.process.modify(request)
        return Reply()

    # --- service

    async def _get_service_properties(
        self, conn: Connection, header: Header, payload: bytes
    ) -> Reply:
        query = parse_document(PropertyQuery, _text(payload), "Service_PropertyQuery")
        entries: list[dict[str, Any]] = []
        for i, ptype in enumerate(str(t) for t in query.property_types or []):
            if ptype == "Basic":
                entries.append({"SupportedSchemaVersions": SUPPORTED_SCHEMA_VERSIONS})
            elif ptype in KNOWN_UNSUPPORTED_SERVICE_PROPERTIES:
                raise HcsFault(
                    hresults.E_NOT_SUPPORTED,
                    f"PropertyTypes[{i}]: {ptype!r} is not supported by this host service",
                )
            else:
                raise HcsFault(
                    hresults.HCS_E_INVALID_JSON,
                    f"PropertyTypes[{i}]: unknown service property type {ptype!r} "
                    "(supported: Basic)",
                )
        return Reply(json.dumps({"Properties": entries}).encode())
