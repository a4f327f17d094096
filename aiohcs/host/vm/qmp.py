"""A small asyncio QMP client (QEMU Machine Protocol over a unix socket).

One JSON object per line each way. After the greeting the client sends
`qmp_capabilities`; then every command carries an `id` and its reply is
matched by it, while `{"event": ...}` lines go to an event queue and to
waiters. EOF (QEMU exited or was killed) fails every pending command with
QmpClosed and resolves `closed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# A query-migrate or query-block reply can be long; lines are not limited by QEMU.
STREAM_LIMIT = 16 * 1024 * 1024


class QmpError(Exception):
    """QEMU answered a command with an error."""

    def __init__(self, command: str, error: dict[str, Any]) -> None:
        self.command = command
        self.error_class = str(error.get("class", "GenericError"))
        self.desc = str(error.get("desc", ""))
        super().__init__(f"{command}: {self.desc} ({self.error_class})")


class QmpClosed(Exception):
    """The QMP connection ended (QEMU is gone) before a reply came."""


Event = dict[str, Any]


class QmpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._watchers: list[tuple[Callable[[Event], bool], asyncio.Future[Event]]] = []
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.greeting: dict[str, Any] = {}
        self._reading: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, path: str, timeout: float = 10.0) -> QmpClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(path, limit=STREAM_LIMIT), timeout
        )
        client = cls(reader, writer)
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                raise QmpClosed("QMP closed before its greeting")
            client.greeting = json.loads(line)
            if "QMP" not in client.greeting:
                raise QmpClosed(f"not a QMP greeting: {line[:200]!r}")
            client._reading = asyncio.ensure_future(client._read_loop())
            await asyncio.wait_for(client.execute("qmp_capabilities"), timeout)
        except BaseException:
            await client.close()
            raise
        return client

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("QMP: unparsable line %r", line[:200])
                    continue
                if "event" in msg:
                    self._on_event(msg)
                    continue
                key = str(msg.get("id"))
                entry = self._pending.pop(key, None)
                if entry is None:
                    log.debug("QMP: reply nobody waits for: %r", msg)
                    continue
                command, fut = entry
                if fut.done():
                    continue
                if "error" in msg:
                    fut.set_exception(QmpError(command, msg["error"]))
                else:
                    fut.set_result(msg.get("return"))
        except (ConnectionError, OSError, ValueError) as e:
            log.debug("QMP read ended: %s", e)
        finally:
            self._fail_all()

    def _on_event(self, msg: Event) -> None:
        log.debug("QMP event %s %s", msg.get("event"), msg.get("data"))
        self.events.put_nowait(msg)
        still = []
        for match, fut in self._watchers:
            if fut.done():
                continue
            if match(msg):
                fut.set_result(msg)
            else:
                still.append((match, fut))
        self._watchers = still

    def _fail_all(self) -> None:
        for command, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(QmpClosed(f"{command}: QEMU closed the QMP connection"))
        self._pending.clear()
        for _, fut in self._watchers:
            if not fut.done():
                fut.set_exception(QmpClosed("QEMU closed the QMP connection"))
        self._watchers.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def watch(self, match: Callable[[Event], bool]) -> asyncio.Future[Event]:
        """A future for the next event `match` accepts (register before acting)."""
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        if self.closed.done():
            fut.set_exception(QmpClosed("QEMU closed the QMP connection"))
        else:
            self._watchers.append((match, fut))
        return fut

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        if self.closed.done():
            raise QmpClosed(f"{command}: QEMU closed the QMP connection")
        key = f"c{next(self._ids)}"
        msg: dict[str, Any] = {"execute": command, "id": key}
        if arguments:
            msg["arguments"] = arguments
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = (command, fut)
        try:
            self._writer.write(json.dumps(msg).encode() + b"\n")
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            self._pending.pop(key, None)
            raise QmpClosed(f"{command}: {e}") from e
        try:
            return await fut
        finally:
            self._pending.pop(key, None)

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._fail_all()
