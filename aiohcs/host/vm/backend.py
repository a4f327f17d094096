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
import errno
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohcs import hresults
from aiohcs._wire import EventType
from aiohcs.host.backend import BackendContext, LaunchedProcess
from aiohcs.host.container.oci import safe_name
from aiohcs.host.documents import ProcessParameters, command_args
from aiohcs.host.errors import HcsFault
from aiohcs.host.reaper import ExitStatus, close_quietly, run
from aiohcs.host.vm import accel as accel_mod
from aiohcs.host.vm import plan9, qemu
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
PLAN9_SHARES_PATH = "VirtualMachine/Devices/Plan9/Shares"
# Where the guest mounts the staging export of run-time Plan9 shares, and where
# a share goes when the request names no MountPath (docs/vm.md).
GUEST_PLAN9_STAGING = "/run/aiohcs/plan9-hot"
GUEST_PLAN9_DEFAULT_DIR = "/run/plan9"

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
    code = {
        errno.ENOENT: hresults.E_FILE_NOT_FOUND,
        errno.EACCES: hresults.E_ACCESSDENIED,
        errno.EPERM: hresults.E_ACCESSDENIED,
        errno.ESRCH: hresults.E_NOT_FOUND,
        # The guest found the request itself invalid (no command, a bad
        # CommandLine, a bad path).
        errno.EINVAL: hresults.E_INVALIDARG,
        errno.ENOTDIR: hresults.E_INVALIDARG,
    }
    return HcsFault(code.get(e.errno, hresults.E_FAIL), f"{what}: {e}")


@dataclass(frozen=True, slots=True)
class HotShare:
    """A Plan9 share added at run time."""

    tag: str  # AccessName, else Name
    host_path: str
    staging: Path  # the host bind mount: a subdirectory of the staging dir
    guest_path: str
    read_only: bool


