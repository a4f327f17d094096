"""The guest agent's protocol core on the host: no VM.

`aiohcs-agent --fd N` serves the protocol on an inherited socket (test
harness mode: no mounts, EOF ends it). The same C code as in the VM, here
built with AddressSanitizer/UBSan so that fuzzing finds memory errors, not
just crashes.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiohcs.host.vm.agent import (
    CREATE,
    CREDIT,
    DATA,
    HELLO,
    PING,
    PROCLIST,
    RESIZE,
    SIGNAL,
    AgentClient,
    AgentError,
    encode_record,
    pack_frame,
)

pytestmark = pytest.mark.timeout(120)
NATIVE = Path(__file__).resolve().parents[2] / "aiohcs" / "_native"


@pytest.fixture(scope="module")
def asan_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("agent") / "aiohcs-agent-asan"
    srcs = sorted(str(p) for p in (NATIVE / "agent").glob("*.c"))
    subprocess.run(
        ["cc", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
         "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11", "-o", str(out), *srcs],
        check=True,
    )  # fmt: skip
    return out


class Harness:
    def __init__(self, proc: subprocess.Popen[bytes], client: AgentClient) -> None:
        self.proc = proc
        self.client = client


@pytest.fixture
async def harness(asan_agent: Path) -> AsyncIterator[Harness]:
    mine, theirs = socket.socketpair()
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
    proc = subprocess.Popen(
        [str(asan_agent), "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()], env=env
    )
    theirs.close()
    reader, writer = await asyncio.open_unix_connection(sock=mine, limit=1 << 20)
    client = AgentClient(reader, writer)
    await asyncio.wait_for(client._handshake(), 10)
    try:
        yield Harness(proc, client)
    finally:
        await client.close()
        try:
            rc = await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert rc == 0, f"agent exited with {rc}"


async def test_handshake_versions(harness: Harness) -> None:
    c = harness.client
    assert c.version == 1
    with pytest.raises(AgentError) as e:
        await c._request(HELLO, encode_record({"version_min": 2, "version_max": 9}))
    assert e.value.errno == 95


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wchar(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


async def test_slow_reader_backpressures_the_process(harness: Harness) -> None:
    c = harness.client
    total = 50 * 1024 * 1024
    p = await c.create_process(
        {"CommandArgs": ["sh", "-c", f"exec head -c {total} /dev/zero"], "CreateStdOutPipe": True}
    )
    fd = p.take_client_fds()[2]
    rss0 = vm_rss_kib(harness.proc.pid)
    os.set_blocking(fd, False)
    got = 0
    while got == 0:  # never block the loop: it runs the relay
        try:
            got = len(os.read(fd, 1 << 20))
        except BlockingIOError:
            await asyncio.sleep(0.001)
    await asyncio.sleep(1.0)  # slow reader: nothing read for a second
    written = wchar(p.pid)
    # In flight at most: the window (64 KiB), the pipe (64 KiB), the socket pair
    # buffers and the relay's queue: nowhere near the 50 MB the process wants.
    assert written - got < 4 * 1024 * 1024, (written, got)
    assert vm_rss_kib(harness.proc.pid) - rss0 < 8 * 1024
    while True:
        try:
            d = os.read(fd, 1 << 20)
        except BlockingIOError:
            await asyncio.sleep(0.001)
            continue
        if not d:
            break
        got += len(d)
    assert got == total
    assert (await asyncio.wait_for(p.exited, 30)).code == 0
    os.close(fd)


async def test_stdin_window_is_enforced(harness: Harness) -> None:
    c = harness.client
    p = await c.create_process({"CommandArgs": ["sleep", "30"], "CreateStdInPipe": True})
    # sleep never reads: the pipe (64 KiB) and the agent's window (64 KiB) fill
    # up, then the agent refuses more.
    blob = b"x" * 16384
    for _ in range(12):
        await c.send_raw(pack_frame(DATA, blob, pid=p.pid, stream=0))
    await c.ping()
    await asyncio.sleep(0.2)
    assert any(e.get("errno") == "105" for e in c.errors)  # ENOBUFS
    await p.signal(9)
    assert (await p.exited).signal == 9
    for fd in p.take_client_fds().values():
        os.close(fd)


def random_record(rng: random.Random) -> bytes:
    keys = ["arg", "env", "cwd", "user", "stdin", "tty", "rows", "cols", "signal", "x", ""]
    vals = ["", "0", "1", "-1", "99999999999999999999", "a=b", "/", "\xff", "65535", "65536"]
    out = b""
    for _ in range(rng.randrange(6)):
        out += f"{rng.choice(keys)}={rng.choice(vals)}".encode() + rng.choice([b"\0", b"", b"="])
    return out


async def test_fuzz_random_bytes_and_frames(harness: Harness) -> None:
    c = harness.client
    rng = random.Random(4)
    # Types that cannot touch the host running this test (no SETTIME, mounts,
    # SHUTDOWN): those are fuzzed by the VM test's malformed frames.
    types = [HELLO, PING, SIGNAL, RESIZE, PROCLIST, DATA, CREDIT, 0x00, 0x55, 0x7F, 0x81, 0xFF]
    for i in range(3000):
        r = rng.random()
        if r < 0.2:
            data = rng.randbytes(rng.randrange(1, 300))
        elif r < 0.3:  # a header that lies about its length, then junk
            data = pack_frame(rng.choice(types), rng.randbytes(rng.randrange(40)))[:-3]
        else:
            payload = random_record(rng) if rng.random() < 0.6 else rng.randbytes(rng.randrange(64))
            data = pack_frame(
                rng.choice(types), payload, req=rng.randrange(1 << 32),
                pid=rng.choice([0, 1, os.getpid(), rng.randrange(1 << 32)]),
                stream=rng.randrange(4),
            )  # fmt: skip
        await c.send_raw(data)
        if i % 500 == 0:
            assert harness.proc.poll() is None
    # CREATE with garbage (not records / missing arg): errors, no process.
    for payload in (b"\0\0\0", b"arg", b"env=x\0", encode_record({"stdin": 2, "arg": "true"})):
        with pytest.raises(AgentError):
            await c._request(CREATE, payload)
    # A huge frame that is valid is fine; the stream resyncs after all that junk.
    await c.send_raw(b"\xc1\xa6" * 5000)
    for _ in range(3):
        assert await asyncio.wait_for(c.ping(), 10) < 5
    assert harness.proc.poll() is None
    assert c.errors  # the agent reported the garbage


def test_uncrashable_on_immediate_eof(asan_agent: Path) -> None:
    mine, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [str(asan_agent), "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()]
    )
    theirs.close()
    mine.sendall(b"\xc1\xa6\x01\x03" + b"\xff" * 12)
    mine.close()
    assert proc.wait(10) == 0


async def test_bind_requests(harness: Harness, tmp_path: Path) -> None:
    """BIND (0x0C, feature `bind`): errors by errno; as root, a real read-only bind."""
    from aiohcs.host.vm import plan9

    c = harness.client
    assert "bind" in c.features
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    (tmp_path / "file").write_text("")
    for args, err in [
        (("relative", "/x"), 22),
        ((str(src), "relative"), 22),
        ((str(tmp_path / "missing"), str(tmp_path / "t")), 2),
        ((str(tmp_path / "file"), str(tmp_path / "t")), 20),
    ]:
        with pytest.raises(AgentError) as e:
            await c.bind(*args)
        assert e.value.errno == err, (args, e.value)
    if os.geteuid() != 0:
        return
    target = tmp_path / "deep" / "target"
    try:
        await c.bind(str(src), str(target), readonly=True)
        assert (target / "f").read_text() == "x"
        with pytest.raises(OSError):
            (target / "g").write_text("no")
        await c.unmount(str(target))
        assert not (target / "f").exists()
    finally:
        plan9.unmount_all_under(str(tmp_path))
