"""The operation bridge: native completion/event callbacks -> asyncio.

How one asynchronous HCS call travels (ARCHITECTURE.md "The path of one call"):

1. :func:`submit` picks an integer key, creates an ``HCS_OPERATION`` whose
   context is that key and whose completion callback is our compiled
   trampoline, and records a :class:`_PendingOp` in the registry.  The entry
   holds the loop, the future and *every* cdata the native call reads or
   writes (UTF-16 buffers, out-pointers), so nothing is freed while HCS may
   still touch it (API.md §5.4 hazard 1).
2. The caller's ``start(op)`` makes the native call; it returns at once.
3. On a native thread the trampoline claims the entry, reads the result with
   the non-blocking ``HcsGetOperationResult[AndProcessInfo]``, copies the
   result document into a ``str`` and frees it with ``LocalFree``, drops its
   reference to the operation (closing it when it was the last), and hands
   the outcome to the loop with ``call_soon_threadsafe``.  A closed loop
   raises RuntimeError there: the outcome is dropped and any stdio fds in it
   are closed.  The trampoline never blocks and never lets an exception out.
4. On the loop, :func:`_resolve` sets the future unless it is already done
   (cancelled), in which case the outcome is *abandoned*: fds closed and the
   caller's ``on_abandon`` hook run (e.g. close a just-created handle).

Cancelling the awaiting task asks ``HcsCancelOperation`` (in a worker thread)
and leaves the entry pinned until the completion arrives.  The operation
handle is reference-counted (in-flight call + pending cancel request) so that
a cancel request never races with the trampoline's ``HcsCloseOperation``.

Events: one native registration per System/Process handle
(:func:`attach_events`); the event trampoline copies the type and
``EventData`` (valid only during the callback) and posts them to the loop that
owns the handle.

The registry lock is a plain ``threading.Lock`` that is never held across a
native call (lessons 10, 12, 17).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from . import hresults as hr
from ._ffi import ffi, get_callbacks, get_lib
from .errors import HandleClosed, OutOfMemory, error_from_hresult

logger = logging.getLogger("aiohcs.bridge")

#: Called on the native thread at the start of every completion callback with
#: the operation's key.  Tests use it to see which thread completions run on.
#: Must not block.
completion_hook: Callable[[int], None] | None = None


# --------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    """HCS_PROCESS_INFORMATION with HANDLEs turned into POSIX fds (None = absent)."""

    pid: int
    stdin: int | None
    stdout: int | None
    stderr: int | None

    def fds(self) -> list[int]:
        return [fd for fd in (self.stdin, self.stdout, self.stderr) if fd is not None]

    def close_fds(self) -> None:
        for fd in self.fds():
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(frozen=True)
class Outcome:
    """What an operation produced: its HRESULT (signed), result document, process info."""

    hresult: int
    document: str | None
    process_info: ProcessInfo | None = None

    @property
    def failed(self) -> bool:
        return self.hresult < 0


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

_PENDING, _CLAIMED = 0, 1


class _PendingOp:
    """One in-flight operation; everything the native call uses hangs off it."""

    __slots__ = (
        "cancel_requested",
        "future",
        "handle",
        "keepalive",
        "key",
        "loop",
        "name",
        "on_abandon",
        "op",
        "refs",
        "state",
        "want_process_info",
    )

    def __init__(
        self,
        key: int,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Outcome],
        name: str,
        keepalive: list[Any],
        want_process_info: bool,
        on_abandon: Callable[[Outcome], None] | None,
        handle: NativeHandle | None,
    ) -> None:
        self.key = key
        self.loop = loop
        self.future = future
        self.name = name
        self.keepalive = keepalive
        self.want_process_info = want_process_info
        self.on_abandon = on_abandon
        self.handle = handle
        self.op: Any = ffi.NULL
        self.state = _PENDING
        # References to the HCS_OPERATION: 1 for the call in flight (dropped by
        # the trampoline), +1 while a cancel request is running.  Whoever drops
        # the last one closes the operation.
        self.refs = 1
        self.cancel_requested = False


_lock = threading.Lock()
_keys = itertools.count(1)
_registry: dict[int, _PendingOp] = {}


@dataclass
class _EventSink:
    loop: asyncio.AbstractEventLoop
    deliver: Callable[[int, str | None], None]


_sinks: dict[int, _EventSink] = {}


#: Counters for tests and diagnostics (updated on event-loop threads only).
stats: dict[str, int] = {"cancel_requested": 0, "abandoned": 0}


def pending_operations() -> int:
    """How many operations are in flight or pinned awaiting their completion."""
    with _lock:
        return len(_registry)


def describe_pending() -> list[str]:
    """Names and states of the operations still in the registry (for debugging)."""
    with _lock:
        return [
            f"{e.name}#{e.key} state={e.state} refs={e.refs} cancel={e.cancel_requested}"
            for e in _registry.values()
        ]


def registered_sinks() -> int:
    with _lock:
        return len(_sinks)


# --------------------------------------------------------------------------
# Error reporting from native threads without blocking (lesson 15)
# --------------------------------------------------------------------------

_ErrInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
_error_queue: queue.SimpleQueue[_ErrInfo] = queue.SimpleQueue()
_error_thread: threading.Thread | None = None


def _error_logger() -> None:
    while True:
        exc_type, exc, tb = _error_queue.get()
        with contextlib.suppress(Exception):  # logging itself broke: nothing to do
            logger.error("exception in an HCS callback", exc_info=(exc_type, exc, tb))  # type: ignore[arg-type]


def _report_callback_error(
    exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
) -> None:
    """cffi ``onerror`` handler: queue the error for the logger thread; never block."""
    _error_queue.put((exc_type, exc, tb))


# --------------------------------------------------------------------------
# Trampolines (run on native threads)
# --------------------------------------------------------------------------

_ready_lock = threading.Lock()
_completion_ptr: Any = None
_event_ptr: Any = None


def _ensure_ready() -> None:
    """Attach the Python trampolines to the compiled module, once."""
    global _completion_ptr, _event_ptr, _error_thread
    if _completion_ptr is not None:
        return
    with _ready_lock:
        if _completion_ptr is not None:
            return
        cb = get_callbacks()
        # Started before any callback can fire (lesson 16: start helper threads early).
        _error_thread = threading.Thread(
            target=_error_logger, name="aiohcs-callback-errors", daemon=True
        )
        _error_thread.start()
        cb.ffi.def_extern(name="_aiohcs_on_operation_complete", onerror=_report_callback_error)(
            _on_operation_complete
        )
        cb.ffi.def_extern(name="_aiohcs_on_event", onerror=_report_callback_error)(_on_event)
        # The two FFI instances do not share function-pointer types: go through
        # an integer address.
        completion_addr = int(cb.ffi.cast("uintptr_t", cb.lib._aiohcs_on_operation_complete))
        event_addr = int(cb.ffi.cast("uintptr_t", cb.lib._aiohcs_on_event))
        _event_ptr = ffi.cast("HCS_EVENT_CALLBACK", event_addr)
        _completion_ptr = ffi.cast("HCS_OPERATION_COMPLETION", completion_addr)


def _context_key(context: Any) -> int:
    return int(ffi.cast("uintptr_t", context))


def take_string(ptr: Any) -> str | None:
    """Copy an HCS-allocated PWSTR into a str and free it with LocalFree."""
    if ptr == ffi.NULL:
        return None
    try:
        return str(ffi.string(ptr))
    finally:
        get_lib().LocalFree(ptr)


def _handle_to_fd(handle: Any) -> int | None:
    value = int(ffi.cast("intptr_t", handle))
    if sys.platform == "win32":  # pragma: no cover - Windows only
        if value in (0, -1):  # NULL or INVALID_HANDLE_VALUE: stream not requested
            return None
        import msvcrt

        return msvcrt.open_osfhandle(value, 0)
    # Linux: the HANDLE carries an fd; INVALID_HANDLE_VALUE means absent.  NULL
    # is *not* treated as absent here: fd 0 is a real descriptor when our own
    # stdin is closed (as under CI), and the library marks absence with -1.
    if value == -1:
        return None
    return value


def _read_result(entry: _PendingOp) -> Outcome:
    lib = get_lib()
    doc = ffi.new("PWSTR *")
    if entry.want_process_info:
        info = ffi.new("HCS_PROCESS_INFORMATION *")
        result = lib.HcsGetOperationResultAndProcessInfo(entry.op, info, doc)
        process_info = None
        if result >= 0:
            process_info = ProcessInfo(
                pid=int(info.ProcessId),
                stdin=_handle_to_fd(info.StdInput),
                stdout=_handle_to_fd(info.StdOutput),
                stderr=_handle_to_fd(info.StdError),
            )
        return Outcome(int(result), take_string(doc[0]), process_info)
    result = lib.HcsGetOperationResult(entry.op, doc)
    return Outcome(int(result), take_string(doc[0]))


def _release_op(entry: _PendingOp) -> None:
    """Drop one reference to the operation; close it if it was the last."""
    with _lock:
        entry.refs -= 1
        last = entry.refs == 0
    if last:
        get_lib().HcsCloseOperation(entry.op)


def _on_operation_complete(operation: Any, context: Any) -> None:
    key = _context_key(context)
    with _lock:
        entry = _registry.get(key)
        if entry is None or entry.state != _PENDING:
            # Not ours any more (a synchronous failure already owned it): do not
            # touch the operation.
            return
        entry.state = _CLAIMED
    hook = completion_hook
    if hook is not None:
        try:
            hook(key)
        except Exception:
            _report_callback_error(*sys.exc_info())
    try:
        outcome = _read_result(entry)
    except BaseException:
        _report_callback_error(*sys.exc_info())
        outcome = Outcome(hr.to_signed(hr.E_UNEXPECTED), None)
    with _lock:
        _registry.pop(key, None)
    _release_op(entry)
    try:
        entry.loop.call_soon_threadsafe(_resolve, entry, outcome)
    except RuntimeError:
        # The loop is closed (lesson 18): nobody will read this.  Release what
        # the outcome owns; handles are left for the atexit hook.
        if outcome.process_info is not None:
            outcome.process_info.close_fds()


def _on_event(event: Any, context: Any) -> None:
    key = _context_key(context)
    # Copy now: EventData is valid only for the duration of this callback.
    cb_ffi = get_callbacks().ffi
    event_type = int(event.Type)
    raw = None if event.EventData == cb_ffi.NULL else str(cb_ffi.string(event.EventData))
    with _lock:
        sink = _sinks.get(key)
    if sink is None:
        return
    with contextlib.suppress(RuntimeError):  # loop closed: the event has no consumer left
        sink.loop.call_soon_threadsafe(sink.deliver, event_type, raw)


# --------------------------------------------------------------------------
# Loop side
# --------------------------------------------------------------------------


def _resolve(entry: _PendingOp, outcome: Outcome) -> None:
    if entry.handle is not None:
        entry.handle._op_finished()
    if entry.future.done():
        _abandon(entry, outcome)
        return
    entry.future.set_result(outcome)


def _abandon(entry: _PendingOp, outcome: Outcome) -> None:
    """An outcome nobody awaits any more (cancelled): free what it carries."""
    stats["abandoned"] += 1
    if outcome.process_info is not None:
        outcome.process_info.close_fds()
    if entry.on_abandon is not None:
        try:
            entry.on_abandon(outcome)
        except Exception:
            logger.exception("cleanup of an abandoned %s failed", entry.name)


def _request_cancel(entry: _PendingOp) -> None:
    with _lock:
        if entry.key not in _registry or entry.cancel_requested:
            return  # already completed (outcome on its way) or already asked
        entry.cancel_requested = True
        entry.refs += 1
    stats["cancel_requested"] += 1

    def cancel() -> None:
        try:
            result = get_lib().HcsCancelOperation(entry.op)
            if result < 0:
                # E_NOTIMPL on older Windows builds: the call then simply runs
                # to completion and its outcome is abandoned.
                logger.debug("HcsCancelOperation(%s) -> 0x%08X", entry.name, hr.to_unsigned(result))
        except Exception:
            logger.exception("HcsCancelOperation failed")
        finally:
            _release_op(entry)

    try:
        entry.loop.run_in_executor(None, cancel)
    except RuntimeError:
        cancel()  # executor already shut down: the call does not block for long


async def submit(
    start: Callable[[Any], int],
    *,
    name: str,
    keepalive: Iterable[Any] = (),
    process_info: bool = False,
    on_abandon: Callable[[Outcome], None] | None = None,
    handle: NativeHandle | None = None,
) -> Outcome:
    """Run one asynchronous HCS call and await its completion callback.

    ``start(op)`` makes the native call with the given operation and returns
    its HRESULT.  ``keepalive`` are the cdata it uses; they stay referenced
    until the completion arrives, even if the caller is cancelled.  Raises the
    mapped :class:`~aiohcs.errors.HcsError` on failure.
    """
    _ensure_ready()
    lib = get_lib()
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Outcome] = loop.create_future()
    key = next(_keys)
    entry = _PendingOp(key, loop, future, name, list(keepalive), process_info, on_abandon, handle)
    op = lib.HcsCreateOperation(ffi.cast("void *", key), _completion_ptr)
    if op == ffi.NULL:
        raise OutOfMemory(f"{name}: HcsCreateOperation failed")
    entry.op = op
    with _lock:
        _registry[key] = entry
    if handle is not None:
        handle._op_started()

    try:
        result = int(start(op))
    except BaseException:
        # The native call raised in Python (argument conversion, missing export):
        # it never ran, so the operation is still ours.
        _abandon_unstarted(entry)
        raise
    if result < 0 and _claim_unstarted(entry):
        doc = ffi.new("PWSTR *")
        lib.HcsGetOperationResult(op, doc)  # hcsshim does this to pick up an error document
        text = take_string(doc[0])
        lib.HcsCloseOperation(op)
        raise error_from_hresult(result, text, context=name)

    try:
        outcome = await future
    except asyncio.CancelledError:
        _request_cancel(entry)
        raise
    if outcome.failed:
        raise error_from_hresult(outcome.hresult, outcome.document, context=name)
    return outcome


def _claim_unstarted(entry: _PendingOp) -> bool:
    """Take the operation back after a synchronous failure (False if a callback has it)."""
    with _lock:
        if entry.state != _PENDING:
            return False
        entry.state = _CLAIMED
        _registry.pop(entry.key, None)
    if entry.handle is not None:
        entry.handle._op_finished()
    return True


def _abandon_unstarted(entry: _PendingOp) -> None:
    if _claim_unstarted(entry):
        get_lib().HcsCloseOperation(entry.op)


async def run_blocking(
    func: Callable[[], Any], *, on_abandon: Callable[[Any], None] | None = None
) -> Any:
    """Run a synchronous HCS call in a worker thread (never on the loop).

    If the caller is cancelled the call still runs to the end (its arguments
    are owned by ``func``'s closure); ``on_abandon`` then receives its result.
    """
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, func)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        if on_abandon is not None:
            callback = on_abandon

            def done(f: asyncio.Future[Any]) -> None:
                if not f.cancelled() and f.exception() is None:
                    try:
                        callback(f.result())
                    except Exception:
                        logger.exception("cleanup after a cancelled call failed")

            fut.add_done_callback(done)
        raise


# --------------------------------------------------------------------------
# Handles
# --------------------------------------------------------------------------

_open_handles: dict[int, NativeHandle] = {}


class NativeHandle:
    """An HCS_SYSTEM or HCS_PROCESS we own, plus its event registration.

    All calls that use the handle start on the loop thread; :meth:`close`
    marks it closed first (no new call can start), waits for operations in
    flight on it, then closes it in a worker thread (HcsClose* drains running
    callbacks and may block).  Whatever is still open at interpreter exit is
    closed by an atexit hook, before finalization (lessons §2).
    """

    def __init__(self, kind: str, raw: Any) -> None:
        if kind not in ("system", "process"):
            raise ValueError(kind)
        self.kind = kind
        self._raw = raw
        self._closing = False
        self._native_closed = False
        self._sink_key: int | None = None
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._close_lock = threading.Lock()
        with _lock:
            _open_handles[id(self)] = self

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def raw(self) -> Any:
        """The native handle; raises HandleClosed once close() began."""
        if self._closing:
            raise HandleClosed(f"the {self.kind} handle is closed")
        return self._raw

    def _op_started(self) -> None:
        self._inflight += 1

    def _op_finished(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()

    def attach_events(
        self, loop: asyncio.AbstractEventLoop, deliver: Callable[[int, str | None], None]
    ) -> None:
        """Register the one native event callback for this handle."""
        _ensure_ready()
        lib = get_lib()
        key = next(_keys)
        with _lock:
            _sinks[key] = _EventSink(loop, deliver)
        name = "HcsSetComputeSystemCallback" if self.kind == "system" else "HcsSetProcessCallback"
        result = getattr(lib, name)(self._raw, 0, ffi.cast("void *", key), _event_ptr)
        if result < 0:
            with _lock:
                _sinks.pop(key, None)
            raise error_from_hresult(result, None, context=name)
        self._sink_key = key

    async def close(self) -> None:
        """Close the native handle (idempotent)."""
        self._closing = True
        if self._native_closed:
            return
        try:
            if self._inflight:
                # Shared by concurrent close() calls: _op_finished sets only this one.
                if self._idle is None:
                    self._idle = asyncio.Event()
                await self._idle.wait()
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.close_sync)
            except RuntimeError:
                # The default executor is already shut down (the loop is finishing,
                # e.g. a close left over from a cancelled one): close here.
                self.close_sync()
        except asyncio.CancelledError:
            # A cancelled close (e.g. in ``async with``'s exit) must still release
            # the native handle: finish it in the background.
            close_soon(self)
            raise

    def close_sync(self) -> None:
        """Blocking close; for worker threads and the atexit hook only."""
        self._closing = True
        with self._close_lock:
            if self._native_closed:
                return
            self._native_closed = True
        lib = get_lib()
        if self.kind == "system":
            lib.HcsCloseComputeSystem(self._raw)
        else:
            lib.HcsCloseProcess(self._raw)
        # Only now: close drained every running callback for this handle.
        with _lock:
            if self._sink_key is not None:
                _sinks.pop(self._sink_key, None)
            _open_handles.pop(id(self), None)

    def poll_exit(self) -> str | None:
        """The stored exit document if the system/process already exited, else None.

        Non-blocking (timeout 0).  Used right after registering the event
        callback: an exit that happened before the registration is reported by
        the wait functions but not to a callback registered later.
        """
        lib = get_lib()
        name = "HcsWaitForComputeSystemExit" if self.kind == "system" else "HcsWaitForProcessExit"
        if self._closing or not lib.has(name):
            return None
        doc = ffi.new("PWSTR *")
        result = getattr(lib, name)(self._raw, 0, doc)
        text = take_string(doc[0])
        if result < 0:
            return None
        return text if text is not None else ""


_closing_tasks: set[asyncio.Task[None]] = set()


def close_soon(handle: NativeHandle) -> None:
    """Close a handle in the background (after a cancelled create/open).

    Without a running loop nothing is done: the atexit hook closes it.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(handle.close())
    _closing_tasks.add(task)  # keep a reference until it finishes
    task.add_done_callback(_closing_tasks.discard)


def open_handles() -> int:
    with _lock:
        return len(_open_handles)


@atexit.register
def _close_all_at_exit() -> None:
    with _lock:
        handles = list(_open_handles.values())
    for handle in handles:
        with contextlib.suppress(Exception):  # best effort at exit
            handle.close_sync()