def _guest_mount_path(guest_request: Any, tag: str) -> tuple[str, bool]:
    """(guest path, read-only) from an LCOW MappedDirectory GuestRequest, if any."""
    default = f"{GUEST_PLAN9_DEFAULT_DIR}/{tag}"
    if guest_request is None:
        return default, False
    if not isinstance(guest_request, dict):
        raise HcsFault(hresults.HCS_E_INVALID_JSON, "GuestRequest: expected a JSON object")
    kind = guest_request.get("ResourceType", "MappedDirectory")
    if kind != "MappedDirectory":
        raise HcsFault(
            hresults.E_NOT_SUPPORTED,
            f"GuestRequest.ResourceType: {kind!r} is not supported with {PLAN9_SHARES_PATH} "
            "(MappedDirectory)",
        )
    gs = guest_request.get("Settings") or {}
    if not isinstance(gs, dict):
        raise HcsFault(hresults.HCS_E_INVALID_JSON, "GuestRequest.Settings: expected an object")
    mount = gs.get("MountPath")
    if mount is None or mount == "":
        return default, bool(gs.get("ReadOnly", False))
    if (
        not isinstance(mount, str)
        or not mount.startswith("/")
        or "\0" in mount
        or ".." in mount.split("/")
        or mount.rstrip("/") == ""
    ):
        raise HcsFault(
            hresults.HCS_E_INVALID_JSON,
            f"GuestRequest.Settings.MountPath: {mount!r} is not an absolute guest path",
        )
    return mount.rstrip("/"), bool(gs.get("ReadOnly", False))


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
        # Plan9 shares added at run time (by tag), and whether the guest has
        # the staging export mounted (that blocks save: docs/vm.md).
        self._hot_shares: dict[str, HotShare] = {}
        self._hot_mounted = False
        self._hot_count = 0
        # Set by the compute system: raise a system event (type, payload).
        self.notify: Callable[[EventType, bytes], None] | None = None

    # ------------------------------------------------------------ create

    @property
    def log_path(self) -> Path:
        return self.dir / "qemu.log"

    def _socket_dir(self) -> Path:
        if len(str(self.dir / "agent.sock")) <= SOCKET_PATH_MAX:
            return self.dir
        return self._short_socket_dir()

    def _short_socket_dir(self) -> Path:
        # Deep state dirs (test temp dirs, long system ids) do not fit a socket address.
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:20]
        return RUN_DIR / digest

    async def prepare(self) -> None:
        formats = await self._probe_disks(self.vm)
        accel = await accel_mod.choose(self.ctx.vm_accel, self.ctx.reaper)
        socket_dir = self._socket_dir()
        plan = qemu.build_plan(
            self.system_id, self.vm, self.dir, accel=accel, formats=formats, socket_dir=socket_dir
        )
        if socket_dir == self.dir and any(
            sock.parent == socket_dir and len(os.fsencode(str(sock))) > qemu.UNIX_PATH_MAX
            for sock in plan.sockets()
        ):
            # A named pipe's socket (pipe-NAME.sock) is longer than agent.sock.
            plan = qemu.build_plan(
                self.system_id,
                self.vm,
                self.dir,
                accel=accel,
                formats=formats,
                socket_dir=self._short_socket_dir(),
            )
        self.plan = plan
        if self.plan.restore_from is not None:
            await asyncio.to_thread(self._check_saved_state, self.plan.restore_from)
        await asyncio.to_thread(self._lay_out, self.plan)

    def _lay_out(self, plan: qemu.QemuPlan) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sock in plan.sockets():
            sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if plan.vars_copy is not None:
            shutil.copyfile(*plan.vars_copy)
        if plan.plan9_hot_dir is not None:
            plan.plan9_hot_dir.mkdir(exist_ok=True, mode=0o700)
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
            died: ExitStatus | None = None
            if isinstance(e, (QmpClosed, OSError)):
                # A reset or closed QMP/agent socket during start is almost always
                # QEMU exiting (bad kernel, chardev error); its exit arrives a moment
                # later. Report it as such, not as a socket error.
                with contextlib.suppress(TimeoutError):
                    died = await asyncio.wait_for(asyncio.shield(exited), 2)
            await self._kill(exited)
            if isinstance(e, HcsFault):
                raise
            if died is not None:
                raise HcsFault(
                    hresults.HCS_E_TERMINATED_DURING_START,
                    f"starting the VM: QEMU exited (status {died.code}): "
                    f"{_log_tail(self.log_path)}",
                ) from e
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
        try:
            done, _ = await asyncio.wait({task, exited}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # Cancelled (Terminate or CANCEL of the start): do not leave it running.
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
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
        if self._hot_mounted:
            # QEMU refuses to migrate while a 9p export is mounted in the guest,
            # and a paused guest cannot unmount it: say which share is in the way.
            names = (
                ", ".join(f"{s.tag!r} (at {s.guest_path})" for s in self._hot_shares.values())
                or f"staging {GUEST_PLAN9_STAGING}"
            )
            raise HcsFault(
                hresults.HCS_E_INVALID_STATE,
                f"Save: Plan9 share {names} is mounted in the guest; QEMU cannot save a VM "
                f"while a 9p export is mounted: remove the share ({PLAN9_SHARES_PATH}, "
                "RequestType Remove) before saving",
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
        # Host bind mounts of run-time Plan9 shares must go before rmtree, or
        # it would delete the shared files.
        self._hot_shares.clear()
        self._hot_mounted = False
        remaining = await asyncio.to_thread(plan9.unmount_all_under, str(self.dir))
        if remaining:
            log.error(
                "system %s: still mounted, not removing %s: %s", self.system_id, self.dir, remaining
            )
            return
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
        command_args(params)  # nothing to run: HCS_E_INVALID_JSON, as for containers
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
        settings = request.get("Settings")
        if path == PLAN9_SHARES_PATH:
            if rtype == "Add":
                await self._plan9_add(settings, request.get("GuestRequest"))
            elif rtype == "Remove":
                await self._plan9_remove(settings)
            else:
                raise HcsFault(hresults.E_NOT_SUPPORTED, f"RequestType: {rtype!r} for {path}")
            return
        if request.get("GuestRequest") is not None:
            raise HcsFault(hresults.E_NOT_SUPPORTED, "GuestRequest: not supported")
        if not isinstance(path, str):
            raise HcsFault(hresults.HCS_E_INVALID_JSON, "ResourcePath: required")
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
        clash = qemu.image_conflict(plan.disks, disk)
        if clash is not None:
            raise HcsFault(
                hresults.E_OBJECT_ALREADY_EXISTS,
                f"{where}.Path: {disk.path} is already attached to this VM as "
                f"VirtualMachine/Devices/Scsi/{clash.controller}/Attachments/{clash.lun}; "
                "an image can be attached more than once only if every attachment is ReadOnly",
            )
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

    # ------------------------------------------------------------ Plan9 shares

    async def _plan9_add(self, settings: Any, guest_request: Any) -> None:
        """Add a share at run time: host bind into the staging export, guest bind."""
        plan = self.plan
        assert plan is not None
        if plan.plan9_hot_dir is None:
            raise HcsFault(
                hresults.HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
                f"ResourcePath {PLAN9_SHARES_PATH}: virtual machine {self.system_id!r} was "
                "created without a VirtualMachine.Devices.Plan9 section; Plan9 shares can be "
                'added at run time only to a VM whose document has one ("Plan9": {})',
            )
        share = qemu.plan9_share(settings, "Settings")
        tag = share.tag
        if "/" in tag or "\0" in tag or tag in (".", "..") or len(tag) > 255:
            raise HcsFault(
                hresults.HCS_E_INVALID_JSON, f"Settings.Name: {tag!r} is not a valid share name"
            )
        if tag in self._hot_shares or tag in plan.plan9_shares:
            raise HcsFault(
                hresults.E_OBJECT_ALREADY_EXISTS, f"Settings.Name: Plan9 share {tag!r} exists"
            )
        guest_path, guest_ro = _guest_mount_path(guest_request, tag)
        read_only = share.read_only or guest_ro
        agent = self._require_agent(f"adding Plan9 share {tag!r}")
        if "bind" not in agent.features:
            raise HcsFault(
                hresults.E_NOT_SUPPORTED,
                f"adding Plan9 share {tag!r}: the guest agent ({agent.hello.get('agent', '?')}) "
                "has no 'bind' feature (rebuild the utility VM)",
            )
        try:
            status = await self._qmp().execute("query-status")
        except (QmpError, QmpClosed) as e:
            raise HcsFault(hresults.E_FAIL, f"adding Plan9 share {tag!r}: {e}") from e
        if isinstance(status, dict) and status.get("status") != "running":
            raise HcsFault(
                hresults.HCS_E_INVALID_STATE,
                f"adding Plan9 share {tag!r}: the guest must be running to mount it "
                f"(QEMU status {status.get('status')!r})",
            )
        self._hot_count += 1
        staging = plan.plan9_hot_dir / plan9.subdir_name(self._hot_count, tag)
        try:
            await asyncio.to_thread(plan9.bind, share.path, str(staging), read_only=read_only)
        except OSError as e:
            with contextlib.suppress(OSError):
                staging.rmdir()
            raise HcsFault(
                hresults.E_FAIL, f"Settings.Path: bind-mounting {share.path} for the VM: {e}"
            ) from e
        mounted_now = False
        try:
            if not self._hot_mounted:
                await agent.mount_plan9(qemu.PLAN9_HOT_TAG, GUEST_PLAN9_STAGING)
                self._hot_mounted = mounted_now = True
            await agent.bind(
                f"{GUEST_PLAN9_STAGING}/{staging.name}", guest_path, readonly=read_only
            )
        except AgentError as e:
            if mounted_now and not self._hot_shares:
                with contextlib.suppress(AgentError):
                    await agent.unmount(GUEST_PLAN9_STAGING)
                    self._hot_mounted = False
            await asyncio.to_thread(self._drop_staging, staging)
            what = f"mounting Plan9 share {tag!r} at {guest_path} in the guest"
            raise agent_fault(e, what) from e
        self._hot_shares[tag] = HotShare(tag, share.path, staging, guest_path, read_only)
        log.info(
            "system %s: Plan9 share %r (%s%s) at %s",
            self.system_id,
            tag,
            share.path,
            ", read-only" if read_only else "",
            guest_path,
        )

    @staticmethod
    def _drop_staging(staging: Path) -> None:
        plan9.unmount(str(staging))
        # rmdir never removes content: safe even if something is still mounted.
        with contextlib.suppress(OSError):
            staging.rmdir()

    async def _plan9_remove(self, settings: Any) -> None:
        plan = self.plan
        assert plan is not None
        if not isinstance(settings, dict):
            raise HcsFault(
                hresults.HCS_E_INVALID_JSON, "Settings: a Plan9Share with Name is required"
            )
        tag = settings.get("AccessName") or settings.get("Name")
        if not isinstance(tag, str) or not tag:
            raise HcsFault(hresults.HCS_E_INVALID_JSON, "Settings.Name: required")
        share = self._hot_shares.get(tag)
        if share is None:
            if tag in plan.plan9_shares:
                raise HcsFault(
                    hresults.E_NOT_SUPPORTED,
                    f"Settings.Name: Plan9 share {tag!r} comes from the create document; "
                    "only shares added at run time can be removed",
                )
            raise HcsFault(hresults.E_NOT_FOUND, f"Settings.Name: no Plan9 share {tag!r}")
        agent = self.agent
        if agent is not None and not agent.closed.done():
            try:
                await agent.unmount(share.guest_path)
            except AgentDisconnected:
                pass  # the guest is gone: nothing is mounted there any more
            except AgentError as e:
                if e.errno != 22:  # EINVAL: not mounted (the guest unmounted it)
                    raise agent_fault(
                        e, f"unmounting Plan9 share {tag!r} at {share.guest_path} in the guest"
                    ) from e
        del self._hot_shares[tag]
        if not self._hot_shares and self._hot_mounted:
            # With nothing shared, unmount the staging export too: a mounted 9p
            # export blocks save.
            try:
                if agent is not None:
                    await agent.unmount(GUEST_PLAN9_STAGING)
                self._hot_mounted = False
            except AgentDisconnected:
                self._hot_mounted = False
            except AgentError as e:
                log.warning("system %s: unmounting the 9p staging: %s", self.system_id, e)
        try:
            await asyncio.to_thread(self._drop_staging, share.staging)
        except OSError as e:
            raise HcsFault(
                hresults.E_FAIL, f"removing Plan9 share {tag!r}: host unmount failed: {e}"
            ) from e
        log.info("system %s: Plan9 share %r removed", self.system_id, tag)

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
