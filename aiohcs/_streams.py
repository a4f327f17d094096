"""anyio byte streams over the process stdio file descriptors.

The fds come from HCS_PROCESS_INFORMATION (on Linux the library hands over pipe
ends as HANDLE values).  They are switched to non-blocking mode and waited on
with the event loop's readiness machinery (``anyio.wait_readable`` /
``wait_writable``, i.e. ``loop.add_reader`` on asyncio): no thread per read.

Reading drains to EOF; nothing is closed on process exit (lesson 14: closing
read sides at exit loses buffered output).
"""

from __future__ import annotations

import contextlib
import errno
import os

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

DEFAULT_READ_SIZE = 65536


class _FdOwner:
    def __init__(self, fd: int) -> None:
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        os.set_blocking(fd, False)
        self._fd: int | None = fd

    @property
    def fd(self) -> int:
        """The underlying descriptor; raises ``anyio.ClosedResourceError`` once closed."""
        if self._fd is None:
            raise anyio.ClosedResourceError
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close_now(self) -> None:
        """Close synchronously (safe from any context; wakes waiters on this fd)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Wake a task blocked in wait_readable/wait_writable before the fd
        # number can be reused.  Needs a running loop; without one nobody waits.
        with contextlib.suppress(RuntimeError):
            anyio.notify_closing(fd)
        os.close(fd)


class FdReceiveStream(_FdOwner, ByteReceiveStream):
    """Read end of a pipe or pty master (process stdout / stderr)."""

    async def receive(self, max_bytes: int = DEFAULT_READ_SIZE) -> bytes:
        while True:
            fd = self.fd
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                try:
                    await anyio.wait_readable(fd)
                except anyio.ClosedResourceError:
                    raise
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    # A pty master (EmulateConsole) reads EIO once the console side
                    # is closed, after the buffered output: that is its EOF.
                    raise anyio.EndOfStream from None
                raise anyio.BrokenResourceError(str(exc)) from exc
            if not data:
                raise anyio.EndOfStream
            return data

    async def read_all(self) -> bytes:
        """Everything until EOF."""
        chunks: list[bytes] = []
        while True:
            try:
                chunks.append(await self.receive())
            except anyio.EndOfStream:
                return b"".join(chunks)

    async def aclose(self) -> None:
        self.close_now()


class FdSendStream(_FdOwner, ByteSendStream):
    """Write end of a pipe (process stdin)."""

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            fd = self.fd
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                await anyio.wait_writable(fd)
                continue
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                    raise anyio.BrokenResourceError("the process closed its stdin") from exc
                raise anyio.BrokenResourceError(str(exc)) from exc
            view = view[written:]

    async def aclose(self) -> None:
        self.close_now()
