"""The one place that waits for child processes.

The service marks itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so
processes started by `runc exec --detach` and the container's init re-parent to
it when the runtime exits. Their exit statuses must therefore be collected by
us, and there may be only ONE collector: a second waitpid() anywhere (asyncio's
child watchers, subprocess.Popen.wait) would steal statuses. Hence:

* every child is spawned with :meth:`Reaper.spawn` (os.posix_spawn), never
  with asyncio.create_subprocess_* or subprocess;
* on SIGCHLD, :meth:`Reaper.reap` collects every exited child with
  waitid(WNOHANG|WNOWAIT) + waitpid and resolves the future of that pid;
* statuses of pids nobody asked about yet are remembered for a while, because
  a pid read from a runtime's --pid-file may belong to a process that already
  exited before we read the file.

Before collecting a zombie we read its innermost namespace pid (NSpid in
/proc/<pid>/status) so a process that exits at once still reports the pid it
had inside its container.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohcs.host.fdwait import read_to_eof

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
# How long an exit status nobody has claimed is kept (seconds).
UNCLAIMED_TTL = 300.0


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a child ended. `code` is what a shell reports: 128+N for signal N."""

    code: int
    signal: int | None
    ns_pid: int | None  # pid inside the innermost pid namespace, if known


def status_to_exit(status: int, ns_pid: int | None = None) -> ExitStatus:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return ExitStatus(128 + sig, sig, ns_pid)
    if os.WIFEXITED(status):
        return ExitStatus(os.WEXITSTATUS(status), None, ns_pid)
    return ExitStatus(255, None, ns_pid)


def read_ns_pid(pid: int) -> int | None:
    """The innermost pid of `pid` (last NSpid field), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    parts = line.split()[1:]
                    return int(parts[-1]) if parts else None
    except (OSError, ValueError):
        return None
    return None


def set_child_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


class Reaper:
    def __init__(self) -> None:
        self._waiters: dict[int, asyncio.Future[ExitStatus]] = {}
        self._unclaimed: dict[int, tuple[ExitStatus, float]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop, *, subreaper: bool = True) -> None:
        if subreaper:
            set_child_subreaper()
        self._loop = loop
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()  # children that exited before the handler existed

    def uninstall(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_signal_handler(signal.SIGCHLD)
        self._loop = None

    def reap(self) -> None:
        """Collect every exited child; resolve or remember its status."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if info is None:
                break
            pid = info.si_pid
            ns_pid = read_ns_pid(pid)  # still readable: the zombie is not collected yet
            try:
                _, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            self._resolve(pid, status_to_exit(status, ns_pid))
        self._prune()

    def _resolve(self, pid: int, exit_status: ExitStatus) -> None:
        fut = self._waiters.pop(pid, None)
        if fut is None:
            self._unclaimed[pid] = (exit_status, time.monotonic())
        elif not fut.done():
            fut.set_result(exit_status)

    def _prune(self) -> None:
        now = time.monotonic()
        for pid in [p for p, (_, t) in self._unclaimed.items() if now - t > UNCLAIMED_TTL]:
            del self._unclaimed[pid]

    def exited(self, pid: int) -> ExitStatus | None:
        """The status of `pid` if it already exited and nobody claimed it (peek)."""
        entry = self._unclaimed.get(pid)
        return entry[0] if entry else None

    def watch(self, pid: int) -> asyncio.Future[ExitStatus]:
        """A future for the exit of child `pid` (claims a remembered status)."""
        loop = self._loop or asyncio.get_running_loop()
        existing = self._waiters.get(pid)
        if existing is not None:
            return existing
        fut: asyncio.Future[ExitStatus] = loop.create_future()
        entry = self._unclaimed.pop(pid, None)
        if entry is not None:
            fut.set_result(entry[0])
        else:
            self._waiters[pid] = fut
        return fut

    def spawn(
        self,
        argv: Sequence[str],
        *,
        stdin: int,
        stdout: int,
        stderr: int,
        env: Mapping[str, str] | None = None,
        extra_fds: Sequence[int] = (),
    ) -> tuple[int, asyncio.Future[ExitStatus]]:
        """posix_spawn `argv` with the given stdio fds; returns (pid, exit future).

        `extra_fds` become the child's fds 3, 4, ... (for `--preserve-fds`);
        each must be at least its target number, else an earlier dup2 would
        replace it first. That holds for any fd the service opens beyond a
        few (its own 0-2 stay open), and is checked.
        The future is registered before control returns to the event loop, so
        the exit of even the shortest-lived child cannot be missed.
        """
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ]
        for target, fd in enumerate(extra_fds, start=3):
            if fd < target:
                # An earlier dup2 would have replaced it before it is copied.
                raise ValueError(f"extra fd {fd} would be overwritten before it reaches {target}")
            actions.append((os.POSIX_SPAWN_DUP2, fd, target))
        pid = os.posix_spawnp(
            argv[0],
            list(argv),
            dict(env if env is not None else os.environ),
            file_actions=actions,
            # Python ignores SIGPIPE/SIGXFSZ; children (and the container
            # processes the runtime execs) must get default dispositions.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM),
            setsigmask=(),
            # Own process group: a ^C at the service's terminal is not theirs.
            setpgroup=0,
        )
        return pid, self.watch(pid)


@dataclass(frozen=True, slots=True)
class Completed:
    argv: tuple[str, ...]
    code: int
    stdout: bytes
    stderr: bytes


async def run(reaper: Reaper, argv: Sequence[str]) -> Completed:
    """Run a short command to completion, capturing stdout and stderr."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        _, exited = reaper.spawn(argv, stdin=null, stdout=out_w, stderr=err_w)
    except BaseException:
        for fd in (out_r, out_w, err_r, err_w, null):
            os.close(fd)
        raise
    for fd in (out_w, err_w, null):
        os.close(fd)
    try:
        out, err = await asyncio.gather(read_to_eof(out_r), read_to_eof(err_r))
    finally:
        os.close(out_r)
        os.close(err_r)
    status = await exited
    return Completed(tuple(argv), status.code, out, err)


def close_quietly(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None and fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
