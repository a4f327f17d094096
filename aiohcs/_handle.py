"""What ``System`` and ``Process`` share: one native handle, its events, closing it."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Self

from . import _bridge
from ._documents import Document, wide_document
from ._ffi import get_lib
from .events import DEFAULT_MAXSIZE, Event, EventHub, EventStream, EventType


def attach_events(handle: _bridge.NativeHandle, hub: EventHub) -> None:
    """Register the handle's event callback, delivering to ``hub`` on this loop.

    Done right after the handle exists (before Start), so no early event is missed.
    """
    loop = asyncio.get_running_loop()

    def deliver(event_type: int, raw: str | None) -> None:
        hub.publish(Event.from_raw(event_type, raw))

    handle.attach_events(loop, deliver)
    hub.loop = loop


def catch_up(handle: _bridge.NativeHandle, hub: EventHub, exit_type: EventType) -> None:
    """Publish an exit that happened before the callback was registered."""
    early = handle.poll_exit()
    if early is not None:
        hub.publish(Event.from_raw(exit_type, early or None))


class HandleOwner:
    """An async context manager over one system or process handle."""

    _handle: _bridge.NativeHandle
    _hub: EventHub

    @property
    def closed(self) -> bool:
        return self._handle.closed

    async def _call(self, name: str, document: Document = None) -> _bridge.Outcome:
        """Run ``name(handle, operation, document)`` through the completion bridge."""
        func: Callable[..., int] = getattr(get_lib(), name)
        raw = self._handle.raw
        text = wide_document(document)
        return await _bridge.submit(
            lambda op: func(raw, op, text), name=name, keepalive=(text,), handle=self._handle
        )

    def events(self, maxsize: int = DEFAULT_MAXSIZE) -> EventStream:
        """A new consumer of this handle's events (see :mod:`aiohcs.events`)."""
        return self._hub.subscribe(maxsize)

    async def close(self) -> None:
        """Close the handle: event iterators end, pending waits raise HandleClosed."""
        self._hub.close()
        await self._handle.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __del__(self) -> None:
        # Closing here is not safe (it may block, and at interpreter exit it may
        # deadlock); the atexit hook closes what is left.  Just say so.
        handle = getattr(self, "_handle", None)
        if handle is not None and not handle.closed:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1)
