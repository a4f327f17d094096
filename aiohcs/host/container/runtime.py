"""Driver for the OCI runtime binary (runc or crun).

Every invocation is a child spawned through the service's single Reaper
(never subprocess/asyncio subprocesses: their waitpid would race ours).
Commands that start container processes (`create`, `exec --detach`) get the
container's stdio as their own stdio, so their error text is taken from the
runtime's `--log` file instead.

runc and crun take the same command lines here (`--root`, `--log` with
`--log-format json`, create/start/exec --detach/--pid-file/--console-socket,
kill, pause, resume, delete --force, state, list --format json), both exit 1
on failure and both log `{"level": "error", "msg": ...}` lines. Their error
texts differ; `exec_failure_fault` knows both. Whether crun can run at all
depends on the host's cgroup layout: see cgroups.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohcs import hresults
from aiohcs.host.container.cgroups import CgroupLayout, read_cgroup_layout
from aiohcs.host.errors import HcsFault
from aiohcs.host.reaper import ExitStatus, Reaper, run

# How long a cancelled start lets `RUNTIME create` finish before killing it.
CREATE_CANCEL_GRACE = 2.0

log = logging.getLogger(__name__)


class RuntimeUnavailable(RuntimeError):
    """No usable OCI runtime; the message explains why."""


class RuntimeFailure(Exception):
    """A runtime command exited non-zero; `message` is the runtime's own text."""

    def __init__(self, command: str, code: int, message: str) -> None:
        super().__init__(f"{command} failed (exit {code}): {message}")
        self.command = command
        self.code = code
        self.message = message


def choose_runtime(requested: str, layout: CgroupLayout | None = None) -> tuple[str, str]:
    """(name, path) of the runtime to use for `--runtime {auto,runc,crun}`.

    `layout` is the host's cgroup layout (read from the host when None): crun
    is refused with the exact fix when it would fail on it (see cgroups.py).
    """
    runc = shutil.which("runc")
    crun = shutil.which("crun")

    def crun_blocker() -> str | None:
        return (layout if layout is not None else read_cgroup_layout()).crun_blocker()

    if requested == "runc":
        if runc is None:
            raise RuntimeUnavailable("--runtime runc: runc is not installed (not on PATH)")
        return "runc", runc
    if requested == "crun":
        if crun is None:
            raise RuntimeUnavailable("--runtime crun: crun is not installed (not on PATH)")
        blocker = crun_blocker()
        if blocker:
            raise RuntimeUnavailable(f"--runtime crun: {blocker}")
        return "crun", crun
    if requested != "auto":
        raise RuntimeUnavailable(f"unknown runtime {requested!r} (auto, runc or crun)")
    if runc is not None:
        return "runc", runc
    if crun is not None:
        blocker = crun_blocker()
        if blocker:
            raise RuntimeUnavailable(f"runc is not installed and {blocker}")
        return "crun", crun
    raise RuntimeUnavailable("neither runc nor crun is installed")


