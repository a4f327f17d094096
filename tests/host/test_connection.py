"""Connection internals without a runtime: per-handle request order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from aiohcs import hresults
from aiohcs._wire import Header, Kind, Op
from aiohcs.host.connection import Connection, Reply
from aiohcs.host.errors import HcsFault
from aiohcs.host.system import SystemHandle


class FakeService:
    """CREATE_SYSTEM waits for `create_done`; other ops record when they got their handle."""

    def __init__(self) -> None:
        self.create_done = asyncio.Event()
        self.create_fails = False
        self.order: list[str] = []

    async def dispatch(self, conn: Connection, header: Header, payload: bytes) -> Reply:
        if header.op == Op.CREATE_SYSTEM:
            await self.create_done.wait()
            if self.create_fails:
                raise HcsFault(hresults.E_INVALIDARG, "bad document")
            return Reply(handle=SystemHandle(conn, header.new_handle, system=None))  # type: ignore[arg-type]
        await conn.system_handle(header.handle)
        self.order.append(payload.decode())  # what the system lock would see next
        return Reply()

    def forget_connection(self, conn: Connection) -> None:
        pass


@pytest.fixture
def socks() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def frame(
    conn: Connection, rid: int, op: int, *, handle: int = 0, new: int = 0, tag: str = ""
) -> None:
    h = Header(kind=Kind.REQUEST, op=op, request_id=rid, handle=handle, new_handle=new)
    conn._on_frame(h, tag.encode())


async def until(cond: Any) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_requests_on_a_new_handle_keep_arrival_order(
    socks: tuple[socket.socket, socket.socket],
) -> None:
    """A request arriving just after the create finished must not overtake the
    requests that were already waiting for the handle."""
    svc = FakeService()
    conn = Connection(svc, socks[0], 1)  # type: ignore[arg-type]
    conn.greeted = True
    frame(conn, 1, Op.CREATE_SYSTEM, new=7)
    frame(conn, 2, Op.START, handle=7, tag="start")
    frame(conn, 3, Op.PAUSE, handle=7, tag="pause")
    await until(lambda: all(not t.done() for t, _ in conn.requests.values()))
    svc.create_done.set()
    await until(lambda: isinstance(conn.handles[7], SystemHandle))  # created, reply queued
    frame(conn, 4, Op.GET_PROPERTIES, handle=7, tag="props")
    await until(lambda: not conn.requests)
    assert svc.order == ["start", "pause", "props"]


async def test_cancelled_waiter_keeps_the_queue(
    socks: tuple[socket.socket, socket.socket],
) -> None:
    svc = FakeService()
    conn = Connection(svc, socks[0], 1)  # type: ignore[arg-type]
    conn.greeted = True
    frame(conn, 1, Op.CREATE_SYSTEM, new=7)
    frame(conn, 2, Op.START, handle=7, tag="start")
    frame(conn, 3, Op.PAUSE, handle=7, tag="pause")
    frame(conn, 4, Op.RESUME, handle=7, tag="resume")
    await asyncio.sleep(0)
    conn._cancel(3)  # CANCEL of a request still waiting for the handle
    svc.create_done.set()
    await until(lambda: isinstance(conn.handles[7], SystemHandle))
    frame(conn, 6, Op.GET_PROPERTIES, handle=7, tag="props")
    await until(lambda: not conn.requests)
    assert svc.order == ["start", "resume", "props"]


async def test_failed_create_fails_every_queued_request(
    socks: tuple[socket.socket, socket.socket],
) -> None:
    svc = FakeService()
    svc.create_fails = True
    conn = Connection(svc, socks[0], 1)  # type: ignore[arg-type]
    conn.greeted = True
    frame(conn, 1, Op.CREATE_SYSTEM, new=7)
    tasks = []
    for rid in (2, 3):
        frame(conn, rid, Op.START, handle=7, tag=str(rid))
        tasks.append(conn.requests[rid][0])
    svc.create_done.set()
    await until(lambda: not conn.requests)
    for t in tasks:
        exc = t.exception()
        assert isinstance(exc, HcsFault) and exc.hresult == hresults.E_HANDLE
    assert svc.order == [] and 7 not in conn.handles and not conn._queues
