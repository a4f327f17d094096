"""Regressions found in review: pty output, concurrent/cancelled close, argument types."""

from __future__ import annotations

import asyncio
import os
import pty
from collections.abc import AsyncIterator

import pytest
from support import HcsService, running_system

import aiohcs
from aiohcs import _bridge
from aiohcs._documents import wide
from aiohcs._streams import FdReceiveStream

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def running(hcs_service: HcsService, system_id: str) -> AsyncIterator[aiohcs.System]:
    async with running_system(hcs_service, system_id) as system:
        yield system


async def test_pty_master_eio_is_end_of_stream() -> None:
    # Linux reports EIO on a pty master once the terminal side is closed.
    master, slave = pty.openpty()
    os.write(slave, b"hello\n")
    os.close(slave)
    reader = FdReceiveStream(master)
    try:
        assert b"hello" in await asyncio.wait_for(reader.read_all(), 5)
    finally:
        await reader.aclose()


async def test_console_process_output_is_readable(running: aiohcs.System) -> None:
    proc = await running.create_process(
        {
            "CommandArgs": ["sh", "-c", "echo from-console; exit 4"],
            "EmulateConsole": True,
            "CreateStdInPipe": True,
            "CreateStdOutPipe": True,
        }
    )
    async with proc:
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        assert out == b"from-console\r\n"
        assert await asyncio.wait_for(proc.wait(), 10) == 4


async def test_concurrent_close_with_call_in_flight(running: aiohcs.System) -> None:
    other = await aiohcs.open_system(running.id)
    call = asyncio.ensure_future(other.properties())
    await asyncio.sleep(0)  # the call is in flight on the handle
    closes = [asyncio.ensure_future(other.close()) for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*closes), 10)
    await asyncio.wait_for(call, 10)
    assert other._handle._native_closed


async def test_cancelled_close_still_releases_the_handle(running: aiohcs.System) -> None:
    before = _bridge.open_handles()
    other = await aiohcs.open_system(running.id)
    call = asyncio.ensure_future(other.properties())
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(other.close())
    await asyncio.sleep(0)  # waiting for the call in flight
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await asyncio.wait_for(call, 10)
    for _ in range(100):
        if _bridge.open_handles() == before:
            break
        await asyncio.sleep(0.05)
    assert _bridge.open_handles() == before
    assert other._handle._native_closed


@pytest.mark.parametrize("value", [5, b"abc", 1.5])
def test_wide_rejects_non_strings(value: object) -> None:
    with pytest.raises(TypeError, match="must be str"):
        wide(value)  # type: ignore[arg-type]


def test_waiting_on_another_event_loop_raises_instead_of_hanging(
    hcs_service: HcsService, system_id: str
) -> None:
    async def create() -> aiohcs.System:
        system = await aiohcs.create_system(system_id, hcs_service.container_config())
        await system.start()
        return system

    # A second asyncio.run(): the events still go to the first (closed) loop.
    system = asyncio.run(create())

    async def use() -> None:
        try:
            with pytest.raises(RuntimeError, match="event loop"):
                await asyncio.wait_for(system.wait(), 10)
            with pytest.raises(RuntimeError, match="event loop"):
                await asyncio.wait_for(system.events().__anext__(), 10)
            await system.properties()  # plain calls work from any loop
            await system.terminate()
        finally:
            await system.close()

    asyncio.run(use())
