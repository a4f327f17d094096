"""The ordering rule of aiohcs.host.system: what takes the lock, what bypasses it.

A backend whose start (or graceful stop) hangs, driven through ComputeSystem
directly; the same rules serve the container and VM backends (the VM case runs
through the real service in tests/vm/test_review_vm_preempt.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiohcs import hresults
from aiohcs.host.documents import ComputeSystem as ComputeSystemDocument
from aiohcs.host.documents import ShutdownOptions
from aiohcs.host.errors import HcsFault
from aiohcs.host.reaper import ExitStatus
from aiohcs.host.system import ComputeSystem


class HangingBackend:
    system_type = "Container"

    def __init__(self, hang_start: bool = True) -> None:
        self.hang_start = hang_start
        self.undone = 0
        self.starts = 0
        self.kills: list[str] = []
        self.exited: asyncio.Future[ExitStatus] | None = None

    async def start(self) -> asyncio.Future[ExitStatus]:
        self.starts += 1
        try:
            if self.hang_start:
                await asyncio.sleep(3600)
        except BaseException:
            self.undone += 1  # what a real backend does: kill what it started
            raise
        self.exited = asyncio.get_running_loop().create_future()
        return self.exited

    async def stop(self, sig: str) -> None:
        self.kills.append(sig)
        if sig == "KILL" and self.exited is not None and not self.exited.done():
            self.exited.set_result(ExitStatus(137, 9, None))
        # TERM: ignored by this "guest"

    async def process_list(self) -> list[dict[str, Any]]:
        return []

    async def statistics(self, start_time: float) -> dict[str, Any]:
        return {}

    async def cleanup(self) -> None:
        pass


def make(backend: HangingBackend) -> ComputeSystem:
    doc = ComputeSystemDocument.model_validate({"Container": {}})
    return ComputeSystem("sys1", doc, backend, lambda s: None)  # type: ignore[arg-type]


async def test_terminate_preempts_start_and_properties_do_not_wait() -> None:
    backend = HangingBackend()
    system = make(backend)
    start = asyncio.ensure_future(system.start())
    await asyncio.sleep(0.05)
    props = await asyncio.wait_for(system.properties(["Statistics", "ProcessList"]), 1)
    assert props["State"] == "Created" and props["ProcessList"] == []
    await asyncio.wait_for(system.terminate(), 2)
    with pytest.raises(HcsFault) as info:
        await start
    assert info.value.hresult == hresults.HCS_E_TERMINATED_DURING_START
    assert backend.undone == 1
    assert system.state == "Stopped" and system.exit_type == "ForcedExit"
    with pytest.raises(HcsFault) as info:
        await system.start()
    assert info.value.hresult == hresults.HCS_E_INVALID_STATE


async def test_cancel_of_start_leaves_it_created() -> None:
    backend = HangingBackend()
    system = make(backend)
    start = asyncio.ensure_future(system.start())
    await asyncio.sleep(0.05)
    start.cancel()  # what CANCEL does to the request's task
    with pytest.raises(asyncio.CancelledError):
        await start
    assert backend.undone == 1 and system.state == "Created"
    assert not system.lock.locked()
    backend.hang_start = False
    await system.start()  # may be started again
    assert system.state == "Running" and backend.starts == 2
    await asyncio.wait_for(system.terminate(), 2)
    assert system.exit_type == "ForcedExit"


async def test_terminate_does_not_wait_for_an_ignored_shutdown() -> None:
    backend = HangingBackend(hang_start=False)
    system = make(backend)
    await system.start()
    shutdown = asyncio.ensure_future(system.shutdown(ShutdownOptions(), 3600))
    await asyncio.sleep(0.05)
    assert not shutdown.done() and backend.kills == ["TERM"]
    await asyncio.wait_for(system.terminate(), 2)
    await asyncio.wait_for(shutdown, 2)
    assert system.exit_type == "ForcedExit"
