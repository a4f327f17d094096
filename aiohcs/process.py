"""``Process``: one handle to a process inside a compute system, with its stdio."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal as _signal
from typing import Any

import anyio

from . import _bridge
from ._documents import Document, parse_model, required_document
from ._ffi import GENERIC_ALL, ffi, get_lib
from ._handle import HandleOwner, attach_events, catch_up
from ._streams import FdReceiveStream, FdSendStream
from .errors import (
    HandleClosed,
    InvalidState,
    NotFound,
    ProcessAlreadyStopped,
    ServiceDisconnected,
    SystemAlreadyStopped,
    SystemNotFound,
    error_from_hresult,
)
from .events import EventHub, EventType
from .schema import ProcessParameters, ProcessStatus

# What HCS says when a process call finds the process gone (API.md §6.4).
_GONE = (ProcessAlreadyStopped, NotFound, InvalidState, SystemAlreadyStopped, SystemNotFound)


class Process(HandleOwner):
    """A process in a compute system.

    ``stdin`` / ``stdout`` / ``stderr`` are anyio byte streams over the pipe
    ends HCS handed over at creation, or None when not requested (and always
    None for :meth:`System.open_process`: stdio is handed out once).
    """

    def __init__(
        self,
        handle: _bridge.NativeHandle,
        hub: EventHub,
        pid: int,
        stdin: FdSendStream | None = None,
        stdout: FdReceiveStream | None = None,
        stderr: FdReceiveStream | None = None,
    ) -> None:
        self._handle = handle
        self._hub = hub
        self._pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    @property
    def pid(self) -> int:
        return self._pid

    def __repr__(self) -> str:
        return f"<aiohcs.Process pid={self._pid} {'closed' if self.closed else 'open'}>"

    # -- control -------------------------------------------------------------
    async def signal(self, sig: int | str) -> None:
        """Send a signal: a POSIX number (Linux guests) or a console event name
        such as ``"CtrlC"`` (Windows guests)."""
        value: int | str = int(sig) if isinstance(sig, _signal.Signals) else sig
        await self._call("HcsSignalProcess", {"Signal": value})

    async def terminate(self) -> None:
        """Kill the process (HcsTerminateProcess)."""
        await self._call("HcsTerminateProcess")

    async def resize(self, height: int, width: int) -> None:
        """Resize the console of a process created with ``EmulateConsole``."""
        await self._call(
            "HcsModifyProcess",
            {"Operation": "ConsoleSize", "ConsoleSize": {"Height": height, "Width": width}},
        )

    async def close_stdin(self) -> None:
        """Signal EOF on the process's stdin.

        Closes our end of the pipe *and* always sends HcsModifyProcess
        CloseHandle/StdIn (lesson 13: a close that is only local is lost when
        the stdin relay is not ours).  A process that already exited is fine.
        """
        if self.stdin is not None:
            await self.stdin.aclose()
        with contextlib.suppress(*_GONE):
            await self._call(
                "HcsModifyProcess", {"Operation": "CloseHandle", "CloseHandle": {"Handle": "StdIn"}}
            )

    async def properties(self) -> ProcessStatus:
        """ProcessStatus from HcsGetProcessProperties."""
        outcome = await self._call("HcsGetProcessProperties")
        return parse_model(ProcessStatus, outcome.document)

    # -- exit ----------------------------------------------------------------
    async def wait_status(self) -> ProcessStatus:
        """Wait for exit; the full ProcessStatus from the ProcessExited event."""
        event = await self._hub.wait_terminal()
        if event is None:
            raise HandleClosed("the process handle was closed before the process exited")
        if event.type == EventType.ServiceDisconnect:
            raise ServiceDisconnected(f"lost the compute service while waiting for pid {self._pid}")
        return ProcessStatus.model_validate(event.data or {})

    async def wait(self) -> int:
        """Wait for exit and return the exit code (-1 when HCS could not tell it)."""
        status = await self.wait_status()
        if status.last_wait_result or status.exit_code is None:
            return -1
        return status.exit_code

    @property
    def returncode(self) -> int | None:
        """The exit code once the exit event arrived, else None."""
        event = self._hub.terminal
        if event is None or event.type != EventType.ProcessExited:
            return None
        status = ProcessStatus.model_validate(event.data or {})
        if status.last_wait_result or status.exit_code is None:
            return -1
        return status.exit_code

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes]:
        """Send ``input``, close stdin, read stdout and stderr to EOF, wait for exit.

        Returns ``(stdout, stderr)`` (empty for streams that were not requested).
        """
        if input and self.stdin is None:
            raise ValueError("the process was created without CreateStdInPipe")

        async def feed() -> None:
            if self.stdin is None:
                return
            if input:
                # The process may stop reading early; what it produced still counts.
                with contextlib.suppress(anyio.BrokenResourceError):
                    await self.stdin.send(input)
            await self.close_stdin()

        async def drain(stream: FdReceiveStream | None) -> bytes:
            return b"" if stream is None else await stream.read_all()

        _, out, err = await asyncio.gather(feed(), drain(self.stdout), drain(self.stderr))
        await self.wait()
        return out, err

    # -- closing -------------------------------------------------------------
    async def close(self) -> None:
        """Close the process handle and our stdio ends (does not kill the process)."""
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close_now()
        await super().close()


def _requested(params: Document) -> tuple[bool, bool, bool]:
    """Which stdio pipes the ProcessParameters ask for."""
    if isinstance(params, ProcessParameters):
        return (
            bool(params.create_std_in_pipe),
            bool(params.create_std_out_pipe),
            bool(params.create_std_err_pipe),
        )
    data: Any = params
    if isinstance(params, str | bytes):
        try:
            data = json.loads(params)
        except ValueError:
            return (True, True, True)  # the service will reject it; accept any fds
    if isinstance(data, dict):
        return (
            bool(data.get("CreateStdInPipe")),
            bool(data.get("CreateStdOutPipe")),
            bool(data.get("CreateStdErrPipe")),
        )
    if hasattr(data, "model_dump"):
        dumped = data.model_dump(by_alias=True)
        return (
            bool(dumped.get("CreateStdInPipe")),
            bool(dumped.get("CreateStdOutPipe")),
            bool(dumped.get("CreateStdErrPipe")),
        )
    return (True, True, True)


async def create_process(system: _bridge.NativeHandle, params: Document) -> Process:
    lib = get_lib()
    raw_system = system.raw
    text = required_document(params, "the process parameters")
    out = ffi.new("HCS_PROCESS *")
    hub = EventHub()
    created: list[_bridge.NativeHandle] = []

    def start(op: Any) -> int:
        result = int(lib.HcsCreateProcess(raw_system, text, op, ffi.NULL, out))
        if result >= 0 and out[0] != ffi.NULL:
            handle = _bridge.NativeHandle("process", out[0])
            created.append(handle)
            # Before the completion can be delivered: no exit event is missed.
            attach_events(handle, hub)
        return result

    def abandon(_: _bridge.Outcome) -> None:
        # The bridge closed the stdio fds; the handle is ours to close.
        for handle in created:
            _bridge.close_soon(handle)

    try:
        outcome = await _bridge.submit(
            start,
            name="HcsCreateProcess",
            keepalive=(text, out),
            process_info=True,
            on_abandon=abandon,
            handle=system,
        )
    except asyncio.CancelledError:
        raise
    except BaseException:
        for handle in created:
            await handle.close()
        raise
    handle = created[0]
    info = outcome.process_info
    if info is None:  # pragma: no cover - success always carries process info
        await handle.close()
        raise error_from_hresult(-1, None, context="HcsCreateProcess returned no process info")
    want_in, want_out, want_err = _requested(params)
    stdin = _wrap(info.stdin, want_in, FdSendStream)
    stdout = _wrap(info.stdout, want_out, FdReceiveStream)
    stderr = _wrap(info.stderr, want_err, FdReceiveStream)
    catch_up(handle, hub, EventType.ProcessExited)
    return Process(handle, hub, info.pid, stdin, stdout, stderr)


def _wrap(fd: int | None, wanted: bool, cls: Any) -> Any:
    if fd is None:
        return None
    if not wanted:
        os.close(fd)  # not asked for: do not leak it
        return None
    return cls(fd)


async def open_process(system: _bridge.NativeHandle, pid: int) -> Process:
    if not isinstance(pid, int) or not 0 <= pid <= 0xFFFFFFFF:
        raise ValueError(f"pid must be an integer in 0..4294967295, not {pid!r}")
    lib = get_lib()
    raw_system = system.raw

    def open_blocking() -> tuple[int, _bridge.NativeHandle | None]:
        out = ffi.new("HCS_PROCESS *")
        result = int(lib.HcsOpenProcess(raw_system, pid, GENERIC_ALL, out))
        return result, (_bridge.NativeHandle("process", out[0]) if result >= 0 else None)

    def abandon(value: tuple[int, _bridge.NativeHandle | None]) -> None:
        if value[1] is not None:
            _bridge.close_soon(value[1])

    result, handle = await _bridge.run_blocking(open_blocking, on_abandon=abandon)
    if result < 0 or handle is None:
        raise error_from_hresult(result, None, context=f"HcsOpenProcess({pid})")
    hub = EventHub()
    try:
        attach_events(handle, hub)
        catch_up(handle, hub, EventType.ProcessExited)
    except BaseException:
        await handle.close()
        raise
    return Process(handle, hub, pid)


__all__ = ["Process", "create_process", "open_process"]