def _log_errors(log_file: Path) -> str:
    """Error messages from a runtime's `--log-format json` log file."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    messages = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip():
                messages.append(line.strip())
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
            messages.append(str(entry.get("msg", "")))
    return "; ".join(m for m in messages if m)


class Runtime:
    def __init__(self, name: str, path: str, root: Path, reaper: Reaper) -> None:
        self.name = name
        self.path = path
        self.root = root
        self.reaper = reaper

    def _base(self, log_file: Path | None = None) -> list[str]:
        argv = [self.path, "--root", str(self.root)]
        if log_file is not None:
            argv += ["--log", str(log_file), "--log-format", "json"]
        return argv

    async def _simple(self, *args: str) -> bytes:
        done = await run(self.reaper, [*self._base(), *args])
        if done.code != 0:
            msg = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise RuntimeFailure(f"{self.name} {args[0]}", done.code, msg)
        return done.stdout

    async def create(self, cid: str, bundle: Path, pid_file: Path, console_log: Path) -> None:
        """`create`: the container's init is then our child-by-adoption."""
        log_file = bundle / "runtime-create.log"
        log_file.unlink(missing_ok=True)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        out = os.open(console_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            argv = [
                *self._base(log_file),
                "create",
                "--bundle",
                str(bundle),
                "--pid-file",
                str(pid_file),
                cid,
            ]
            pid, exited = self.reaper.spawn(argv, stdin=null, stdout=out, stderr=out)
        finally:
            os.close(null)
            os.close(out)
        try:
            status = await asyncio.shield(exited)
        except asyncio.CancelledError:
            # A cancelled start (Terminate, CANCEL): let a normal create finish
            # (killing it half-way can strand its `init` child), but not a hung
            # one; the caller then deletes the container.
            try:
                await asyncio.wait_for(asyncio.shield(exited), CREATE_CANCEL_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), 5)
            raise
        if status.code != 0:
            raise RuntimeFailure(f"{self.name} create", status.code, _log_errors(log_file))

    async def start(self, cid: str) -> None:
        await self._simple("start", cid)

    async def kill(self, cid: str, sig: str, *, all_processes: bool = False) -> None:
        args = ["kill"]
        if all_processes:
            args.append("--all")
        await self._simple(*args, cid, sig)

    async def pause(self, cid: str) -> None:
        await self._simple("pause", cid)

    async def resume(self, cid: str) -> None:
        await self._simple("resume", cid)

    async def delete(self, cid: str) -> None:
        await self._simple("delete", "--force", cid)

    async def state(self, cid: str) -> dict[str, Any]:
        out = await self._simple("state", cid)
        value = json.loads(out)
        return value if isinstance(value, dict) else {}

    async def list(self) -> list[dict[str, Any]]:
        out = await self._simple("list", "--format", "json")
        value = json.loads(out or b"null")
        return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []

    def exec_detached(
        self,
        cid: str,
        process_json: Path,
        pid_file: Path,
        log_file: Path,
        stdio: tuple[int, int, int],
        console_socket: str | None,
        preserve_fds: tuple[int, ...] = (),
    ) -> Coroutine[Any, Any, None]:
        """Spawn `exec --detach` NOW; await the result to learn if it worked.

        The spawn happens before this returns, so the caller may close its
        copies of `stdio` and `preserve_fds` right away. The new process
        inherits `stdio`, or gets a pty sent to `console_socket`, and gets
        `preserve_fds` as its fds 3, 4, ... (`--preserve-fds`).
        """
        log_file.unlink(missing_ok=True)
        argv = [*self._base(log_file), "exec", "--detach", "--pid-file", str(pid_file)]
        if console_socket is not None:
            argv += ["--console-socket", console_socket]
        if preserve_fds:
            argv += ["--preserve-fds", str(len(preserve_fds))]
        argv += ["--process", str(process_json), cid]
        env = None
        if preserve_fds and "LISTEN_FDS" in os.environ:
            # Both runtimes pass $LISTEN_FDS fds before the preserved ones,
            # which would move ours off fd 3: the runtime must not see it.
            env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID")}
        _, exited = self.reaper.spawn(
            argv,
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            env=env,
            extra_fds=preserve_fds,
        )
        return self._finish_exec(exited, log_file)

    async def _finish_exec(self, exited: asyncio.Future[ExitStatus], log_file: Path) -> None:
        status = await exited
        if status.code != 0:
            raise RuntimeFailure(f"{self.name} exec", status.code, _log_errors(log_file))


def exec_failure_fault(err: RuntimeFailure) -> HcsFault:
    """Map a failed `exec` to an HRESULT; a missing executable is FILE_NOT_FOUND.

    runc: `exec: "x": executable file not found in $PATH`,
          `exec: "/x": stat /x: no such file or directory`, `exec: "/f": permission denied`;
    crun: "executable file `x` not found in $PATH: No such file or directory"
          (also for absolute paths), `open executable: Permission denied`.
    The client gets the runtime's own text.
    """
    text = err.message or str(err)
    lowered = text.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return HcsFault(hresults.E_FILE_NOT_FOUND, text)
    if "permission denied" in lowered:
        return HcsFault(hresults.E_ACCESSDENIED, text)
    return HcsFault(hresults.E_FAIL, text)
