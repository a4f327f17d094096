"""The callback bridge against the real library and host service.

(a) completions run on a native thread, not the loop's; the synchronous
    HcsWaitForOperationResult path works from plain Python via the raw ffi;
(b) 200 concurrent operations complete; cancelling half mid-flight leaves no
    crash, no leak (registry empty, fd count back to baseline), and the
    service still answers.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest
from support import HcsService, open_fd_count

import aiohcs
from aiohcs import _bridge
from aiohcs._ffi import INFINITE, ffi, get_lib

pytestmark = pytest.mark.timeout(120)


async def _within(coro: Any, service: HcsService, timeout: float = 30.0) -> Any:
    """Await with a deadline; on a hang, say what is still pending and what the service said."""
    try:
        return await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        pending = _bridge.describe_pending()
        raise AssertionError(
            f"hung; {len(pending)} operations pending: {pending[:5]}\n"
            f"--- service log ---\n{service.log_tail()}"
        ) from None


async def _settle(predicate: Any, timeout: float = 10.0) -> None:
    """Wait until predicate() is true (cancelled operations complete later)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_completion_runs_on_a_native_thread(hcs_service: HcsService) -> None:
    seen: list[int] = []
    _bridge.completion_hook = lambda key: seen.append(threading.get_ident())
    try:
        systems = await aiohcs.enumerate_systems()
    finally:
        _bridge.completion_hook = None
    assert isinstance(systems, list)
    assert seen, "the completion callback did not run"
    assert threading.get_ident() not in seen  # not the event loop's thread
    assert _bridge.pending_operations() == 0


def test_synchronous_wait_through_raw_ffi(hcs_service: HcsService) -> None:
    """No event loop, no callback: HcsCreateOperation(NULL, NULL) + a timed wait."""
    lib = get_lib()
    op = lib.HcsCreateOperation(ffi.NULL, ffi.NULL)
    assert op != ffi.NULL
    try:
        doc = ffi.new("PWSTR *")
        # Not started yet: the documented HCS_E_OPERATION_NOT_STARTED.
        assert lib.HcsWaitForOperationResult(op, 0, doc) == -2143878891  # 0x80370115
        assert lib.HcsEnumerateComputeSystems(ffi.NULL, op) == 0
        result = lib.HcsWaitForOperationResult(op, 10_000, doc)
        assert result == 0
        assert doc[0] != ffi.NULL
        text = ffi.string(doc[0])
        lib.LocalFree(doc[0])
        assert text.startswith("[")
        assert lib.HcsGetOperationType(op) == 0  # HcsOperationTypeEnumerate
    finally:
        lib.HcsCloseOperation(op)
    assert INFINITE == 0xFFFFFFFF


async def test_200_concurrent_operations_and_half_cancelled(
    hcs_service: HcsService, system_id: str
) -> None:
    # Warm up so the connection and helper threads exist before the baseline.
    await aiohcs.enumerate_systems()
    gc.collect()
    baseline = open_fd_count()

    async with await aiohcs.create_system(system_id, hcs_service.container_config()) as system:
        await system.start()

        results = await _within(
            asyncio.gather(*(system.properties() for _ in range(200))), hcs_service
        )
        assert all(p.id == system_id for p in results)
        assert _bridge.pending_operations() == 0

        before = dict(_bridge.stats)
        tasks = [asyncio.create_task(system.properties()) for _ in range(200)]
        await asyncio.sleep(0)  # every call is submitted; none has completed on the loop yet
        for task in tasks[::2]:
            task.cancel()
        outcomes = await _within(asyncio.gather(*tasks, return_exceptions=True), hcs_service)
        cancelled = [o for o in outcomes if isinstance(o, asyncio.CancelledError)]
        finished = [o for o in outcomes if isinstance(o, aiohcs.schema.Properties)]
        failures = [o for o in outcomes if isinstance(o, BaseException) and o not in cancelled]
        assert len(cancelled) == 100
        # An operation cancelled in the service completes with E_ABORT; those the
        # caller still awaits must all have succeeded.
        assert not failures, failures[:3]
        assert len(finished) == 100
        # Cancelled entries stay pinned until their completion arrives, which
        # is then abandoned (never delivered to the cancelled caller).
        await _settle(lambda: _bridge.pending_operations() == 0)
        # Every cancelled call's outcome was abandoned; those still in flight in
        # the library when cancelled (typically 5-20%: GetProperties is fast)
        # got an HcsCancelOperation.
        assert _bridge.stats["abandoned"] - before["abandoned"] == 100
        assert 1 <= _bridge.stats["cancel_requested"] - before["cancel_requested"] <= 100

        # Also cancel creates of processes with stdio: their fds must be closed.
        params = {"CommandArgs": ["sleep", "0"], "CreateStdOutPipe": True, "CreateStdErrPipe": True}
        ptasks = [asyncio.create_task(system.create_process(params)) for _ in range(10)]
        await asyncio.sleep(0)
        for ptask in ptasks:
            ptask.cancel()
        pouts = await _within(asyncio.gather(*ptasks, return_exceptions=True), hcs_service)
        for p in pouts:
            if isinstance(p, aiohcs.Process):  # completed before the cancel landed
                await p.close()
        await _settle(lambda: _bridge.pending_operations() == 0)

        props = await system.properties()  # the service still answers
        assert props.state == "Running"
        await system.terminate()
        await system.wait()

    await _settle(lambda: _bridge.open_handles() == 0)
    gc.collect()
    await _settle(lambda: open_fd_count() <= baseline)
    assert _bridge.registered_sinks() == 0
    assert hcs_service.alive()
    assert isinstance(await aiohcs.enumerate_systems(), list)


async def test_cancel_create_does_not_leak_the_system(
    hcs_service: HcsService, system_id: str
) -> None:
    task = asyncio.create_task(aiohcs.create_system(system_id, hcs_service.container_config()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _settle(lambda: _bridge.pending_operations() == 0)
    await _settle(lambda: _bridge.open_handles() == 0)
    # ShouldTerminateOnLastHandleClosed: our abandoned handle closed -> system gone.
    await _settle(lambda: True)
    for _ in range(100):
        systems = await aiohcs.enumerate_systems({"Ids": [system_id]})
        if not systems:
            break
        await asyncio.sleep(0.05)
    assert not [s for s in systems if s.id == system_id and s.state == "Running"]
