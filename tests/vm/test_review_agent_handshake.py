"""Review regression: a guest-agent handshake cut short leaves no stray tasks.

When `start` gives up waiting for the agent's HELLO (timeout, or the VM is
terminated), the handshake task was cancelled but the HELLO request and the
"guest hello seen" waiter it had spawned were not: closing the client then
logged "Task exception was never retrieved" (AgentDisconnected) and "Task was
destroyed but it is pending!" in the service log.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from typing import Any

from aiohcs.host.vm.agent import AgentClient


async def test_cancelled_handshake_leaves_no_tasks() -> None:
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: problems.append(ctx))
    mine, guest = socket.socketpair()  # the guest never answers
    try:
        reader, writer = await asyncio.open_unix_connection(sock=mine)
        client = AgentClient(reader, writer)
        before = asyncio.all_tasks()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client._handshake(), 0.2)
        await client.close()
        for _ in range(5):
            await asyncio.sleep(0)
        leftover = [t for t in asyncio.all_tasks() - before if not t.done()]
        assert leftover == [], leftover
        del client, leftover, before
        gc.collect()
        await asyncio.sleep(0)
        assert problems == [], problems
    finally:
        guest.close()
        loop.set_exception_handler(None)
