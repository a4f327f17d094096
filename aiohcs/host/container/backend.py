"""Runs one HCS container through the OCI runtime (process management only).

Translation lives in oci.py; this module lays out the bundle, mounts the
rootfs, drives the runtime and hands process stdio to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import shutil
import socket
import struct
import tempfile
import termios
from pathlib import Path
from typing import Any

from aiohcs import hresults
from aiohcs._wire import FdMask
from aiohcs.host.backend import BackendContext, LaunchedProcess
from aiohcs.host.container import oci, rootfs, stats
from aiohcs.host.container.runtime import RuntimeFailure, exec_failure_fault
from aiohcs.host.documents import ContainerSettings, ProcessParameters
from aiohcs.host.errors import HcsFault
from aiohcs.host.fdwait import read_to_eof, wait_readable
from aiohcs.host.reaper import ExitStatus, close_quietly, read_ns_pid

log = logging.getLogger(__name__)

CONSOLE_TIMEOUT = 10.0
# The console exec wrapper gives up waiting for the size after 2 s and execs
# anyway, so its status pipe reaches EOF well within this.
EXEC_STATUS_TIMEOUT = 10.0
_ERRNO = struct.Struct("=i")


def set_console_size(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def exec_status_fault(record: bytes) -> HcsFault | None:
    """The fault for the console exec wrapper's status record; None if it exec'd.

    The wrapper writes nothing when its exec succeeds (the pipe closes on
    exec) and ``errno`` (native int) + message when it fails, mapped as the
    runtime's own exec failures are (see runtime.exec_failure_fault).
    """
    if not record:
        return None
    if len(record) < _ERRNO.size:
        return HcsFault(hresults.E_FAIL, "exec: the console wrapper sent a truncated status")
    (err,) = _ERRNO.unpack_from(record)
    message = record[_ERRNO.size :].decode(errors="replace") or os.strerror(err)
    if err in (errno.ENOENT, errno.ENOTDIR):
        return HcsFault(hresults.E_FILE_NOT_FOUND, message)
    if err in (errno.EACCES, errno.EPERM):
        return HcsFault(hresults.E_ACCESSDENIED, message)
    return HcsFault(hresults.E_FAIL, message)


async def receive_console(listener: socket.socket) -> int:
    """Accept the runtime's --console-socket connection and take the pty master."""
    loop = asyncio.get_running_loop()
    conn, _ = await loop.sock_accept(listener)
    with conn:
        conn.setblocking(False)
        fds: list[int] = []
        while True:
            try:
                msg, ancdata, _, _ = conn.recvmsg(
                    4096, socket.CMSG_SPACE(4 * 4), socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                await wait_readable(conn.fileno())
                continue
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(data) - len(data) % 4
                    fds.extend(struct.unpack(f"{usable // 4}i", data[:usable]))
            if fds or not msg:
                break
    if not fds:
        raise OSError("the runtime closed the console socket without sending a pty")
    for extra in fds[1:]:
        close_quietly(extra)
    return fds[0]


class ContainerBackend:
    system_type = "Container"

    def __init__(self, system_id: str, container: ContainerSettings, ctx: BackendContext) -> None:
        self.system_id = system_id
        self.container = container
        self.ctx = ctx
        self.cid = oci.safe_name(system_id)
        self.dir = ctx.state_dir / "systems" / self.cid
        self.plan: oci.BundlePlan | None = None
        self.init_pid: int | None = None
        self.created = False
        self._exec_seq = itertools.count(1)

    # ------------------------------------------------------------ lifecycle

    def _make_plan(self) -> oci.BundlePlan:
        return oci.container_bundle(
            self.system_id,
            self.container,
            bundle_dir=str(self.dir),
            scratch_dir=str(self.dir / "scratch"),
            init_host_path=str(self.ctx.init_path),
        )

    async def prepare(self) -> None:
        oci.validate_container(self.container)
        self.plan = self._make_plan()
        await asyncio.to_thread(self._write_bundle, self.plan)

    async def adopt(self, init_pid: int) -> tuple[str, asyncio.Future[ExitStatus]] | None:
        """Take over the container a previous service run started.

        Returns (runtime status "running"/"paused", exit future), or None when
        the runtime container is not running (any more) with that init. The
        init is not our child: its exit is seen through a pidfd, without a
        status (the future resolves with code -1). The pidfd is opened before
        asking the runtime, so if the runtime reports this pid running, the
        pidfd refers to that init and not to a recycled pid.
        """
        self.plan = self._make_plan()
        try:
            pidfd = os.pidfd_open(init_pid)
        except ProcessLookupError:
            return None
        try:
            state = await self.ctx.runtime.state(self.cid)
        except (RuntimeFailure, ValueError):
            os.close(pidfd)
            return None
        status = state.get("status")
        if status not in ("running", "paused") or state.get("pid") != init_pid:
            os.close(pidfd)
            return None
        self.created = True
        self.init_pid = init_pid
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[ExitStatus] = loop.create_future()

        def on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            if not exited.done():
                exited.set_result(ExitStatus(-1, None, 1))

        loop.add_reader(pidfd, on_exit)
        return str(status), exited

    def _write_bundle(self, plan: oci.BundlePlan) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / "config.json").write_text(json.dumps(plan.config, indent=1))

    async def start(self) -> asyncio.Future[ExitStatus]:
        assert self.plan is not None, "prepare() first"
        if not self.ctx.init_path.exists():
            raise HcsFault(
                hresults.E_FILE_NOT_FOUND,
                f"container init {self.ctx.init_path} is missing "
                "(build it: make -C aiohcs/_native build/aiohcs-init)",
            )
        overlay = self.plan.overlay
        if overlay is not None:
            try:
                await asyncio.to_thread(rootfs.mount_overlay, overlay)
            except OSError as e:
                raise HcsFault(
                    hresults.HCS_E_INVALID_LAYER, f"Container.Storage.Layers: {e}"
                ) from e
        pid_file = self.dir / "init.pid"
        pid_file.unlink(missing_ok=True)
        try:
            self.created = True
            await self.ctx.runtime.create(self.cid, self.dir, pid_file, self.dir / "console.log")
            self.init_pid = int(pid_file.read_text().strip())
            exited = self.ctx.reaper.watch(self.init_pid)
            await self.ctx.runtime.start(self.cid)
        except RuntimeFailure as e:
            await self._undo_start()
            raise HcsFault(hresults.E_FAIL, f"starting container: {e}") from e
        except BaseException:
            # Also a cancelled start (Terminate, CANCEL): nothing may keep running.
            await self._undo_start()
            raise
        return exited

    async def _undo_start(self) -> None:
        """Delete the runtime container and unmount the rootfs, keeping the bundle
        (the system is Created again and may be started again)."""
        if self.created:
            try:
                await self.ctx.runtime.delete(self.cid)
            except RuntimeFailure as e:
                log.warning("deleting runtime container %s: %s", self.cid, e)
            self.created = False
        self.init_pid = None
        if self.plan is not None and self.plan.overlay is not None:
            try:
                await asyncio.to_thread(rootfs.unmount, self.plan.overlay.target)
            except OSError as e:
                log.warning("unmounting %s: %s", self.plan.overlay.target, e)

    async def stop(self, sig: str) -> None:
        try:
            await self.ctx.runtime.kill(self.cid, sig)
        except RuntimeFailure as e:
            # Already gone is fine: the exit watcher reports it.
            log.debug("kill %s %s: %s", self.cid, sig, e)
        if sig == "KILL":
            # A frozen cgroup keeps SIGKILLed tasks alive until thawed.
            with contextlib.suppress(RuntimeFailure):
                state = await self.ctx.runtime.state(self.cid)
                if state.get("status") == "paused":
                    await self.ctx.runtime.resume(self.cid)

    async def pause(self) -> None:
        try:
            await self.ctx.runtime.pause(self.cid)
        except RuntimeFailure as e:
            raise HcsFault(hresults.E_FAIL, str(e)) from e

    async def resume(self) -> None:
        try:
            await self.ctx.runtime.resume(self.cid)
        except RuntimeFailure as e:
            raise HcsFault(hresults.E_FAIL, str(e)) from e

    async def cleanup(self) -> None:
        if self.created:
            try:
                await self.ctx.runtime.delete(self.cid)
            except RuntimeFailure as e:
                log.warning("deleting runtime container %s: %s", self.cid, e)
            self.created = False
        if self.plan is not None and self.plan.overlay is not None:
            try:
                await asyncio.to_thread(rootfs.unmount, self.plan.overlay.target)
            except OSError as e:
                log.warning("unmounting %s: %s", self.plan.overlay.target, e)
        await asyncio.to_thread(shutil.rmtree, self.dir, True)

    # ------------------------------------------------------------ processes

    def _rootfs(self) -> str:
        assert self.plan is not None
        return self.plan.rootfs

    async def create_process(self, params: ProcessParameters) -> LaunchedProcess:
        passwd = None
        if params.user and not params.user.split(":")[0].isdigit():
            passwd = await asyncio.to_thread(rootfs.read_in_root, self._rootfs(), "/etc/passwd")
        user = oci.resolve_user(params.user, passwd)
        spec = oci.process_spec(params, user)
        n = next(self._exec_seq)
        process_json = self.dir / f"exec-{n}.json"
        pid_file = self.dir / f"exec-{n}.pid"
        log_file = self.dir / f"exec-{n}.log"
        process_json.write_text(json.dumps(spec))
        try:
            if params.emulate_console:
                launched = await self._exec_console(params, process_json, pid_file, log_file)
            else:
                launched = await self._exec_pipes(params, process_json, pid_file, log_file)
        finally:
            for f in (process_json, pid_file, log_file):
                f.unlink(missing_ok=True)
        return launched

    def _adopt(self, pid_file: Path) -> tuple[int, int, asyncio.Future[ExitStatus]]:
        """(ns pid, host pid, exit future) of the process the runtime started."""
        host_pid = int(pid_file.read_text().strip())
        already = self.ctx.reaper.exited(host_pid)
        ns_pid = already.ns_pid if already is not None else read_ns_pid(host_pid)
        return ns_pid if ns_pid is not None else host_pid, host_pid, self.ctx.reaper.watch(host_pid)

    async def _exec_pipes(
        self, params: ProcessParameters, process_json: Path, pid_file: Path, log_file: Path
    ) -> LaunchedProcess:
        wanted = (
            (FdMask.STDIN, params.create_std_in_pipe),
            (FdMask.STDOUT, params.create_std_out_pipe),
            (FdMask.STDERR, params.create_std_err_pipe),
        )
        child: list[int] = []
        client: dict[int, int] = {}
        try:
            for bit, requested in wanted:
                if not requested:
                    child.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
                    continue
                r, w = os.pipe2(os.O_CLOEXEC)
                if bit == FdMask.STDIN:
                    child.append(r)
                    client[bit] = w
                else:
                    child.append(w)
                    client[bit] = r
            exec_done = self.ctx.runtime.exec_detached(
                self.cid, process_json, pid_file, log_file, (child[0], child[1], child[2]), None
            )
            # The runtime (and through it the process) holds the child ends now.
            close_quietly(*child)
            child = []
            await exec_done
            ns_pid, host_pid, exited = self._adopt(pid_file)
        except RuntimeFailure as e:
            close_quietly(*child, *client.values())
            raise exec_failure_fault(e) from e
        except BaseException:
            close_quietly(*child, *client.values())
            raise
        return LaunchedProcess(ns_pid, host_pid, exited, client_fds=client)

    async def _exec_console(
        self, params: ProcessParameters, process_json: Path, pid_file: Path, log_file: Path
    ) -> LaunchedProcess:
        # With a ConsoleSize the process runs under the console exec wrapper
        # (oci.awaits_console_size): it waits for the size we set below, and
        # reports a failed exec of the real program on a status pipe.
        wrapped = oci.awaits_console_size(params)
        # The socket path must fit sun_path (108 bytes): use a short private dir.
        tmp = tempfile.mkdtemp(prefix="aiohcs-console-")
        path = os.path.join(tmp, "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        master: int | None = None
        status_r: int | None = None
        status_w: int | None = None
        try:
            if wrapped:
                status_r, status_w = os.pipe2(os.O_CLOEXEC)
            listener.bind(path)
            listener.listen(1)
            listener.setblocking(False)
            receiving = asyncio.ensure_future(receive_console(listener))
            try:
                exec_done = self.ctx.runtime.exec_detached(
                    self.cid,
                    process_json,
                    pid_file,
                    log_file,
                    (null, null, null),
                    path,
                    preserve_fds=(status_w,) if status_w is not None else (),
                )
                # The runtime holds the write end now; ours must go, or the
                # status pipe never reaches EOF.
                close_quietly(status_w)
                status_w = None
                await exec_done
                master = await asyncio.wait_for(receiving, CONSOLE_TIMEOUT)
            finally:
                if not receiving.done():
                    receiving.cancel()
            ns_pid, host_pid, exited = self._adopt(pid_file)
            if params.console_size:
                with contextlib.suppress(OSError):
                    set_console_size(master, params.console_size[0], params.console_size[1])
            if status_r is not None:
                try:
                    record = await asyncio.wait_for(read_to_eof(status_r), EXEC_STATUS_TIMEOUT)
                except TimeoutError:
                    # Cannot happen short of a frozen container; the process
                    # exists, so hand it out rather than fail a running process.
                    log.warning("%s: no exec status from process %d", self.cid, host_pid)
                    record = b""
                fault = exec_status_fault(record)
                if fault is not None:
                    # The wrapper exits 127 right after reporting; the reaper
                    # collects it.
                    raise fault
        except RuntimeFailure as e:
            close_quietly(master)
            raise exec_failure_fault(e) from e
        except BaseException:
            close_quietly(master)
            raise
        finally:
            listener.close()
            os.close(null)
            close_quietly(status_r, status_w)
            shutil.rmtree(tmp, ignore_errors=True)
        client: dict[int, int] = {}
        if params.create_std_in_pipe:
            client[FdMask.STDIN] = os.dup(master)
        if params.create_std_out_pipe:
            client[FdMask.STDOUT] = os.dup(master)
        return LaunchedProcess(ns_pid, host_pid, exited, client_fds=client, console=master)

    # ------------------------------------------------------------ properties

    async def process_list(self) -> list[dict[str, Any]]:
        if self.init_pid is None:
            return []
        return await asyncio.to_thread(stats.process_list, self.init_pid)

    async def statistics(self, start_time: float) -> dict[str, Any]:
        if self.init_pid is None:
            return {}
        return await asyncio.to_thread(stats.statistics, self.init_pid, start_time)
