"""Await readiness of a raw fd on the running loop (for recvmsg/sendmsg/read)."""

from __future__ import annotations

import asyncio
import os


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _wake, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def wait_writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _wake, ready)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


async def read_to_eof(fd: int) -> bytes:
    """Read a pipe end to EOF without blocking the loop (the caller closes ``fd``)."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            await wait_readable(fd)
            continue
        if not data:
            return b"".join(chunks)
        chunks.append(data)
