"""The guest agent in a real utility VM (QEMU, TCG), without the host service.

One VM per module; each test connects its own AgentClient to the chardev
socket and closes it at the end, so every test after the first also checks
that the agent survives a host disconnect and answers a reconnect.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from aiohcs.host.vm.agent import (
    CREATE,
    AgentClient,
    AgentError,
    FrameParser,
    encode_record,
    pack_frame,
)
from aiohcs.uvm.raw import BootedUvm

pytestmark = pytest.mark.timeout(120)


async def connect(vm: BootedUvm) -> AgentClient:
    return await AgentClient.connect(vm.agent_socket, timeout=60)


async def read_all(fd: int, timeout: float = 20) -> bytes:
    loop = asyncio.get_running_loop()
    out = b""
    deadline = loop.time() + timeout
    os.set_blocking(fd, False)
    while loop.time() < deadline:
        try:
            d = os.read(fd, 65536)
        except BlockingIOError:
            await asyncio.sleep(0.01)
            continue
        if not d:
            return out
        out += d
    raise TimeoutError(f"no EOF; got {out!r}")


async def read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    loop = asyncio.get_running_loop()
    out = b""
    deadline = loop.time() + timeout
    os.set_blocking(fd, False)
    while needle not in out:
        if loop.time() > deadline:
            raise TimeoutError(f"{needle!r} not seen; got {out!r}")
        try:
            d = os.read(fd, 65536)
        except BlockingIOError:
            await asyncio.sleep(0.01)
            continue
        if not d:
            break
        out += d
    return out


async def test_hello_and_boot_time(booted_uvm: BootedUvm) -> None:
    c = await connect(booted_uvm)
    try:
        elapsed = time.monotonic() - booted_uvm.started
        print(f"\nspawn -> agent hello: {elapsed:.2f} s (guest uptime {c.hello['uptime']} s)")
        assert c.version == 1
        assert c.hello["agent"].startswith("aiohcs-agent/")
        assert c.hello["kernel"].endswith("-amd64")
        assert "pty" in c.hello["features"].split(",")
        assert await c.ping() < 1.0
    finally:
        await c.close()


async def test_stdout_stderr_stream_before_exit(booted_uvm: BootedUvm) -> None:
    c = await connect(booted_uvm)
    try:
        p = await c.create_process(
            {
                "CommandArgs": ["sh", "-c", "echo out1; echo err1 >&2; read x; echo out2 $x"],
                "CreateStdInPipe": True,
                "CreateStdOutPipe": True,
                "CreateStdErrPipe": True,
            }
        )
        fds = p.take_client_fds()
        assert await read_until(fds[2], b"out1\n") == b"out1\n"
        assert await read_until(fds[4], b"err1\n") == b"err1\n"
        assert not p.exited.done()  # streamed while still running
        os.write(fds[1], b"go\n")
        assert await read_all(fds[2]) == b"out2 go\n"
        assert await read_all(fds[4]) == b""
        st = await asyncio.wait_for(p.exited, 20)
        assert (st.code, st.signal) == (0, None)
        for fd in fds.values():
            os.close(fd)
    finally:
        await c.close()


async def test_stdin_reaches_cat_and_exit_code(booted_uvm: BootedUvm) -> None:
    c = await connect(booted_uvm)
    try:
        p = await c.create_process(
            {"CommandArgs": ["cat"], "CreateStdInPipe": True, "CreateStdOutPipe": True}
        )
        fds = p.take_client_fds()
        data = os.urandom(200_000)  # > window: exercises credit both ways
        loop = asyncio.get_running_loop()

        async def feed() -> None:
            os.set_blocking(fds[1], True)
            await loop.run_in_executor(None, os.write, fds[1], data)
            os.close(fds[1])

        feeder = asyncio.create_task(feed())
        got = await read_all(fds[2], 60)
        await feeder
        assert got == data
        assert (await asyncio.wait_for(p.exited, 20)).code == 0
        os.close(fds[2])
        p = await c.create_process({"CommandArgs": ["sh", "-c", "exit 42"]})
        st = await asyncio.wait_for(p.exited, 20)
        assert (st.code, st.signal) == (42, None)
        with pytest.raises(AgentError) as e:
            await c.create_process({"CommandArgs": ["/no/such/binary"]})
        assert e.value.errno == 2
    finally:
        await c.close()


async def test_signal(booted_uvm: BootedUvm) -> None:
    c = await connect(booted_uvm)
    try:
        p = await c.create_process({"CommandArgs": ["sleep", "1000"]})
        await p.signal(signal.SIGKILL)
        st = await asyncio.wait_for(p.exited, 20)
        assert (st.code, st.signal) == (137, 9)
        assert p.raw_status == 9
        with pytest.raises(AgentError) as e:
            await p.signal(signal.SIGTERM)
        assert e.value.errno == 3
    finally:
        await c.close()


async def test_pty_and_resize(booted_uvm: BootedUvm) -> None:
    c = await connect(booted_uvm)
    try:
        p = await c.create_process(
            {
                "CommandArgs": ["sh", "-c", "stty size; tty; read x; stty size"],
                "EmulateConsole": True,
                "ConsoleSize": [24, 80],
                "CreateStdInPipe": True,
                "CreateStdOutPipe": True,
            }
        )
        fds = p.take_client_fds()
        first = await read_until(fds[2], b"/dev/pts/")
        assert b"24 80" in first
        await p.resize(50, 132)
        os.write(fds[1], b"x\n")
        rest = await read_all(fds[2])
        assert b"50 132" in rest
        assert (await asyncio.wait_for(p.exited, 20)).code == 0
        with pytest.raises(AgentError):
            await p.resize(10, 10)  # exited
    finally:
        await c.close()


async def test_process_list(booted_uvm: BootedUvm) -> None:
    c = await connect(booted_uvm)
    try:
        p = await c.create_process({"CommandArgs": ["sleep", "1000"]})
        procs = await c.process_list()
        mine = [x for x in procs if x["ProcessId"] == p.pid]
        assert mine and mine[0]["ImageName"] == "sleep"
        assert any(x["ProcessId"] == 1 for x in procs)
        assert set(mine[0]) >= {"CreateTimestamp", "UserTime100ns", "MemoryCommitBytes"}
        await p.signal(signal.SIGTERM)
        assert (await asyncio.wait_for(p.exited, 20)).code == 143
    finally:
        await c.close()


async def test_plan9_mount(booted_uvm: BootedUvm) -> None:
    (booted_uvm.share / "from_host.txt").write_text("hello from the host\n")
    c = await connect(booted_uvm)
    try:
        await c.mount_plan9("hostshare", "/mnt/host")
        p = await c.create_process(
            {
                "CommandArgs": [
                    "sh",
                    "-c",
                    "cat /mnt/host/from_host.txt; echo back > /mnt/host/from_guest.txt",
                ],
                "CreateStdOutPipe": True,
            }
        )
        fds = p.take_client_fds()
        assert await read_all(fds[2]) == b"hello from the host\n"
        assert (await asyncio.wait_for(p.exited, 20)).code == 0
        assert (booted_uvm.share / "from_guest.txt").read_text() == "back\n"
        with pytest.raises(AgentError):
            await c.mount_plan9("nosuchtag", "/mnt/none")
        await c.unmount("/mnt/host")
    finally:
        await c.close()


async def test_malformed_frames_get_errors(booted_uvm: BootedUvm) -> None:
    c = await connect(booted_uvm)
    try:
        await c.send_raw(b"\x00garbage\xc1\xa6 not a frame" * 20)
        assert await c.ping() < 5
        assert any("bad frame header" in e.get("message", "") for e in c.errors)
        # unknown type, bad record payloads, bad values: each an ERROR reply
        for ftype, payload in [
            (0x55, b""),
            (CREATE, b"arg=sh"),  # not NUL-terminated
            (CREATE, encode_record({"cwd": "/"})),  # no arg
            (CREATE, encode_record([("arg", "true"), ("user", "root")])),
            (0x04, encode_record({"signal": "x"})),
        ]:
            with pytest.raises(AgentError):
                await c._request(ftype, payload, pid=1)
        assert await c.ping() < 5
    finally:
        await c.close()


async def test_reconnect_keeps_processes(booted_uvm: BootedUvm) -> None:
    c = await connect(booted_uvm)
    p = await c.create_process({"CommandArgs": ["sleep", "1000"]})
    await c.close()
    assert c.closed.done()
    c = await connect(booted_uvm)
    try:
        assert p.pid in [x["ProcessId"] for x in await c.process_list()]
    finally:
        await c.close()


async def test_set_time(booted_uvm: BootedUvm) -> None:
    c = await connect(booted_uvm)
    try:
        await c.set_time(1_000_000_000.5)
        p = await c.create_process({"CommandArgs": ["date", "+%s"], "CreateStdOutPipe": True})
        out = await read_all(p.take_client_fds()[2])
        assert 1_000_000_000 <= int(out) < 1_000_000_100
        await c.set_time()  # back to the host's clock
    finally:
        await c.close()


def test_parser_resync_unit() -> None:
    frame = pack_frame(0x82, b"pong", req=7)
    parser = FrameParser()
    frames = parser.feed(b"junk\xc1\xa6xx" + frame[:5])
    assert frames == []
    frames = parser.feed(frame[5:] + frame)
    assert [(f.type, f.req, f.payload) for f in frames] == [(0x82, 7, b"pong")] * 2
    assert parser.skipped == 8
