"""HCS events and their fan-out to consumers.

One native event callback is registered per System/Process handle; the bridge
copies each event on the native thread and delivers it to the handle's
:class:`EventHub` on the event loop.  The hub fans it out to every consumer
that called ``events()``.

Overflow policy (explicit, per consumer): each consumer has a bounded buffer
(``maxsize``, default 256).  When it is full the **oldest** buffered event is
dropped to make room and the consumer's ``dropped`` counter goes up; delivery
never blocks and never slows other consumers.  The terminal event is never the
one dropped (it is always the newest).

Terminal events end the stream: SystemExited, ProcessExited and
ServiceDisconnect are yielded and then iteration stops.  Closing the handle
also ends every stream (no event is produced for a close, as in HCS).  A
consumer that subscribes after the terminal event gets that event replayed
and then the end, so ``async for`` over a finished process still sees its exit.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

DEFAULT_MAXSIZE = 256


class EventType(enum.IntEnum):
    """``HCS_EVENT_TYPE`` (API.md §2.3).  Unknown values become pseudo-members."""

    Invalid = 0x00000000
    SystemExited = 0x00000001
    SystemCrashInitiated = 0x00000002
    SystemCrashReport = 0x00000003
    SystemRdpEnhancedModeStateChanged = 0x00000004
    SystemSiloJobCreated = 0x00000005
    SystemGuestConnectionClosed = 0x00000006
    ProcessExited = 0x00010000
    OperationCallback = 0x01000000
    ServiceDisconnect = 0x02000000
    GroupVmLifecycle = 0x80000002
    GroupLiveMigration = 0x80000003
    GroupOperationInfo = 0xC0000001

    @classmethod
    def _missing_(cls, value: object) -> EventType | None:
        # A newer HCS may send types we do not know; keep them instead of failing
        # inside the delivery path.
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"Unknown_0x{value:08X}"
        member._value_ = value
        return member

    @property
    def is_terminal(self) -> bool:
        """True for the events after which a handle produces no more events."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {EventType.SystemExited, EventType.ProcessExited, EventType.ServiceDisconnect}
)


@dataclass(frozen=True)
class Event:
    """One HCS event: its type, the raw ``EventData`` text and that text parsed.

    ``data`` is the parsed JSON (a dict for the documented payloads) or None
    when there was no payload or it was not valid JSON (``raw`` keeps the text).
    """

    type: EventType
    raw: str | None = None
    data: Any = field(default=None, compare=False)

    @classmethod
    def from_raw(cls, type_value: int, raw: str | None) -> Event:
        data: Any = None
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
        return cls(EventType(type_value), raw, data)


class EventStream:
    """One consumer's view of a hub: an async iterator with a bounded buffer.

    Use ``async for ev in handle.events(): ...``; or ``async with handle.events()
    as stream:`` to unsubscribe deterministically when the block exits.
    """

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._hub = hub
        self._buffer: deque[Event] = deque()
        self._maxsize = maxsize
        self._ended = False
        self._wakeup: asyncio.Event | None = None
        #: How many events were dropped because this consumer fell behind.
        self.dropped = 0

    # -- producer side (hub, on the loop) ---------------------------------
    def _push(self, event: Event) -> None:
        if self._ended:
            return
        if len(self._buffer) >= self._maxsize:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(event)
        self._wake()

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    # -- consumer side ----------------------------------------------------
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self._ended:
                self._hub._unsubscribe(self)
                raise StopAsyncIteration
            self._hub._check_loop()
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def aclose(self) -> None:
        """Stop receiving; buffered events are discarded."""
        self._ended = True
        self._buffer.clear()
        self._hub._unsubscribe(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class EventHub:
    """The events of one handle, fanned out to its consumers (loop thread only)."""

    def __init__(self) -> None:
        self._streams: list[EventStream] = []
        self._terminal: Event | None = None
        self._closed = False
        self._terminal_waiters: list[asyncio.Future[Event | None]] = []
        #: The loop the handle's events are delivered to (set when its callback
        #: is registered); waiting on another loop would never wake up.
        self.loop: asyncio.AbstractEventLoop | None = None

    def _check_loop(self) -> None:
        if self.loop is None or self._terminal is not None or self._closed:
            return
        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError(
                "this handle's events are delivered to the event loop it was opened on; "
                "wait for them there (or open a new handle on this loop)"
            )

    @property
    def terminal(self) -> Event | None:
        """The terminal event, once it arrived."""
        return self._terminal

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, maxsize: int = DEFAULT_MAXSIZE) -> EventStream:
        stream = EventStream(self, maxsize)
        if self._terminal is not None:
            stream._push(self._terminal)
            stream._end()
        elif self._closed:
            stream._end()
        else:
            self._streams.append(stream)
        return stream

    def _unsubscribe(self, stream: EventStream) -> None:
        # Identity, not equality: streams are distinct consumers.
        self._streams = [s for s in self._streams if s is not stream]

    def publish(self, event: Event) -> None:
        """Deliver one event (called on the loop by the bridge)."""
        if self._closed or self._terminal is not None:
            return  # nothing follows a terminal event
        # Snapshot: a consumer may unsubscribe while we iterate (lesson 20).
        for stream in list(self._streams):
            stream._push(event)
        if event.type.is_terminal:
            self._terminal = event
            for stream in list(self._streams):
                stream._end()
            self._streams.clear()
            self._release_waiters(event)

    def close(self) -> None:
        """The handle was closed: end every stream and release terminal waiters."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            stream._end()
        self._streams.clear()
        self._release_waiters(None)

    async def wait_terminal(self) -> Event | None:
        """The terminal event; None if the handle was closed before one arrived."""
        if self._terminal is not None:
            return self._terminal
        if self._closed:
            return None
        self._check_loop()
        fut: asyncio.Future[Event | None] = asyncio.get_running_loop().create_future()
        self._terminal_waiters.append(fut)
        try:
            return await fut
        finally:
            if fut in self._terminal_waiters:
                self._terminal_waiters.remove(fut)

    def _release_waiters(self, event: Event | None) -> None:
        waiters, self._terminal_waiters = self._terminal_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(event)


__all__ = ["DEFAULT_MAXSIZE", "Event", "EventHub", "EventStream", "EventType"]
