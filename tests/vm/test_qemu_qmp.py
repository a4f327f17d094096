"""QmpClient against a scripted fake QEMU (no VM), and the accelerator setting."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from aiohcs.host.reaper import Reaper
from aiohcs.host.vm import accel
from aiohcs.host.vm.qmp import QmpClient, QmpClosed, QmpError


async def fake_qemu(path: Path, script: list[str]) -> asyncio.Server:
    """A QMP server: greeting, then per command the next scripted action."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
        for action in script:
            line = await reader.readline()
            if not line:
                return
            msg = json.loads(line)
            if action == "eof":
                break
            if action == "error":
                reply = {"error": {"class": "GenericError", "desc": "nope"}, "id": msg["id"]}
                writer.write(json.dumps(reply).encode() + b"\n")
            elif action == "event-then-ok":
                writer.write(b'{"event": "STOP", "data": {}}\n')
                writer.write(json.dumps({"return": {"ok": 1}, "id": msg["id"]}).encode() + b"\n")
            else:
                writer.write(json.dumps({"return": {}, "id": msg["id"]}).encode() + b"\n")
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, str(path))


async def test_execute_events_errors_and_eof(tmp_path: Path) -> None:
    sock = tmp_path / "qmp.sock"
    server = await fake_qemu(sock, ["ok", "event-then-ok", "error", "eof"])
    async with server:
        q = await QmpClient.connect(str(sock))
        stopped = q.watch(lambda e: e.get("event") == "STOP")
        assert await q.execute("stop") == {"ok": 1}
        assert (await stopped)["event"] == "STOP"
        assert (await q.events.get())["event"] == "STOP"
        with pytest.raises(QmpError) as e:
            await q.execute("cont")
        assert e.value.desc == "nope" and "cont" in str(e.value)
        with pytest.raises(QmpClosed):
            await q.execute("query-status")
        await asyncio.wait_for(q.closed, 5)
        with pytest.raises(QmpClosed):
            await q.execute("query-status")
        await q.close()


async def test_forced_accelerator_needs_no_probe() -> None:
    reaper = Reaper()
    assert await accel.choose("tcg", reaper) == "tcg"
    assert await accel.choose("kvm", reaper) == "kvm"
