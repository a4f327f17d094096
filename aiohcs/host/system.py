"""Compute systems and their processes: the state machine (API.md §6).

Created -> Running <-> Paused -> Stopped. The exit of a system or process is
reported to each of its handles exactly once (see Handle).

Ordering (ComputeSystem.lock, FIFO): operations that *change* the system run
one at a time, in arrival order: Start, Shutdown (up to the stop request; the
grace wait is outside the lock), Pause, Resume, Save, Modify, CreateProcess.

Two kinds of operation bypass the lock, because waiting behind a slow or hung
operation is exactly what they must not do (notes/lessons.md §3 rows 1-2: a
timeout detects a hang but does not clear it; cancel + terminate must):

- Terminate (and the kill that ends a Shutdown's grace period) never queues.
  A Start in flight is preempted: its backend start is cancelled (QEMU is
  killed, the runtime container deleted), the Start request fails with
  HCS_E_TERMINATED_DURING_START and the system stops with ForcedExit. A
  Running/Paused system is killed even while another operation (a Shutdown the
  guest ignores, a hot-add) holds the lock; that operation then fails or
  finishes against a dead system.
- GetProperties only reads: it answers at once with the current State. While
  a Start is in flight the State is still "Created" (it becomes "Running" when
  the start completed), as HCS answers properties during a start.

CANCEL of a pending Start (protocol op 25) cancels the backend start the same
way: the request fails with E_ABORT, nothing is left running and the system is
"Created" again (it may be started again, or terminated/closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohcs import hresults
from aiohcs._wire import EventType
from aiohcs.host.backend import LaunchedProcess, SystemBackend
from aiohcs.host.container.backend import set_console_size
from aiohcs.host.documents import (
    ComputeSystem as ComputeSystemDocument,
)
from aiohcs.host.documents import (
    ProcessModifyRequest,
    ProcessParameters,
    ShutdownOptions,
    SignalProcessOptions,
)
from aiohcs.host.errors import HcsFault
from aiohcs.host.reaper import ExitStatus, close_quietly

if TYPE_CHECKING:
    from aiohcs.host.connection import Connection

log = logging.getLogger(__name__)

PROCESS_DRAIN_TIMEOUT = 5.0


# ---------------------------------------------------------------- requests


class RequestState:
    """Per-request flag: once an operation starts changing things it can no
    longer be cancelled; CANCEL then lets it finish and report its result."""

    def __init__(self) -> None:
        self.cancellable = True


current_request: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
    "current_request", default=None
)


def begin_critical() -> None:
    req = current_request.get()
    if req is not None:
        req.cancellable = False


# ---------------------------------------------------------------- handles


class Handle:
    """One client handle on a system or process.

    The exit event goes to each handle once, and never before the reply that
    created the handle: until `replied()` it is parked in `_pending`.
    """

    def __init__(self, conn: Connection, hid: int, event_type: EventType) -> None:
        self.conn = conn
        self.hid = hid
        self.event_type = event_type
        self._replied = False
        self._pending: bytes | None = None
        self._exit_sent = False
        self.closed = False

    def deliver_exit(self, payload: bytes) -> None:
        if self.closed or self._exit_sent:
            return
        if not self._replied:
            self._pending = payload
            return
        self._exit_sent = True
        self.conn.send_event(self.event_type, self.hid, payload)

    def replied(self) -> None:
        self._replied = True
        if self._pending is not None:
            payload, self._pending = self._pending, None
            self.deliver_exit(payload)


class SystemHandle(Handle):
    def __init__(self, conn: Connection, hid: int, system: ComputeSystem) -> None:
        super().__init__(conn, hid, EventType.SYSTEM_EXITED)
        self.system = system


class ProcessHandle(Handle):
    def __init__(self, conn: Connection, hid: int, process: ProcessRecord) -> None:
        super().__init__(conn, hid, EventType.PROCESS_EXITED)
        self.process = process


# ---------------------------------------------------------------- processes

# Windows console control events accepted by SignalProcess, as Linux signals.
WINDOWS_SIGNALS = {
    "CtrlC": signal.SIGINT,
    "CtrlBreak": signal.SIGQUIT,
    "CtrlClose": signal.SIGTERM,
    "CtrlLogOff": signal.SIGTERM,
    "CtrlShutdown": signal.SIGTERM,
}


@dataclass(slots=True)
class ProcessRecord:
    system: ComputeSystem
    launched: LaunchedProcess
    handles: set[ProcessHandle]
    status: ExitStatus | None = None
    done: asyncio.Event | None = None

    @property
    def pid(self) -> int:
        return self.launched.pid

    def status_document(self) -> dict[str, Any]:
        return {
            "ProcessId": self.pid,
            "Exited": self.status is not None,
            "ExitCode": self.status.code if self.status is not None else 0,
            "LastWaitResult": 0,
        }

    def add_handle(self, handle: ProcessHandle) -> None:
        self.handles.add(handle)
        if self.status is not None:
            handle.deliver_exit(json.dumps(self.status_document()).encode())

    def remove_handle(self, handle: ProcessHandle) -> None:
        handle.closed = True
        self.handles.discard(handle)
        self.system.forget_process_if_unused(self)

    async def watch(self) -> None:
        self.done = asyncio.Event()
        try:
            self.status = await self.launched.exited
        finally:
            close_quietly(self.launched.console)
            self.launched.console = None
            payload = json.dumps(self.status_document()).encode()
            for h in list(self.handles):
                h.deliver_exit(payload)
            self.done.set()
            self.system.forget_process_if_unused(self)

    def _require_running(self) -> None:
        if self.status is not None:
            raise HcsFault(
                hresults.HCS_E_PROCESS_ALREADY_STOPPED, f"process {self.pid} has already exited"
            )

    def send_signal(self, sig: int) -> None:
        self._require_running()
        remote = self.launched.remote
        if remote is not None:
            # Inside a VM: the guest agent delivers it (a failure is logged;
            # the process's exit is what the client waits for).
            self.system.run_remote(remote.signal(sig), f"signal {sig} to process {self.pid}")
            return
        # Safe against pid reuse: the process is our child (subreaper) and its
        # exit future is unresolved, so it has not been reaped yet.
        try:
            os.kill(self.launched.host_pid, sig)
        except ProcessLookupError:
            raise HcsFault(
                hresults.HCS_E_PROCESS_ALREADY_STOPPED, f"process {self.pid} has already exited"
            ) from None

    def signal(self, options: SignalProcessOptions) -> None:
        value: int | str | None = options.signal
        assert value is not None  # parse_document requires it
        if isinstance(value, str):
            value = str(value)  # the name, not the ProcessSignal member
            if value in WINDOWS_SIGNALS:
                sig = int(WINDOWS_SIGNALS[value])
            else:
                try:
                    sig = int(signal.Signals["SIG" + value.upper().removeprefix("SIG")])
                except KeyError:
                    raise HcsFault(
                        hresults.E_INVALIDARG,
                        f"Signal: unknown signal {value!r} (an int, a SIG name, or one of "
                        f"{', '.join(WINDOWS_SIGNALS)})",
                    ) from None
        else:
            sig = value
        if not 0 < sig < signal.NSIG:
            raise HcsFault(hresults.E_INVALIDARG, f"Signal: {sig} is not a valid signal number")
        self.send_signal(sig)

    def modify(self, request: ProcessModifyRequest) -> None:
        if request.operation == "ConsoleSize":
            if request.console_size is None:
                raise HcsFault(hresults.HCS_E_INVALID_JSON, "ConsoleSize: required by Operation")
            self._require_running()
            remote = self.launched.remote
            if remote is not None:
                size = request.console_size
                self.system.run_remote(
                    remote.resize(size.height or 0, size.width or 0),
                    f"resize of process {self.pid}",
                )
                return
            if self.launched.console is None:
                raise HcsFault(
                    hresults.E_INVALIDARG,
                    f"ConsoleSize: process {self.pid} has no console (EmulateConsole was false)",
                )
            set_console_size(
                self.launched.console,
                request.console_size.height or 0,
                request.console_size.width or 0,
            )
        elif request.operation == "CloseHandle":
            if request.close_handle is None:
                raise HcsFault(hresults.HCS_E_INVALID_JSON, "CloseHandle: required by Operation")
            which = str(request.close_handle.handle)
            if which not in ("StdIn", "StdOut", "StdErr", "All"):
                raise HcsFault(
                    hresults.HCS_E_INVALID_JSON,
                    f"CloseHandle.Handle: {which!r} is not StdIn, StdOut, StdErr or All",
                )
            # Pipes: the client owns its ends and closes them itself; nothing
            # to do here. A pty has one end for both directions, so EOF on
            # stdin is the terminal's EOF character.
            remote = self.launched.remote
            if which in ("StdIn", "All") and remote is not None:
                self.system.run_remote(remote.close_stdin(), f"stdin EOF of process {self.pid}")
            elif which in ("StdIn", "All") and self.launched.console is not None:
                with contextlib.suppress(OSError):
                    os.write(self.launched.console, b"\x04")
        else:
            raise HcsFault(
                hresults.HCS_E_INVALID_JSON,
                f"Operation: {str(request.operation)!r} is not ConsoleSize or CloseHandle",
            )


# ---------------------------------------------------------------- systems


class ComputeSystem:
    def __init__(
        self,
        system_id: str,
        document: ComputeSystemDocument,
        backend: SystemBackend,
        on_unused: Callable[[ComputeSystem], None],
    ) -> None:
        self.id = system_id
        self.document = document
        self.backend = backend
        self.runtime_id = str(uuid.uuid4())
        self.state = "Created"
        self.exit_type: str | None = None
        self.exit_status = 0
        self.stop_reason: str | None = None
        self.start_time: float | None = None
        # FIFO: state-changing operations apply in arrival order (see the module
        # docstring for what bypasses it).
        self.lock = asyncio.Lock()
        # The backend start in flight (under the lock); Terminate cancels it.
        self._start_task: asyncio.Task[None] | None = None
        self._start_preempted = False
        self.handles: set[SystemHandle] = set()
        self.processes: dict[int, ProcessRecord] = {}
        self.stopped = asyncio.Event()
        self._on_unused = on_unused
        self._tasks: set[asyncio.Task[None]] = set()
        # Re-adopted after a service restart: the init is not our child, so
        # its exit status is unknown (docs/host.md, "Restart survival").
        self.adopted = False
        # Called after every state change (containers: writes state.json).
        self.persist: Callable[[ComputeSystem], None] | None = None
        if hasattr(backend, "notify"):
            backend.notify = self._backend_event

    def changed(self) -> None:
        """Record the current state (state.json); a failure is logged, not raised."""
        if self.persist is None or self.state == "Stopped":
            return
        try:
            self.persist(self)
        except OSError as e:
            log.warning("system %s: could not save its state: %s", self.id, e)

    def adopt(
        self, exited: asyncio.Future[ExitStatus], state: str, start_time: float | None
    ) -> None:
        """Take over a system a previous service run started (Running or Paused)."""
        self.adopted = True
        self.state = state
        self.start_time = start_time
        self._spawn(self._monitor(exited))
        self.changed()

    def _backend_event(self, event_type: EventType, payload: bytes) -> None:
        """An event the backend raises (GuestConnectionClosed) goes to every handle."""
        for h in list(self.handles):
            if not h.closed:
                h.conn.send_event(event_type, h.hid, payload)

    def run_remote(self, coro: Any, what: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as e:
                log.warning("system %s: %s failed: %s", self.id, what, e)

        self._spawn(guarded())

    # --- handles

    def add_handle(self, handle: SystemHandle) -> None:
        self.handles.add(handle)
        if self.state == "Stopped":
            handle.deliver_exit(self.exit_document())

    def remove_handle(self, handle: SystemHandle) -> None:
        handle.closed = True
        self.handles.discard(handle)
        if self.handles:
            return
        if self.state == "Stopped":
            if self.stopped.is_set():
                self._on_unused(self)
        elif self.document.should_terminate_on_last_handle_closed:
            log.info("system %s: last handle closed, terminating", self.id)
            self._spawn(self._terminate_quietly())

    def terminate_unhandled(self) -> None:
        """Terminate in the background (a re-adopted system whose handles are gone)."""
        self._spawn(self._terminate_quietly())

    async def _terminate_quietly(self) -> None:
        with contextlib.suppress(HcsFault):
            await self.terminate()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- documents

    def exit_document(self) -> bytes:
        return json.dumps(
            {"Status": hresults.to_signed(self.exit_status), "ExitType": self.exit_type or "None"}
        ).encode()

    def basic_properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {
            "Id": self.id,
            "SystemType": self.backend.system_type,
            "RuntimeOsType": "Linux",
            "Name": self.id,
            "Owner": self.document.owner or "",
            "RuntimeId": self.runtime_id,
            "State": self.state,
            "Stopped": self.state == "Stopped",
        }
        if self.state == "Stopped":
            props["ExitType"] = self.exit_type or "None"
        return props

    # --- state machine

    def _invalid(self, what: str) -> HcsFault:
        if self.state == "Stopped":
            return HcsFault(
                hresults.HCS_E_SYSTEM_ALREADY_STOPPED,
                f"{what}: compute system {self.id!r} has already stopped",
            )
        return HcsFault(
            hresults.HCS_E_INVALID_STATE,
            f"{what}: compute system {self.id!r} is {self.state}",
        )

    async def start(self) -> None:
        async with self.lock:
            if self.state != "Created":
                if self.state == "Stopped":
                    raise HcsFault(
                        hresults.HCS_E_INVALID_STATE,
                        f"Start: compute system {self.id!r} has stopped; systems cannot be "
                        "restarted",
                    )
                raise HcsFault(
                    hresults.HCS_E_INVALID_STATE,
                    f"Start: compute system {self.id!r} is already {self.state}",
                )
            if self.stop_reason is not None:
                raise HcsFault(
                    hresults.HCS_E_INVALID_STATE,
                    f"Start: compute system {self.id!r} is being stopped",
                )
            # Not begin_critical(): CANCEL and Terminate may interrupt a start
            # (the backend undoes what it did when cancelled).
            self._start_preempted = False
            task = asyncio.ensure_future(self._start_backend())
            self._start_task = task
            try:
                await task
            except asyncio.CancelledError:
                if task.done() and not task.cancelled() and task.exception() is None:
                    # The cancel came after the system had started: it stands.
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
                    return
                if self._start_preempted:
                    raise self._terminated_during_start() from None
                raise
            except Exception as e:
                if self._start_preempted:
                    raise self._terminated_during_start() from e
                raise
            finally:
                self._start_task = None

    def _terminated_during_start(self) -> HcsFault:
        return HcsFault(
            hresults.HCS_E_TERMINATED_DURING_START,
            f"Start: compute system {self.id!r} was terminated while starting",
        )

    async def _start_backend(self) -> None:
        """Start and the transition to Running, as one task Terminate can cancel."""
        exited = await self.backend.start()
        self.state = "Running"
        self.start_time = time.time()
        self._spawn(self._monitor(exited))
        self.changed()

    async def _monitor(self, exited: asyncio.Future[ExitStatus]) -> None:
        status = await exited
        if self.stop_reason is not None:
            self.exit_type = self.stop_reason
            self.exit_status = 0
        elif self.adopted:
            # Not our child: the exit status of its init cannot be known.
            self.exit_type = "Unknown"
            self.exit_status = hresults.HCS_E_UNEXPECTED_EXIT
        elif status.code == 0:
            self.exit_type = "GracefulExit"
            self.exit_status = 0
        else:
            self.exit_type = "UnexpectedExit"
            self.exit_status = hresults.HCS_E_UNEXPECTED_EXIT
        log.info("system %s exited (init %s): %s", self.id, status, self.exit_type)
        self.state = "Stopped"
        await self._finish()

    async def _finish(self) -> None:
        log.debug("system %s: finishing", self.id)
        # Init is gone, so is every process: report them first.
        waiting = [p.done.wait() for p in self.processes.values() if p.done is not None]
        if waiting:
            try:
                await asyncio.wait_for(asyncio.gather(*waiting), PROCESS_DRAIN_TIMEOUT)
            except TimeoutError:
                log.warning("system %s: some process exits were not reported in time", self.id)
        payload = self.exit_document()
        for h in list(self.handles):
            h.deliver_exit(payload)
        try:
            await self.backend.cleanup()
        except Exception:
            log.exception("system %s: cleanup failed", self.id)
        log.debug("system %s: cleaned up", self.id)
        self.stopped.set()
        if not self.handles:
            self._on_unused(self)

    async def _stop_unstarted(self, exit_type: str) -> None:
        self.state = "Stopped"
        self.exit_type = exit_type
        self.exit_status = 0
        await self._finish()

    async def shutdown(self, options: ShutdownOptions, default_grace: float) -> None:
        grace = options.grace_period_seconds
        if grace is None:
            grace = default_grace
        async with self.lock:
            if self.state == "Stopped":
                raise self._invalid("Shutdown")
            begin_critical()
            if self.stop_reason is None:
                self.stop_reason = "GracefulExit"
            if self.state == "Created":
                await self._stop_unstarted(self.stop_reason)
                return
            if self.state == "Paused":
                # A frozen init cannot handle SIGTERM.
                await self.backend.resume()
                self.state = "Running"
                self.changed()
            await self.backend.stop("KILL" if options.force else "TERM")
        try:
            await asyncio.wait_for(self.stopped.wait(), grace)
        except TimeoutError:
            log.info("system %s: not down after %.1fs grace, killing", self.id, grace)
            # Like Terminate: not behind the lock.
            if not self.stopped.is_set():
                await self.backend.stop("KILL")
            await self.stopped.wait()

    async def terminate(self) -> None:
        """Kill the system now; never queued behind other operations (see the
        module docstring)."""
        if self.state == "Stopped" or self.stop_reason == "ForcedExit":
            if self.state != "Stopped":
                # A Terminate is already under way: wait for it too.
                await self.stopped.wait()
                return
            raise self._invalid("Terminate")
        begin_critical()
        self.stop_reason = "ForcedExit"
        start = self._start_task
        if start is not None and not start.done():
            log.info("system %s: terminate preempts the start in flight", self.id)
            self._start_preempted = True
            start.cancel()
            # The backend undoes the start (kills QEMU / deletes the runtime
            # container) before the task ends.
            with contextlib.suppress(BaseException):
                await asyncio.shield(start)
        if self.state == "Created":
            await self._stop_unstarted("ForcedExit")
            return
        if self.state != "Stopped":
            await self.backend.stop("KILL")
        await self.stopped.wait()

    async def pause(self) -> None:
        async with self.lock:
            if self.state != "Running":
                raise self._invalid("Pause")
            begin_critical()
            await self.backend.pause()
            self.state = "Paused"
            self.changed()

    async def resume(self) -> None:
        async with self.lock:
            if self.state != "Paused":
                raise self._invalid("Resume")
            begin_critical()
            await self.backend.resume()
            self.state = "Running"
            self.changed()

    def _optional(self, name: str, what: str) -> Any:
        """A backend method only some backends have (VM: save, modify, ...)."""
        fn = getattr(self.backend, name, None)
        if fn is None:
            raise HcsFault(
                hresults.E_NOT_SUPPORTED,
                f"{what} is not supported for {self.backend.system_type} systems",
            )
        return fn

    async def save(self, options: dict[str, Any]) -> None:
        save = self._optional("save", "SaveComputeSystem")
        async with self.lock:
            if self.state != "Paused":
                if self.state == "Stopped":
                    raise self._invalid("Save")
                raise HcsFault(
                    hresults.HCS_E_INVALID_STATE,
                    f"Save: compute system {self.id!r} is {self.state}; pause it first",
                )
            begin_critical()
            # Saved to a file, the system stops (restore creates a new one);
            # set before QEMU exits so the exit is reported as graceful.
            self.stop_reason = "GracefulExit"
            try:
                await save(options)
            except BaseException:
                if self.stop_reason == "GracefulExit":  # not a Terminate meanwhile
                    self.stop_reason = None
                raise
        await self.stopped.wait()

    async def modify(self, request: dict[str, Any]) -> None:
        modify = self._optional("modify", "ModifyComputeSystem")
        async with self.lock:
            if self.state not in ("Running", "Paused"):
                raise self._invalid("Modify")
            begin_critical()
            await modify(request)

    async def properties(self, property_types: list[str]) -> dict[str, Any]:
        # Read-only: not behind the lock (a Start may take a minute); while a
        # start is in flight the state is "Created".
        props = self.basic_properties()
        for ptype in property_types:
            if ptype in ("Memory", "GuestConnection"):
                self._require_not_stopped(ptype)
                if ptype == "Memory":
                    fn = self._optional("memory_properties", "PropertyTypes: 'Memory'")
                    props["Memory"] = await fn()
                else:
                    fn = self._optional(
                        "guest_connection_properties", "PropertyTypes: 'GuestConnection'"
                    )
                    if self.state == "Created":
                        raise HcsFault(
                            hresults.HCS_E_INVALID_STATE,
                            f"PropertyTypes: GuestConnection: compute system {self.id!r} has "
                            "not started (the guest connection is up once Start completed)",
                        )
                    props["GuestConnectionInfo"] = await fn()
            elif ptype == "ProcessList":
                self._require_not_stopped(ptype)
                if self.state == "Created":  # also while starting: nothing to list yet
                    props["ProcessList"] = []
                else:
                    props["ProcessList"] = await self.backend.process_list()
            elif ptype == "Statistics":
                self._require_not_stopped(ptype)
                if self.start_time is None:
                    props["Statistics"] = {"Uptime100ns": 0}
                else:
                    props["Statistics"] = await self.backend.statistics(self.start_time)
            elif ptype == "TerminateOnLastHandleClosed":
                props["TerminateOnLastHandleClosed"] = bool(
                    self.document.should_terminate_on_last_handle_closed
                )
        return props

    def _require_not_stopped(self, what: str) -> None:
        if self.state == "Stopped":
            raise HcsFault(
                hresults.HCS_E_SYSTEM_ALREADY_STOPPED,
                f"PropertyTypes: {what} is not available: compute system {self.id!r} has stopped",
            )

    # --- processes

    async def create_process(self, params: ProcessParameters) -> ProcessRecord:
        async with self.lock:
            if self.state != "Running":
                raise HcsFault(
                    hresults.HCS_E_INVALID_STATE,
                    f"CreateProcess: compute system {self.id!r} is not running "
                    f"(state {self.state})",
                )
            begin_critical()
            launched = await self.backend.create_process(params)
            record = ProcessRecord(self, launched, set())
            self.processes[launched.pid] = record
            self._spawn(record.watch())
            return record

    def find_process(self, pid: int) -> ProcessRecord:
        record = self.processes.get(pid)
        if record is None:
            raise HcsFault(
                hresults.E_NOT_FOUND,
                f"no process {pid} started through the service in compute system {self.id!r}",
            )
        return record

    def forget_process_if_unused(self, record: ProcessRecord) -> None:
        if (
            record.status is not None
            and not record.handles
            and self.state != "Stopped"
            and self.processes.get(record.pid) is record
        ):
            del self.processes[record.pid]
