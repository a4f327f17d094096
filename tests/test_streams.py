"""The fd byte streams: non-blocking, EOF, broken pipe, close wakes readers."""

from __future__ import annotations

import asyncio
import os

import anyio
import pytest

from aiohcs._streams import FdReceiveStream, FdSendStream


async def test_round_trip_larger_than_pipe_buffer() -> None:
    r, w = os.pipe()
    reader, writer = FdReceiveStream(r), FdSendStream(w)
    payload = os.urandom(1 << 20)

    async def produce() -> None:
        await writer.send(payload)
        await writer.aclose()

    task = asyncio.create_task(produce())
    assert await reader.read_all() == payload
    await task
    with pytest.raises(anyio.EndOfStream):
        await reader.receive()
    await reader.aclose()


async def test_broken_pipe() -> None:
    r, w = os.pipe()
    os.close(r)
    writer = FdSendStream(w)
    with pytest.raises(anyio.BrokenResourceError):
        await writer.send(b"x")
    await writer.aclose()


async def test_close_wakes_a_blocked_reader() -> None:
    r, w = os.pipe()
    reader = FdReceiveStream(r)
    task = asyncio.create_task(reader.receive())
    await asyncio.sleep(0.01)
    await reader.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await asyncio.wait_for(task, 1)
    os.close(w)


async def test_closed_stream_raises() -> None:
    r, w = os.pipe()
    os.close(w)
    reader = FdReceiveStream(r)
    await reader.aclose()
    await reader.aclose()  # idempotent
    with pytest.raises(anyio.ClosedResourceError):
        await reader.receive()
