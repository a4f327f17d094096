"""One client connection: frame I/O, its handle table and its request tasks.

Reading: one loop reads frames; each request runs in its own task, so replies
go out in any order. Writing: one writer task drains an outbox, which is the
per-connection send lock and keeps "reply before the handle's exit event"
ordering simple (both are enqueued synchronously, in order). Frames carrying
fds go out with sendmsg + SCM_RIGHTS on their first byte.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import functools
import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohcs import _wire, hresults
from aiohcs._wire import EventType, FrameError, Header, Kind, Op
from aiohcs.host.errors import HcsFault
from aiohcs.host.fdwait import wait_writable
from aiohcs.host.reaper import close_quietly
from aiohcs.host.system import (
    Handle,
    ProcessHandle,
    RequestState,
    SystemHandle,
    current_request,
)

if TYPE_CHECKING:
    from aiohcs.host.service import Service

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Reply:
    payload: bytes = b""
    arg: int = 0
    fds: dict[int, int] = field(default_factory=dict)  # fdmask bit -> fd (closed after send)
    handle: Handle | None = None  # created by this request: may get events after the reply


@dataclass(slots=True)
class PendingHandle:
    """A client-chosen handle id whose creating request is still running."""

    created: asyncio.Future[Handle]


@dataclass(slots=True)
class HandleQueue:
    """Requests that used a handle id before its creation finished, in arrival order.

    `tail` is resolved once the last of them got its turn (and went on to the
    system's FIFO lock); a request on the same id arriving meanwhile, even after
    the handle exists, waits for it rather than overtaking the queue.
    """

    pending: PendingHandle
    tail: asyncio.Future[None]


@dataclass(slots=True)
class Outgoing:
    data: bytes
    fds: list[int]


class ProtocolViolation(Exception):
    def __init__(self, hresult: int, message: str, request_id: int = 0, op: int = 0) -> None:
        super().__init__(message)
        self.hresult = hresult
        self.request_id = request_id
        self.op = op


class Connection:
    def __init__(self, service: Service, sock: socket.socket, number: int) -> None:
        self.service = service
        self.sock = sock
        self.number = number
        self.loop = asyncio.get_running_loop()
        self.handles: dict[int, Handle | PendingHandle] = {}
        self._queues: dict[int, HandleQueue] = {}
        self.requests: dict[int, tuple[asyncio.Task[Reply], RequestState]] = {}
        self.outbox: asyncio.Queue[Outgoing | None] = asyncio.Queue()
        self.closed = False
        self.greeted = False
        self._buf = bytearray()

    # ------------------------------------------------------------ reading

    async def _recv_exactly(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            chunk = await self.loop.sock_recv(self.sock, max(65536, n - len(self._buf)))
            if not chunk:
                return None
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def _read_frame(self) -> tuple[Header, bytes] | None:
        raw = await self._recv_exactly(_wire.HEADER_SIZE)
        if raw is None:
            return None
        try:
            header = _wire.unpack_header(raw)
        except FrameError as e:
            magic, version, _, op, request_id = _wire.HEADER.unpack(raw)[:5]
            if magic == _wire.MAGIC and version != _wire.VERSION:
                raise ProtocolViolation(
                    hresults.HCS_E_UNSUPPORTED_PROTOCOL_VERSION, str(e), request_id, op
                ) from None
            raise ProtocolViolation(hresults.HCS_E_PROTOCOL_ERROR, str(e)) from None
        payload = await self._recv_exactly(header.length) if header.length else b""
        if payload is None:
            return None
        return header, payload

    async def serve(self) -> None:
        writer = asyncio.ensure_future(self._writer())
        try:
            while True:
                frame = await self._read_frame()
                if frame is None:
                    break
                self._on_frame(*frame)
        except ProtocolViolation as e:
            log.warning("connection %d: protocol error: %s", self.number, e)
            self._enqueue_reply(
                e.request_id, e.op, e.hresult, HcsFault(e.hresult, str(e)).result_error()
            )
        except (ConnectionError, OSError) as e:
            log.info("connection %d: %s", self.number, e)
        finally:
            self.outbox.put_nowait(None)  # flush what is queued, then stop
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 5)
            self.close()

    def _on_frame(self, header: Header, payload: bytes) -> None:
        if header.kind != Kind.REQUEST:
            raise ProtocolViolation(
                hresults.HCS_E_PROTOCOL_ERROR,
                f"clients send requests only (got kind {header.kind})",
                header.request_id,
                header.op,
            )
        if header.fdmask:
            raise ProtocolViolation(
                hresults.HCS_E_PROTOCOL_ERROR,
                "requests must not carry file descriptors",
                header.request_id,
                header.op,
            )
        if not self.greeted and header.op != Op.HELLO:
            raise ProtocolViolation(
                hresults.HCS_E_PROTOCOL_ERROR,
                "the first frame must be HELLO",
                header.request_id,
                header.op,
            )
        if header.op == Op.CANCEL:
            self._cancel(header.arg)
            return
        if header.op == Op.CLOSE_SYSTEM or header.op == Op.CLOSE_PROCESS:
            self._close_handle(header.handle)
            return
        if header.request_id == 0:
            raise ProtocolViolation(hresults.HCS_E_PROTOCOL_ERROR, "request_id 0 is reserved")
        if header.request_id in self.requests:
            raise ProtocolViolation(
                hresults.HCS_E_PROTOCOL_ERROR,
                f"request_id {header.request_id} is already in flight",
            )
        if header.op == Op.HELLO:
            self.greeted = True
        state = RequestState()
        pending: PendingHandle | None = None
        fault: HcsFault | None = None
        if header.op in (Op.CREATE_SYSTEM, Op.OPEN_SYSTEM, Op.CREATE_PROCESS, Op.OPEN_PROCESS):
            # Reserve the client's id now: later requests may already use it.
            if header.new_handle == 0 or header.new_handle in self.handles:
                fault = HcsFault(
                    hresults.E_INVALIDARG,
                    f"new_handle {header.new_handle} is zero or already in use on this connection",
                )
            else:
                pending = PendingHandle(self.loop.create_future())
                self.handles[header.new_handle] = pending
        token = current_request.set(state)
        try:
            task = asyncio.ensure_future(self._dispatch(header, payload, fault))
        finally:
            current_request.reset(token)
        task.add_done_callback(functools.partial(self._complete, header, pending))
        self.requests[header.request_id] = (task, state)

    def _cancel(self, request_id: int) -> None:
        entry = self.requests.get(request_id)
        if entry is None:
            return  # already answered: its real result stands
        task, state = entry
        if state.cancellable:
            task.cancel()

    async def _dispatch(self, header: Header, payload: bytes, fault: HcsFault | None) -> Reply:
        if fault is not None:
            raise fault
        return await self.service.dispatch(self, header, payload)

    def _complete(
        self, header: Header, pending: PendingHandle | None, task: asyncio.Task[Reply]
    ) -> None:
        """Send the one reply of a request (done callback: runs even for a task
        cancelled before it ever started)."""
        self.requests.pop(header.request_id, None)
        reply: Reply | None = None
        hresult = 0
        body = b""
        if task.cancelled():
            hresult = hresults.E_ABORT
            body = HcsFault(hresult, "the operation was cancelled").result_error()
        elif isinstance(task.exception(), HcsFault):
            fault = task.exception()
            assert isinstance(fault, HcsFault)
            hresult = fault.hresult
            body = fault.result_error()
            log.info("request %s failed: %s", _op_name(header.op), fault.message)
        elif task.exception() is not None:
            e = task.exception()
            log.error("request %s crashed", _op_name(header.op), exc_info=e)
            hresult = hresults.E_UNEXPECTED
            body = HcsFault(hresult, f"internal error: {type(e).__name__}: {e}").result_error()
        else:
            reply = task.result()
            body = reply.payload
        handle = reply.handle if reply is not None else None
        if pending is not None and self.handles.get(header.new_handle) is pending:
            if handle is not None:
                self.handles[header.new_handle] = handle
                pending.created.set_result(handle)
            else:
                del self.handles[header.new_handle]
                pending.created.set_exception(
                    HcsFault(
                        hresults.E_HANDLE,
                        f"handle {header.new_handle}: the request that created it failed",
                    )
                )
                pending.created.exception()  # mark retrieved
        self._enqueue_reply(
            header.request_id,
            header.op,
            hresult,
            body,
            arg=reply.arg if reply is not None else 0,
            fds=reply.fds if reply is not None else {},
        )
        if handle is not None:
            handle.replied()
            if self.closed:
                self._release(handle)

    # ------------------------------------------------------------ handles

    async def lookup(self, hid: int, kind: type[Handle]) -> Handle:
        entry = self.handles.get(hid)
        if entry is None:
            raise HcsFault(hresults.E_HANDLE, f"handle {hid} is not open on this connection")
        queue = self._queues.get(hid)
        if isinstance(entry, PendingHandle):
            entry = await self._wait_turn(
                hid, entry, queue if queue and queue.pending is entry else None
            )
        elif queue is not None and _created(queue.pending) is entry:
            entry = await self._wait_turn(hid, queue.pending, queue)
        if not isinstance(entry, kind):
            raise HcsFault(
                hresults.E_HANDLE, f"handle {hid} is not a {kind.__name__.removesuffix('Handle')}"
            )
        return entry

    async def _wait_turn(
        self, hid: int, pending: PendingHandle, queue: HandleQueue | None
    ) -> Handle:
        """Wait for the handle's creation behind the requests queued before this one.

        Awaiting `created` alone is not enough: a woken waiter resumes a few
        loop iterations later, and a request arriving in between would find
        the finished handle and reach the system first (GET_PROPERTIES before
        START would see "Created").
        """
        before: asyncio.Future[Any] = pending.created if queue is None else queue.tail
        mine: asyncio.Future[None] = self.loop.create_future()
        me = HandleQueue(pending, mine)
        self._queues[hid] = me

        def release(_: object = None) -> None:
            if not mine.done():
                mine.set_result(None)
            if self._queues.get(hid) is me:
                del self._queues[hid]

        try:
            await asyncio.shield(before)
        except asyncio.CancelledError:
            before.add_done_callback(release)  # keep the ones behind in line
            raise
        except BaseException:
            release()
            raise
        release()
        return pending.created.result()  # the creation's HcsFault if it failed

    async def system_handle(self, hid: int) -> SystemHandle:
        h = await self.lookup(hid, SystemHandle)
        assert isinstance(h, SystemHandle)
        return h

    async def process_handle(self, hid: int) -> ProcessHandle:
        h = await self.lookup(hid, ProcessHandle)
        assert isinstance(h, ProcessHandle)
        return h

    def _close_handle(self, hid: int) -> None:
        entry = self.handles.get(hid)
        if entry is None:
            return
        if isinstance(entry, PendingHandle):
            # Close once it exists (or forget it if creation fails).
            def later(fut: asyncio.Future[Handle]) -> None:
                if not fut.cancelled() and fut.exception() is None:
                    h = fut.result()
                    if self.handles.get(hid) is h:
                        del self.handles[hid]
                        self._release(h)

            entry.created.add_done_callback(later)
            return
        del self.handles[hid]
        self._release(entry)

    def _release(self, handle: Handle) -> None:
        if isinstance(handle, SystemHandle):
            handle.system.remove_handle(handle)
        elif isinstance(handle, ProcessHandle):
            handle.process.remove_handle(handle)

    def abort(self) -> None:
        """Make `serve` end (its pending recv sees EOF); it then calls close().

        Never close the socket under a pending sock_recv: the loop would keep
        the fd number registered, and the next fd with that number (a pipe, a
        new connection) would never be reported ready.
        """
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError, ValueError):
            fd = self.sock.fileno()
            if fd >= 0:
                self.loop.remove_reader(fd)
                self.loop.remove_writer(fd)
        with contextlib.suppress(OSError):
            self.sock.close()
        for hid in list(self.handles):
            self._close_handle(hid)
        while not self.outbox.empty():
            item = self.outbox.get_nowait()
            if item is not None:
                close_quietly(*item.fds)
        self.service.forget_connection(self)

    # ------------------------------------------------------------ writing

    def _enqueue(self, header: Header, payload: bytes, fds: list[int]) -> None:
        if self.closed:
            close_quietly(*fds)
            return
        self.outbox.put_nowait(Outgoing(_wire.encode(header, payload), fds))

    def _enqueue_reply(
        self,
        request_id: int,
        op: int,
        hresult: int,
        payload: bytes,
        *,
        arg: int = 0,
        fds: dict[int, int] | None = None,
    ) -> None:
        fds = fds or {}
        mask = 0
        ordered: list[int] = []
        for bit in (_wire.FdMask.STDIN, _wire.FdMask.STDOUT, _wire.FdMask.STDERR):
            if bit in fds:
                mask |= bit
                ordered.append(fds[bit])
        header = Header(
            kind=Kind.REPLY,
            op=op,
            request_id=request_id,
            arg=arg,
            hresult=hresult,
            fdmask=mask,
        )
        self._enqueue(header, payload, ordered)

    def send_event(self, event_type: EventType, hid: int, payload: bytes) -> None:
        self._enqueue(Header(kind=Kind.EVENT, op=int(event_type), handle=hid), payload, [])

    async def _writer(self) -> None:
        while True:
            item = await self.outbox.get()
            if item is None:
                return
            try:
                if item.fds:
                    await self._send_with_fds(item.data, item.fds)
                else:
                    await self.loop.sock_sendall(self.sock, item.data)
            except OSError as e:
                log.info("connection %d: send failed: %s", self.number, e)
                close_quietly(*item.fds)
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
                return
            close_quietly(*item.fds)  # the client owns its copies now

    async def _send_with_fds(self, data: bytes, fds: list[int]) -> None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _pack_fds(fds))]
        while True:
            try:
                sent = self.sock.sendmsg([data], anc)
                break
            except BlockingIOError:
                await wait_writable(self.sock.fileno())
        if sent < len(data):
            await self.loop.sock_sendall(self.sock, data[sent:])


def _created(pending: PendingHandle) -> Handle | None:
    fut = pending.created
    if not fut.done() or fut.cancelled() or fut.exception() is not None:
        return None
    return fut.result()


def _op_name(op: int) -> str:
    try:
        return Op(op).name
    except ValueError:
        return str(op)


def _pack_fds(fds: list[int]) -> bytes:
    return array.array("i", fds).tobytes()


__all__ = ["Connection", "Reply"]
