"""A small protocol client for the host-service tests (docs/protocol.md).

It speaks the same frames libcomputecore does, using aiohcs._wire, and receives
stdio descriptors with recvmsg/SCM_RIGHTS.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import json
import os
import socket
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohcs import _wire
from aiohcs._wire import Header, Kind, Op
from aiohcs.host.fdwait import wait_readable

_ids = itertools.count(1)


def unique_id(prefix: str) -> str:
    """``{prefix}-{pid}-{n}``: a system id (or name) no other test of this run uses."""
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


@dataclass
class Reply:
    header: Header
    payload: bytes
    fds: list[int] = field(default_factory=list)

    @property
    def hresult(self) -> int:
        return self.header.hresult

    @property
    def ok(self) -> bool:
        return self.header.hresult == 0

    def json(self) -> Any:
        return json.loads(self.payload)

    def error(self) -> dict[str, Any]:
        doc = json.loads(self.payload)
        assert isinstance(doc, dict)
        return doc

    def fd(self, bit: int) -> int | None:
        """The descriptor for one fdmask bit, in the documented bit order."""
        if not self.header.fdmask & bit:
            return None
        index = bin(self.header.fdmask & (bit - 1)).count("1")
        return self.fds[index]

    def close_fds(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class Event:
    header: Header
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None


class ServiceError(Exception):
    def __init__(self, reply: Reply) -> None:
        doc = reply.error() if reply.payload else {}
        super().__init__(f"0x{reply.hresult:08X}: {doc.get('ErrorMessage')}")
        self.reply = reply
        self.hresult = reply.hresult
        self.message = str(doc.get("ErrorMessage", ""))


class WireClient:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._handles = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self.events: dict[int, asyncio.Queue[Event]] = {}
        self._buf = bytearray()
        self._fds: deque[int] = deque()
        self._closed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read_loop())
        self.hello: dict[str, Any] = {}
        self.protocol_error: Reply | None = None  # a reply matching no request

    @classmethod
    async def connect(cls, path: str, *, hello: bool = True) -> WireClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, path)
        client = cls(sock)
        if hello:
            r = await client.request(Op.HELLO, b"tests/1")
            assert r.ok, r
            client.hello = r.json()
        return client

    def new_handle(self) -> int:
        return next(self._handles)

    def event_queue(self, handle: int) -> asyncio.Queue[Event]:
        return self.events.setdefault(handle, asyncio.Queue())

    async def next_event(self, handle: int, timeout: float = 30) -> Event:
        return await asyncio.wait_for(self.event_queue(handle).get(), timeout)

    # ---------------------------------------------------------------- sending

    async def send_raw(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    def start_request(
        self,
        op: int,
        payload: bytes | str = b"",
        *,
        handle: int = 0,
        new_handle: int = 0,
        arg: int = 0,
    ) -> tuple[int, asyncio.Future[Reply]]:
        if isinstance(payload, str):
            payload = payload.encode()
        rid = next(self._ids)
        fut: asyncio.Future[Reply] = self.loop.create_future()
        self._pending[rid] = fut
        frame = _wire.encode(
            Header(
                kind=Kind.REQUEST,
                op=op,
                request_id=rid,
                handle=handle,
                new_handle=new_handle,
                arg=arg,
            ),
            payload,
        )
        self._send_frame(frame)
        return rid, fut

    async def request(
        self,
        op: int,
        payload: bytes | str = b"",
        *,
        handle: int = 0,
        new_handle: int = 0,
        arg: int = 0,
        timeout: float = 60,
    ) -> Reply:
        _, fut = self.start_request(op, payload, handle=handle, new_handle=new_handle, arg=arg)
        return await asyncio.wait_for(fut, timeout)

    async def call(self, op: int, payload: bytes | str = b"", **kw: Any) -> Reply:
        """Like request, but raise ServiceError on a failed HRESULT."""
        r = await self.request(op, payload, **kw)
        if not r.ok:
            r.close_fds()
            raise ServiceError(r)
        return r

    def notify(self, op: int, *, handle: int = 0, arg: int = 0) -> None:
        """Requests without a reply (CLOSE_*, CANCEL)."""
        frame = _wire.encode(Header(kind=Kind.REQUEST, op=op, request_id=0, handle=handle, arg=arg))
        self._send_frame(frame)

    def _send_frame(self, frame: bytes) -> None:
        """Send a whole frame now (blocking), so frames go out in call order."""
        self.sock.setblocking(True)
        try:
            self.sock.sendall(frame)
        finally:
            self.sock.setblocking(False)

    # ---------------------------------------------------------------- helpers

    async def create_system(self, system_id: str, doc: dict[str, Any] | str) -> int:
        h = self.new_handle()
        text = doc if isinstance(doc, str) else json.dumps(doc)
        await self.call(Op.CREATE_SYSTEM, _wire.join_two(system_id, text), new_handle=h)
        return h

    async def create_process(self, system: int, params: dict[str, Any]) -> tuple[int, Reply]:
        h = self.new_handle()
        r = await self.call(
            Op.CREATE_PROCESS, json.dumps(params), handle=system, new_handle=h, timeout=60
        )
        return h, r

    # ---------------------------------------------------------------- receiving

    async def _recv_more(self) -> bool:
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(
                    65536, socket.CMSG_SPACE(16 * 4), socket.MSG_CMSG_CLOEXEC
                )
                break
            except BlockingIOError:
                await wait_readable(self.sock.fileno())
        for level, kind, blob in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(blob[: len(blob) - len(blob) % 4])
                self._fds.extend(fds)
        if not data:
            return False
        self._buf += data
        return True

    async def _take(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            if not await self._recv_more():
                return None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def _read_loop(self) -> None:
        try:
            while True:
                raw = await self._take(_wire.HEADER_SIZE)
                if raw is None:
                    break
                header = _wire.unpack_header(raw)
                payload = await self._take(header.length) if header.length else b""
                if payload is None:
                    break
                fds = [self._fds.popleft() for _ in range(_wire.fd_count(header.fdmask))]
                if header.kind == Kind.EVENT:
                    self.event_queue(header.handle).put_nowait(Event(header, payload))
                else:
                    fut = self._pending.pop(header.request_id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(Reply(header, payload, fds))
                    else:
                        self.protocol_error = Reply(header, payload, fds)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("service closed the connection"))

    async def wait_closed(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self._closed.wait(), timeout)

    async def close(self) -> None:
        # Stop the reader (which unregisters the fd from the loop) BEFORE
        # closing the socket: a closed fd number left registered would be
        # reused by the next socket.
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        with contextlib.suppress(OSError):
            self.sock.close()
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.popleft())


@contextlib.asynccontextmanager
async def connected(path: str) -> AsyncIterator[WireClient]:
    """A WireClient connected to the service at ``path`` (after HELLO); closed at exit."""
    client = await WireClient.connect(path)
    try:
        yield client
    finally:
        await client.close()


async def read_until_eof(fd: int, timeout: float = 30) -> bytes:
    """Read a pipe end to EOF without blocking the loop; closes `fd`."""

    def blocking() -> bytes:
        chunks: list[bytes] = []
        while True:
            data = os.read(fd, 65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    try:
        return await asyncio.wait_for(asyncio.to_thread(blocking), timeout)
    finally:
        os.close(fd)
