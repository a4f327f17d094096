"""The single reaper: statuses, early exits, ns pid capture."""

from __future__ import annotations

import asyncio
import os

from aiohcs.host import reaper as reaper_mod
from aiohcs.host.reaper import Reaper, run, status_to_exit


def test_status_conversion() -> None:
    assert status_to_exit(7 << 8).code == 7
    killed = status_to_exit(9)
    assert killed.code == 128 + 9 and killed.signal == 9


async def test_spawn_and_run() -> None:
    r = Reaper()
    r.install(asyncio.get_running_loop(), subreaper=False)
    try:
        done = await run(r, ["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (done.code, done.stdout, done.stderr) == (3, b"out\n", b"err\n")
        done = await run(r, ["sh", "-c", "kill -TERM $$"])
        assert done.code == 128 + 15
    finally:
        r.uninstall()


async def test_status_of_unregistered_pid_is_remembered() -> None:
    r = Reaper()
    r.install(asyncio.get_running_loop(), subreaper=False)
    try:
        # Spawn outside the reaper's bookkeeping, as a re-parented process is.
        null = os.open(os.devnull, os.O_RDWR)
        pid = os.posix_spawnp(
            "sh",
            ["sh", "-c", "exit 5"],
            dict(os.environ),
            file_actions=[(os.POSIX_SPAWN_DUP2, null, 0)],
        )
        os.close(null)
        for _ in range(200):
            if r.exited(pid) is not None:
                break
            await asyncio.sleep(0.01)
        status = r.exited(pid)
        assert status is not None and status.code == 5
        assert status.ns_pid == pid  # no pid namespace here: same pid
        assert (await r.watch(pid)).code == 5
        assert r.exited(pid) is None  # claimed
    finally:
        r.uninstall()


def test_read_ns_pid_self() -> None:
    assert reaper_mod.read_ns_pid(os.getpid()) == os.getpid()
    assert reaper_mod.read_ns_pid(2**22 + 12345) is None
