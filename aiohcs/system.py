"""``System``: one handle to a compute system (container or VM)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from . import _bridge
from ._documents import Document, parse_model, required_document, wide
from ._ffi import GENERIC_ALL, ffi, get_lib
from ._handle import HandleOwner, attach_events, catch_up
from .errors import HandleClosed, ServiceDisconnected, error_from_hresult
from .events import EventHub, EventType
from .process import Process, create_process, open_process
from .schema import Properties, SystemExitStatus


class System(HandleOwner):
    """A handle to a compute system.

    Created by :func:`create_system` / :func:`open_system`; close it with
    :meth:`close` or ``async with``.  Several ``System`` objects (handles) may
    refer to the same compute system; each sees its own events.
    """

    def __init__(self, system_id: str, handle: _bridge.NativeHandle, hub: EventHub) -> None:
        self._id = system_id
        self._handle = handle
        self._hub = hub

    @property
    def id(self) -> str:
        return self._id

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<aiohcs.System {self._id!r} {state}>"

    # -- operations ----------------------------------------------------------
    async def start(self, options: Document = None) -> None:
        """Start the system (HcsStartComputeSystem)."""
        await self._call("HcsStartComputeSystem", options)

    async def shutdown(self, options: Document = None) -> None:
        """Ask for a graceful shutdown (HcsShutDownComputeSystem); see :meth:`wait`."""
        await self._call("HcsShutDownComputeSystem", options)

    async def terminate(self, options: Document = None) -> None:
        """Force the system to stop (HcsTerminateComputeSystem)."""
        await self._call("HcsTerminateComputeSystem", options)

    async def crash(self, options: Document = None) -> None:
        await self._call("HcsCrashComputeSystem", options)

    async def pause(self, options: Document = None) -> None:
        await self._call("HcsPauseComputeSystem", options)

    async def resume(self, options: Document = None) -> None:
        await self._call("HcsResumeComputeSystem", options)

    async def save(self, options: Document) -> None:
        await self._call("HcsSaveComputeSystem", options)

    async def properties(self, *types: str, query: Document = None) -> Properties:
        """Properties of the system; ``types`` are System_PropertyType names
        (e.g. ``"ProcessList"``, ``"Statistics"``); ``query`` overrides them."""
        if query is None and types:
            query = {"PropertyTypes": list(types)}
        outcome = await self._call("HcsGetComputeSystemProperties", query)
        return parse_model(Properties, outcome.document)

    async def modify(self, request: Document) -> None:
        """Apply a ModifySettingRequest (HcsModifyComputeSystem)."""
        lib = get_lib()
        raw = self._handle.raw
        text = required_document(request, "the modify request")
        await _bridge.submit(
            lambda op: lib.HcsModifyComputeSystem(raw, op, text, ffi.NULL),
            name="HcsModifyComputeSystem",
            keepalive=(text,),
            handle=self._handle,
        )

    # -- exit and events -----------------------------------------------------
    async def wait(self) -> SystemExitStatus:
        """Wait until the system exits; returns its SystemExitStatus.

        Raises :class:`ServiceDisconnected` if the service connection is lost
        first and :class:`HandleClosed` if this handle is closed first.
        """
        event = await self._hub.wait_terminal()
        if event is None:
            raise HandleClosed("the system handle was closed before the system exited")
        if event.type == EventType.ServiceDisconnect:
            raise ServiceDisconnected(f"lost the compute service while waiting for {self._id!r}")
        return SystemExitStatus.model_validate(event.data or {})

    @property
    def exit_status(self) -> SystemExitStatus | None:
        """The exit status once the SystemExited event arrived, else None."""
        event = self._hub.terminal
        if event is None or event.type != EventType.SystemExited:
            return None
        return SystemExitStatus.model_validate(event.data or {})

    # -- processes -----------------------------------------------------------
    async def create_process(self, params: Document) -> Process:
        """Start a process in the system (HcsCreateProcess).

        Ask for stdio with ``CreateStdInPipe`` / ``CreateStdOutPipe`` /
        ``CreateStdErrPipe`` in ``params``.
        """
        return await create_process(self._handle, params)

    async def open_process(self, pid: int) -> Process:
        """A new handle to an existing process (no stdio: that is handed out once)."""
        return await open_process(self._handle, pid)

    # -- closing -------------------------------------------------------------
    async def close(self) -> None:
        """Close this handle (the system keeps running unless it was created with
        ``ShouldTerminateOnLastHandleClosed`` and this was its last handle)."""
        await super().close()


async def create_system(system_id: str, config: Document) -> System:
    """Create a compute system (HcsCreateComputeSystem); it is not started yet.

    ``config`` is a ComputeSystem document: a pydantic model, a dict, or JSON
    text (sent as is).
    """
    lib = get_lib()
    id_text = wide(system_id)
    config_text = required_document(config, "the compute system configuration")
    out = ffi.new("HCS_SYSTEM *")
    hub = EventHub()
    created: list[_bridge.NativeHandle] = []

    def start(op: Any) -> int:
        result = int(lib.HcsCreateComputeSystem(id_text, config_text, op, ffi.NULL, out))
        if result >= 0 and out[0] != ffi.NULL:
            # The handle is valid from here even if creation fails later.
            created.append(_bridge.NativeHandle("system", out[0]))
        return result

    def abandon(outcome: _bridge.Outcome) -> None:
        for handle in created:
            _bridge.close_soon(handle)

    try:
        await _bridge.submit(
            _with_events(start, created, hub, EventType.SystemExited),
            name="HcsCreateComputeSystem",
            keepalive=(id_text, config_text, out),
            on_abandon=abandon,
        )
    except asyncio.CancelledError:
        raise
    except BaseException:
        for handle in created:
            await handle.close()
        raise
    return System(system_id, created[0], hub)


def _with_events(
    start: Callable[[Any], int],
    created: list[_bridge.NativeHandle],
    hub: EventHub,
    exit_type: EventType,
) -> Callable[[Any], int]:
    """Wrap ``start`` so the event callback is registered as soon as the handle exists."""

    def wrapped(op: Any) -> int:
        result = start(op)
        if created:
            attach_events(created[0], hub)
            catch_up(created[0], hub, exit_type)
        return result

    return wrapped


async def open_system(system_id: str) -> System:
    """Open a new handle to an existing compute system (HcsOpenComputeSystem)."""
    lib = get_lib()
    id_text = wide(system_id)

    def open_blocking() -> tuple[int, Any]:
        out = ffi.new("HCS_SYSTEM *")
        result = int(lib.HcsOpenComputeSystem(id_text, GENERIC_ALL, out))
        handle = _bridge.NativeHandle("system", out[0]) if result >= 0 else None
        return result, handle

    def abandon(value: tuple[int, Any]) -> None:
        if value[1] is not None:
            _bridge.close_soon(value[1])

    result, handle = await _bridge.run_blocking(open_blocking, on_abandon=abandon)
    if result < 0:
        raise error_from_hresult(result, None, context=f"HcsOpenComputeSystem({system_id!r})")
    hub = EventHub()
    try:
        attach_events(handle, hub)
        catch_up(handle, hub, EventType.SystemExited)
    except BaseException:
        await handle.close()
        raise
    return System(system_id, handle, hub)
