"""Runs one VirtualMachine compute system on QEMU (process management only).

Translation lives in qemu.py. This module probes disk images, spawns QEMU
through the service's reaper, drives it over QMP, and talks to the guest agent
(aiohcs.host.vm.agent) for processes, process lists and orderly shutdown.

Start order matters (notes/vm-recipes.md): QEMU starts stopped (-S, or
-incoming defer for a restore); QMP is connected; a restore loads its state;
the agent channel is connected *before* `cont` (a guest writing to an
unconnected virtio-serial port sees EOFs); then `cont`; with a
GuestConnection, start completes only once the agent answered HELLO, as HCS
completes start only when the guest connection is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohcs import hresults
from aiohcs._wire import EventType
from aiohcs.host.backend import BackendContext, LaunchedProcess
from aiohcs.host.container.oci import safe_name
from aiohcs.host.documents import ProcessParameters
from aiohcs.host.errors import HcsFault
from aiohcs.host.reaper import ExitStatus, close_quietly, run
from aiohcs.host.vm import accel as accel_mod
from aiohcs.host.vm import qemu
from aiohcs.host.vm.agent import AgentClient, AgentDisconnected, AgentError, AgentProcess
from aiohcs.host.vm.qmp import QmpClient, QmpClosed, QmpError

log = logging.getLogger(__name__)

QMP_CONNECT_TIMEOUT = 10.0
AGENT_HELLO_TIMEOUT = 60.0  # TCG boot to agent is ~1.5 s; a cold host can be far slower
QUIT_TIMEOUT = 3.0
MIGRATION_TIMEOUT = 120.0
DEVICE_DELETE_TIMEOUT = 10.0
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes including the NUL
SAVED_STATE_MAGIC = b"QEVM"
RUN_DIR = Path("/run/aiohcs/vm")

ResourceHandler = Callable[[dict[str, Any], re.Match[str]], Any]


def _log_tail(path: Path, n: int = 800) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " ".join(text[-n:].split())


def agent_fault(e: AgentError, what: str) -> HcsFault:
    if isinstance(e, AgentDisconnected):
        return HcsFault(hresults.HCS_E_CONNECTION_CLOSED, f"{what}: {e.message}")
    code = {2: hresults.E_FILE_NOT_FOUND, 13: hresults.E_ACCESSDENIED, 3: hresults.E_NOT_FOUND}
    return HcsFault(code.get(e.errno, hresults.E_FAIL), f"{what}: {e}")


class VmBackend:
    system_type = "VirtualMachine"

    def __init__(self, system_id: str, vm: dict[str, Any], ctx: BackendContext) -> None:
        self.system_id = system_id
        self.vm = vm
        self.ctx = ctx
        self.dir = ctx.state_dir / "systems" / safe_name(system_id)
        self.plan: qemu.QemuPlan | None = None
        self.pid: int | None = None
        self.qmp: QmpClient | None = None
        self.agent: AgentClient | None = None
        self.exit_future: asyncio.Future[ExitStatus] | None = None
        self._host_initiated = False  # quit / SIGKILL / save came from us
        self._shutdown_reason: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started_at = 0.0
        # Set by the compute system: raise a system event (type, payload).
        self.notify: Callable[[EventType, bytes], None] | None = None

    # ------------------------------------------------------------ create

    @property
    def log_path(self) -> Path:
        return self.dir / "qemu.log"

    def _socket_dir(self) -> Path:
        if len(str(self.dir / "agent.sock")) <= SOCKET_PATH_MAX:
            return self.dir
        # Deep state dirs (test temp dirs) do not fit a socket address.
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:20]
        return RUN_DIR / digest

    async def prepare(self) -> None:
        formats = await self._probe_disks(self.vm)
        accel = await accel_mod.choose(self.ctx.vm_accel, self.ctx.reaper)
        self.plan = qemu.build_plan(
            self.system_id,
            self.vm,
            self.dir,
            accel=accel,
            formats=formats,
            socket_dir=self._socket_dir(),
        )
        if self.plan.restore_from is not None:
            await asyncio.to_thread(self._check_saved_state, self.plan.restore_from)
        await asyncio.to_thread(self._lay_out, self.plan)

    def _lay_out(self, plan: qemu.QemuPlan) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sock in plan.sockets():
            sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if plan.vars_copy is not None:
            shutil.copyfile(*plan.vars_copy)
        (self.dir / "qemu.argv").write_text(json.dumps(plan.argv, indent=1))

    @staticmethod
    def _check_saved_state(path: Path) -> None:
        with open(path, "rb") as f:
            head = f.read(len(SAVED_STATE_MAGIC))
        if head != SAVED_STATE_MAGIC:
            raise HcsFault(
                hresults.E_INVALID_DATA,
                f"VirtualMachine.RestoreState.SaveStateFilePath: {path} is not a saved state "
                "of this host service",
            )

    async def _probe_disks(self, vm: dict[str, Any]) -> dict[str, str]:
        """Image format of every SCSI disk; a corrupt image fails here, named."""
        formats: dict[str, str] = {}
        devices = vm.get("Devices") if isinstance(vm, dict) else None
        scsi = devices.get("Scsi") if isinstance(devices, dict) else None
        if not isinstance(scsi, dict):
            return formats
        for name, ctrl in scsi.items():
            atts = ctrl.get("Attachments") if isinstance(ctrl, dict) else None
            if not isinstance(atts, dict):
                continue
            for lun, att in atts.items():
                if not isinstance(att, dict) or att.get("Type", "VirtualDisk") != "VirtualDisk":
                    continue
                path = att.get("Path")
                if not isinstance(path, str) or not os.path.isfile(path):
                    continue  # the translation reports it, with the field name
                where = f"VirtualMachine.Devices.Scsi.{name}.Attachments.{lun}.Path"
                formats[path] = await self.probe_image(path, where)
        return formats

    async def probe_image(self, path: str, where: str) -> str:
        expected = qemu.format_from_extension(path)
        argv = ["qemu-img", "info", "--output=json"]
        if expected is not None and expected != "raw":
            argv += ["-f", expected]
        argv.append(path)
        done = await run(self.ctx.reaper, argv)
        if done.code != 0:
            err = " ".join(done.stderr.decode(errors="replace").split())
            what = f"a valid {expected} image" if expected else "a readable disk image"
            raise HcsFault(hresults.E_INVALID_DATA, f"{where}: {path} is not {what}: {err}")
        fmt = str(json.loads(done.stdout).get("format", "raw"))
        return fmt

    # ------------------------------------------------------------ start

    async def start(self) -> asyncio.Future[ExitStatus]:
        plan = self.plan
        assert plan is not None, "prepare() first"
        for sock in plan.sockets():
            # A killed QEMU leaves its sockets; a stale one refuses connections.
            with contextlib.suppress(OSError):
                sock.unlink()
        log_fd = os.open(
            self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
        )
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid, exited = self.ctx.reaper.spawn(plan.argv, stdin=null, stdout=log_fd, stderr=log_fd)
        except OSError as e:
            raise HcsFault(hresults.E_FAIL, f"starting QEMU ({plan.argv[0]}): {e}") from e
        finally:
            close_quietly(log_fd, null)
        self.pid = pid
        self._started_at = time.time()
        log.info("system %s: QEMU pid %d (%s)", self.system_id, pid, plan.accel)
        try:
            await self._bring_up(plan, exited)
        except BaseException as e:
            await self._kill(exited)
            if isinstance(e, HcsFault):
                raise
            if isinstance(e, (QmpError, QmpClosed, OSError, TimeoutError)):
                raise HcsFault(
                    hresults.E_FAIL, f"starting the VM: {e}; QEMU log: {_log_tail(self.log_path)}"
                ) from e
            raise
        result: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self.exit_future = result
        self._spawn(self._watch_exit(exited, result))
        return result

    async def _until_exit(
        self,
        aw: Any,
        exited: asyncio.Future[ExitStatus],
        what: str,
        hresult: int = hresults.HCS_E_TERMINATED_DURING_START,
    ) -> Any:
        """Await `aw` unless QEMU exits first (then fail with its log)."""
        task = asyncio.ensure_future(aw)
        done, _ = await asyncio.wait({task, exited}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        status = exited.result()
        raise HcsFault(
            hresult, f"{what}: QEMU exited (status {status.code}): {_log_tail(self.log_path)}"
        )

    async def _connect_qmp(self, path: Path) -> QmpClient:
        deadline = time.monotonic() + QMP_CONNECT_TIMEOUT
        while True:
            try:
                return await QmpClient.connect(str(path))
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)

    async def _bring_up(self, plan: qemu.QemuPlan, exited: asyncio.Future[ExitStatus]) -> None:
        self.qmp = await self._until_exit(self._connect_qmp(plan.qmp_socket), exited, "QMP")
        self._spawn(self._watch_events(self.qmp))
        if plan.restore_from is not None:
            # QEMU exits by itself when the state does not load (truncated file).
            await self._until_exit(
                self._load_state(plan.restore_from),
                exited,
                f"VirtualMachine.RestoreState.SaveStateFilePath: loading {plan.restore_from}",
                hresults.E_INVALID_DATA,
            )
        agent_conn = None
        if plan.agent_socket is not None:
            # Connected before `cont`, handshake after it.
            agent_conn = await asyncio.open_unix_connection(str(plan.agent_socket), limit=1 << 20)
        await self.qmp.execute("cont")
        if agent_conn is not None:
            client = AgentClient(*agent_conn, on_disconnect=self._agent_gone)
            try:
                await self._until_exit(
                    asyncio.wait_for(client._handshake(), AGENT_HELLO_TIMEOUT),
                    exited,
                    "waiting for the guest agent",
                )
            except TimeoutError:
                await client.close()
                raise HcsFault(
                    hresults.HCS_E_CONNECTION_TIMEOUT,
                    f"the guest agent did not answer within {AGENT_HELLO_TIMEOUT:.0f}s "
                    f"(is aiohcs-agent the guest's init?): {_log_tail(self.log_path, 400)}",
                ) from None
            except BaseException:
                await client.close()
                raise
            self.agent = client
            log.info("system %s: guest agent up: %s", self.system_id, client.hello)
            if plan.restore_from is not None:
                # Guest wall clock stood still while saved.
                with contextlib.suppress(AgentError):
                    await client.set_time()

    async def _load_state(self, path: Path) -> None:
        assert self.qmp is not None
        await self.qmp.execute("migrate-incoming", {"uri": "exec:cat " + shlex.quote(str(path))})
        status = await self._wait_migration("restore")
        if status != "completed":
            raise HcsFault(
                hresults.E_INVALID_DATA,
                f"VirtualMachine.RestoreState.SaveStateFilePath: loading {path} failed "
                f"({status}): {_log_tail(self.log_path, 400)}",
            )

    async def _wait_migration(self, what: str) -> str:
        assert self.qmp is not None
        deadline = time.monotonic() + MIGRATION_TIMEOUT
        while True:
            try:
                info = await self.qmp.execute("query-migrate")
            except QmpClosed:
                return "failed (QEMU exited)"
            status = str(info.get("status", "none")) if isinstance(info, dict) else "none"
            if status in ("completed", "failed", "cancelled"):
                if status == "failed" and isinstance(info, dict) and info.get("error-desc"):
                    return f"failed: {info['error-desc']}"
                return status
            if time.monotonic() > deadline:
                return f"{what} timed out"
            await asyncio.sleep(0.02)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_events(self, qmp: QmpClient) -> None:
        while not qmp.closed.done():
            getter: asyncio.Future[Any] = asyncio.ensure_future(qmp.events.get())
            closed: asyncio.Future[Any] = qmp.closed
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                return
            event = getter.result()
            if event.get("event") == "SHUTDOWN":
                data = event.get("data") or {}
                self._shutdown_reason = str(data.get("reason", ""))

    async def _watch_exit(
        self, exited: asyncio.Future[ExitStatus], result: asyncio.Future[ExitStatus]
    ) -> None:
        status = await exited
        log.info(
            "system %s: QEMU exited %s (shutdown reason %s)",
            self.system_id,
            status,
            self._shutdown_reason,
        )
        # QEMU exits 0 for a guest power-off but also for a SIGTERM from
        # someone else: that one is not the guest's doing.
        if status.code == 0 and self._shutdown_reason == "host-signal" and not self._host_initiated:
            status = ExitStatus(128 + signal.SIGTERM, signal.SIGTERM, None)
        if self.qmp is not None:
            await self.qmp.close()
        if self.agent is not None:
            await self.agent.close()
        if not result.done():
            result.set_result(status)

    def _agent_gone(self, client: AgentClient) -> None:
        if self.agent is client and self.notify is not None:
            self.notify(EventType.SYSTEM_GUEST_CONNECTION_CLOSED, b"")

    async def _kill(self, exited: asyncio.Future[ExitStatus]) -> None:
        """Used when start fails: QEMU must not outlive the failed start."""
        self._host_initiated = True
        if self.pid is not None and not exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(exited), 10)
        if self.qmp is not None:
            await self.qmp.close()

    # ------------------------------------------------------------ lifecycle

    def _qmp(self) -> QmpClient:
        if self.qmp is None or self.qmp.closed.done():
            raise HcsFault(hresults.HCS_E_INVALID_STATE, "the VM's QEMU is not running")
        return self.qmp

    async def stop(self, sig: str) -> None:
        if sig == "TERM":
            await self._graceful()
            return
        self._host_initiated = True
        if self.qmp is not None and not self.qmp.closed.done():
            with contextlib.suppress(QmpError, QmpClosed):
                await self.qmp.execute("quit")
        exit_future = self.exit_future
        if exit_future is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(exit_future), QUIT_TIMEOUT)
        except TimeoutError:
            if self.pid is not None and not exit_future.done():
                log.warning("system %s: QEMU ignored quit, SIGKILL", self.system_id)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)

    async def _graceful(self) -> None:
        """Ask the guest to power off: the agent if there is one, else ACPI."""
        if self.agent is not None and not self.agent.closed.done():
            try:
                await self.agent.shutdown(poweroff=True)
                return
            except AgentError as e:
                log.info("system %s: agent shutdown failed (%s); ACPI", self.system_id, e)
        # The ACPI power button works only with a handler in the guest; the
        # system's grace period then ends it with quit.
        with contextlib.suppress(QmpError, QmpClosed, HcsFault):
            await self._qmp().execute("system_powerdown")

    async def pause(self) -> None:
        try:
            await self._qmp().execute("stop")
        except (QmpError, QmpClosed) as e:
            raise HcsFault(hresults.E_FAIL, f"Pause: {e}") from e

    async def resume(self) -> None:
        try:
            await self._qmp().execute("cont")
        except (QmpError, QmpClosed) as e:
            raise HcsFault(hresults.E_FAIL, f"Resume: {e}") from e

    async def save(self, options: dict[str, Any]) -> None:
        """SaveOptions{SaveType ToFile, SaveStateFilePath}; the VM is paused.

        On success QEMU is told to quit: the system stops (a saved VM lives on
        only in its file; restore creates a new system from it).
        """
        save_type = options.get("SaveType", "ToFile")
        if save_type != "ToFile":
            raise HcsFault(
                hresults.E_NOT_SUPPORTED, f"SaveType: {save_type!r} is not supported (ToFile)"
            )
        path = options.get("SaveStateFilePath")
        if not isinstance(path, str) or not path.startswith("/"):
            raise HcsFault(
                hresults.HCS_E_INVALID_JSON, "SaveStateFilePath: an absolute file path is required"
            )
        if not os.path.isdir(os.path.dirname(path)):
            raise HcsFault(
                hresults.E_PATH_NOT_FOUND,
                f"SaveStateFilePath: directory {os.path.dirname(path)} does not exist",
            )
        qmp = self._qmp()
        try:
            # The default bandwidth cap (128 MiB/s) applies even to a stopped VM.
            await qmp.execute("migrate-set-parameters", {"max-bandwidth": 10_000_000_000})
            await qmp.execute("migrate", {"uri": "exec:cat > " + shlex.quote(path)})
        except (QmpError, QmpClosed) as e:
            raise HcsFault(hresults.E_FAIL, f"Save: {e}") from e
        status = await self._wait_migration("save")
        if status != "completed":
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise HcsFault(hresults.E_FAIL, f"Save: writing {path} failed ({status})")
        log.info("system %s: saved to %s", self.system_id, path)
        await self.stop("KILL")

    async def cleanup(self) -> None:
        for task in list(self._tasks):
            if task.done():
                continue
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self.agent is not None:
            await self.agent.close()
        if self.qmp is not None:
            await self.qmp.close()
        if self.plan is not None:
            for sock in self.plan.sockets():
                with contextlib.suppress(OSError):
                    sock.unlink()
            socket_dir = self.plan.qmp_socket.parent
            if socket_dir != self.dir:
                with contextlib.suppress(OSError):
                    socket_dir.rmdir()
        await asyncio.to_thread(shutil.rmtree, self.dir, True)

    # ------------------------------------------------------------ processes

    def _require_agent(self, what: str) -> AgentClient:
        if self.agent is None:
            raise HcsFault(
                hresults.HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
                f"{what}: virtual machine {self.system_id!r} has no guest connection "
                "(its document has no VirtualMachine.GuestConnection)",
            )
        if self.agent.closed.done():
            raise HcsFault(
                hresults.HCS_E_CONNECTION_CLOSED,
                f"{what}: the guest connection of {self.system_id!r} is closed",
            )
        return self.agent

    async def create_process(self, params: ProcessParameters) -> LaunchedProcess:
        agent = self._require_agent("CreateProcess")
        try:
            proc = await agent.create_process(params.model_dump(exclude_none=True))
        except AgentError as e:
            raise agent_fault(e, "CreateProcess") from e
        exited: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self._spawn(self._relay_exit(proc, exited))
        return LaunchedProcess(proc.pid, -1, exited, client_fds=proc.take_client_fds(), remote=proc)

    @staticmethod
    async def _relay_exit(proc: AgentProcess, out: asyncio.Future[ExitStatus]) -> None:
        try:
            status = await proc.exited
        except AgentDisconnected:
            # The guest went away with the process in it: it was killed.
            status = ExitStatus(128 + signal.SIGKILL, signal.SIGKILL, proc.pid)
        except asyncio.CancelledError:
            status = ExitStatus(128 + signal.SIGKILL, signal.SIGKILL, proc.pid)
            if not out.done():
                out.set_result(status)
            raise
        if not out.done():
            out.set_result(status)

    async def process_list(self) -> list[dict[str, Any]]:
        agent = self._require_agent("ProcessList")
        try:
            return await agent.process_list()
        except AgentError as e:
            raise agent_fault(e, "ProcessList") from e

    # ------------------------------------------------------------ properties

    async def statistics(self, start_time: float) -> dict[str, Any]:
        now = time.time()
        stats: dict[str, Any] = {
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "ContainerStartTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_time)),
            "Uptime100ns": int((now - start_time) * 1e7),
        }
        if self.pid is not None:
            stats.update(await asyncio.to_thread(_qemu_process_stats, self.pid))
        return stats

    async def memory_properties(self) -> dict[str, Any]:
        assert self.plan is not None
        assigned_mb = self.plan.memory_mb
        with contextlib.suppress(QmpError, QmpClosed, HcsFault):
            info = await self._qmp().execute("query-balloon")
            assigned_mb = int(info["actual"]) // (1024 * 1024)
        return {
            "VirtualNodeCount": 1,
            "VirtualMachineMemory": {
                "AssignedMemory": assigned_mb,
                "AvailableMemory": self.plan.memory_mb,
                "AvailableMemoryBuffer": 0,
                "ReservedMemory": 0,
                "SlpActive": False,
                "BalancingEnabled": False,
                "DmOperationInProgress": False,
            },
        }

    async def guest_connection_properties(self) -> dict[str, Any]:
        agent = self._require_agent("GuestConnection")
        hello = agent.hello
        return {
            "ProtocolVersion": agent.version,
            "SupportedSchemaVersions": [{"Major": 2, "Minor": 1}],
            "GuestDefinedCapabilities": {
                "Agent": hello.get("agent", ""),
                "Kernel": hello.get("kernel", ""),
                "Features": [f for f in hello.get("features", "").split(",") if f],
            },
        }

    # ------------------------------------------------------------ modify

    async def modify(self, request: dict[str, Any]) -> None:
        path = request.get("ResourcePath")
        rtype = request.get("RequestType", "Add")
        if request.get("GuestRequest") is not None:
            raise HcsFault(hresults.E_NOT_SUPPORTED, "GuestRequest: not supported")
        if not isinstance(path, str):
            raise HcsFault(hresults.HCS_E_INVALID_JSON, "ResourcePath: required")
        settings = request.get("Settings")
        m = re.fullmatch(r"VirtualMachine/Devices/Scsi/([^/]+)/Attachments/(\d+)", path)
        if m:
            if rtype == "Add":
                await self._scsi_add(m.group(1), int(m.group(2)), settings)
            elif rtype == "Remove":
                await self._scsi_remove(m.group(1), int(m.group(2)))
            else:
                raise HcsFault(hresults.E_NOT_SUPPORTED, f"RequestType: {rtype!r} for {path}")
            return
        if path == "VirtualMachine/ComputeTopology/Memory/SizeInMB":
            await self._set_memory(settings)
            return
        raise HcsFault(hresults.E_NOT_SUPPORTED, f"ResourcePath: {path!r} is not supported")

    async def _scsi_add(self, controller: str, lun: int, settings: Any) -> None:
        plan = self.plan
        assert plan is not None
        where = f"Settings (VirtualMachine/Devices/Scsi/{controller}/Attachments/{lun})"
        if controller not in plan.scsi_controllers:
            raise HcsFault(
                hresults.E_NOT_FOUND,
                f"ResourcePath: no SCSI controller {controller!r} "
                "(controllers are fixed at create)",
            )
        if any(d.controller == controller and d.lun == lun for d in plan.disks):
            raise HcsFault(
                hresults.E_OBJECT_ALREADY_EXISTS,
                f"ResourcePath: LUN {lun} of {controller!r} is in use",
            )
        formats: dict[str, str] = {}
        if isinstance(settings, dict) and isinstance(settings.get("Path"), str):
            p = settings["Path"]
            if os.path.isfile(p) and settings.get("Type", "VirtualDisk") == "VirtualDisk":
                formats[p] = await self.probe_image(p, f"{where}.Path")
        disk = qemu.attachment_plan(controller, lun, settings, where, formats)
        index = plan.scsi_controllers[controller]
        qmp = self._qmp()
        try:
            await qmp.execute("blockdev-add", qemu.blockdev_options(disk, index))
        except QmpError as e:
            raise HcsFault(hresults.E_INVALID_DATA, f"{where}: {e.desc}") from e
        try:
            await qmp.execute("device_add", qemu.device_options(disk, index))
        except QmpError as e:
            with contextlib.suppress(QmpError):
                await qmp.execute("blockdev-del", {"node-name": disk.node_for(index)})
            raise HcsFault(hresults.E_FAIL, f"{where}: {e.desc}") from e
        plan.disks.append(disk)

    async def _scsi_remove(self, controller: str, lun: int) -> None:
        plan = self.plan
        assert plan is not None
        disk = next((d for d in plan.disks if d.controller == controller and d.lun == lun), None)
        if disk is None:
            raise HcsFault(
                hresults.E_NOT_FOUND, f"ResourcePath: no attachment {controller!r} LUN {lun}"
            )
        index = plan.scsi_controllers[controller]
        qmp = self._qmp()
        dev = disk.device_for(index)
        deleted = qmp.watch(
            lambda e: (
                e.get("event") == "DEVICE_DELETED" and (e.get("data") or {}).get("device") == dev
            )
        )
        try:
            await qmp.execute("device_del", {"id": dev})
            await asyncio.wait_for(deleted, DEVICE_DELETE_TIMEOUT)
            await qmp.execute("blockdev-del", {"node-name": disk.node_for(index)})
        except (QmpError, QmpClosed, TimeoutError) as e:
            raise HcsFault(hresults.E_FAIL, f"removing {controller!r} LUN {lun}: {e}") from e
        finally:
            if not deleted.done():
                deleted.cancel()
        plan.disks.remove(disk)

    async def _set_memory(self, settings: Any) -> None:
        assert self.plan is not None
        if isinstance(settings, bool) or not isinstance(settings, int) or settings <= 0:
            raise HcsFault(hresults.HCS_E_INVALID_JSON, "Settings: a size in MB is required")
        if settings > self.plan.memory_mb:
            raise HcsFault(
                hresults.E_INVALIDARG,
                f"Settings: {settings} MB is above the VM's boot size {self.plan.memory_mb} MB "
                "(the balloon can only give back what it took)",
            )
        try:
            await self._qmp().execute("balloon", {"value": settings * 1024 * 1024})
        except QmpError as e:
            raise HcsFault(hresults.E_FAIL, f"Settings: {e.desc}") from e


def _qemu_process_stats(pid: int) -> dict[str, Any]:
    """CPU times and memory of the QEMU process (the VM's cost on the host)."""
    out: dict[str, Any] = {}
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        hz = os.sysconf("SC_CLK_TCK")
        user, kernel = int(fields[11]), int(fields[12])
        out["Processor"] = {
            "TotalRuntime100ns": (user + kernel) * 10_000_000 // hz,
            "RuntimeUser100ns": user * 10_000_000 // hz,
            "RuntimeKernel100ns": kernel * 10_000_000 // hz,
        }
        rss = 0
        peak = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
        out["Memory"] = {
            "MemoryUsageCommitBytes": rss,
            "MemoryUsageCommitPeakBytes": peak,
            "MemoryUsagePrivateWorkingSetBytes": rss,
        }
    except (OSError, ValueError, IndexError):
        pass
    return out
