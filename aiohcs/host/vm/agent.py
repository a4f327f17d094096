"""Host side of the guest-agent protocol (docs/guest-agent.md, version 1).

One `AgentClient` per utility VM connection: it owns the unix socket QEMU
serves for the `org.aiohcs.agent` virtio-serial port, multiplexes requests,
and relays each process's stdio between the agent channel and local socket
pairs whose other ends go to the HCS client (`AgentProcess.client_fds`).

Events the VM backend uses:

- `await AgentClient.connect(path)` returns once the agent answered HELLO:
  the guest connection is up (`client.hello` holds the agent's record).
- `client.closed` resolves (never raises) when the channel hits EOF or an
  error: the guest connection is gone (`on_disconnect` is also called).
- `AgentProcess.exited` resolves with an `ExitStatus` when the agent reports
  the exit; it fails with `AgentDisconnected` if the channel goes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as errno_mod
import logging
import os
import shlex
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohcs._wire import FdMask
from aiohcs.host.reaper import ExitStatus

log = logging.getLogger(__name__)

PORT_NAME = "org.aiohcs.agent"
PROTOCOL_VERSION = 1
MAGIC = 0xA6C1
FRAMING_VERSION = 1
HEADER = struct.Struct("<HBBIIBBH")
HEADER_SIZE = HEADER.size  # 16
MAX_PAYLOAD = 0xFFFF - HEADER_SIZE
DATA_CHUNK = 16384
WINDOW = 65536

# message types
HELLO = 0x01
PING = 0x02
CREATE = 0x03
SIGNAL = 0x04
RESIZE = 0x05
PROCLIST = 0x07
MOUNT9P = 0x08
UNMOUNT = 0x09
SETTIME = 0x0A
SHUTDOWN = 0x0B
BIND = 0x0C
DATA = 0x20
CREDIT = 0x21
EXIT = 0x40
ERROR = 0x7F
REPLY = 0x80

STDIN, STDOUT, STDERR = 0, 1, 2
_STREAM_BIT = {STDIN: FdMask.STDIN, STDOUT: FdMask.STDOUT, STDERR: FdMask.STDERR}

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class AgentError(Exception):
    """The agent refused a request. `errno` is the guest's errno."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(f"guest agent: {message} (errno {errno})")
        self.errno = errno
        self.message = message


class AgentDisconnected(AgentError):
    """The channel to the agent closed (guest gone, QEMU exited, or close())."""

    def __init__(self, message: str = "guest connection closed") -> None:
        super().__init__(errno_mod.ENOTCONN, message)


# ------------------------------------------------------------------ codec


def _check(hdr: bytes | bytearray) -> int:
    c = 0x5A
    for i, b in enumerate(hdr):
        if i != 13:
            c ^= b
    return c


def pack_frame(
    ftype: int, payload: bytes = b"", req: int = 0, pid: int = 0, stream: int = 0
) -> bytes:
    """One frame: header + payload (payload ≤ MAX_PAYLOAD bytes)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    hdr = bytearray(HEADER.pack(MAGIC, FRAMING_VERSION, ftype, req, pid, stream, 0, len(payload)))
    hdr[13] = _check(hdr)
    return bytes(hdr) + payload


def encode_record(items: Sequence[tuple[str, str | int]] | Mapping[str, str | int]) -> bytes:
    """`key=value\\0` strings; values must not contain NUL."""
    pairs = items.items() if isinstance(items, Mapping) else items
    out = bytearray()
    for k, v in pairs:
        s = f"{k}={v}".encode()
        if b"\0" in s:
            raise ValueError(f"NUL byte in {k!r}")
        out += s + b"\0"
    return bytes(out)


def decode_record(payload: bytes) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in payload.split(b"\0"):
        if not item:
            continue
        k, _, v = item.partition(b"=")
        out.append((k.decode("utf-8", "replace"), v.decode("utf-8", "replace")))
    return out


@dataclass(slots=True)
class Frame:
    type: int
    req: int
    pid: int
    stream: int
    payload: bytes


class FrameParser:
    """Incremental parser with resync: bad bytes are skipped one at a time."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        while len(buf) >= HEADER_SIZE:
            magic, ver, ftype, req, pid, stream, chk, length = HEADER.unpack_from(buf)
            if magic != MAGIC or ver != FRAMING_VERSION or chk != _check(buf[:HEADER_SIZE]):
                # Look for the next magic and drop everything before it.
                nxt = buf.find(b"\xc1\xa6", 1)
                drop = nxt if nxt > 0 else len(buf) - 1
                self.skipped += drop
                del buf[:drop]
                continue
            if len(buf) < HEADER_SIZE + length:
                break
            frames.append(
                Frame(ftype, req, pid, stream, bytes(buf[HEADER_SIZE : HEADER_SIZE + length]))
            )
            del buf[: HEADER_SIZE + length]
        return frames


# ------------------------------------------------------------------ processes


@dataclass(eq=False)
class AgentProcess:
    """A process in the guest. Its stdio is relayed through local socket pairs.

    `client_fds` maps FdMask bits to the client's ends of those pairs (what the
    service hands to the HCS client); the caller owns them once it took them
    (`take_client_fds`). `exited` resolves with the exit status.
    """

    client: AgentClient
    pid: int
    tty: bool
    exited: asyncio.Future[ExitStatus]
    client_fds: dict[int, int] = field(default_factory=dict)
    _relay: dict[int, socket.socket] = field(default_factory=dict)
    _out_queues: dict[int, asyncio.Queue[bytes]] = field(default_factory=dict)
    _stdin_credit: int = WINDOW
    _credit_event: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    raw_status: int | None = None

    def take_client_fds(self) -> dict[int, int]:
        """Hand over the client ends (FdMask bit -> fd); the caller closes them."""
        fds, self.client_fds = self.client_fds, {}
        return fds

    async def signal(self, signum: int) -> None:
        """Send signal `signum` to the process (guest numbering = Linux)."""
        await self.client._request(SIGNAL, encode_record({"signal": signum}), pid=self.pid)

    async def resize(self, height: int, width: int) -> None:
        """Set the pty size (TIOCSWINSZ); an error for a process without a tty."""
        await self.client._request(RESIZE, encode_record({"rows": height, "cols": width}), self.pid)

    async def close_stdin(self) -> None:
        """End the process's stdin (as if the client closed its stdin end)."""
        sock = self._relay.pop(STDIN, None)
        if sock is not None:
            sock.close()
            await self.client._send(pack_frame(DATA, b"", pid=self.pid, stream=STDIN))

    def _close_relays(self) -> None:
        for t in self._tasks:
            t.cancel()
        for s in self._relay.values():
            s.close()
        self._relay.clear()
        for fd in self.client_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.client_fds.clear()


# ------------------------------------------------------------------ client


class AgentClient:
    """A connection to the guest agent over QEMU's virtio-serial chardev socket."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_disconnect: Callable[[AgentClient], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = FrameParser()
        self._next_req = 1
        self._pending: dict[int, tuple[asyncio.Future[Frame], int]] = {}
        self._procs: dict[int, AgentProcess] = {}
        self._pending_create: dict[int, dict[int, bool]] = {}
        # CREATE reply -> its process, kept apart from _procs: a process without output
        # streams can exit (and be forgotten) before create_process() resumes.
        self._created: dict[int, AgentProcess] = {}
        self._on_disconnect = on_disconnect
        self._write_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.hello: dict[str, str] = {}
        self.version = 0
        self.guest_hello_seen = asyncio.Event()
        self.errors: list[dict[str, str]] = []  # unsolicited ERROR events (bad frames)
        self._reader_task = asyncio.create_task(self._read_loop(), name="agent-reader")

    # -------------------------------------------------------------- connect

    @classmethod
    async def connect(
        cls,
        path: str,
        timeout: float = 30.0,
        *,
        on_disconnect: Callable[[AgentClient], None] | None = None,
    ) -> AgentClient:
        """Connect to QEMU's chardev socket `path` and do the HELLO handshake.

        Retries while the socket does not exist or refuses (QEMU starting).
        Returns when the agent answered; raises TimeoutError after `timeout`
        seconds, AgentError if the versions do not overlap.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if loop.time() >= deadline:
                    raise TimeoutError(f"guest agent socket {path}: not available") from None
                await asyncio.sleep(0.02)
        client = cls(reader, writer, on_disconnect)
        try:
            await asyncio.wait_for(client._handshake(), max(0.0, deadline - loop.time()))
        except BaseException:
            await client.close()
            raise
        return client

    async def _handshake(self) -> None:
        rec = encode_record(
            {"version_min": PROTOCOL_VERSION, "version_max": PROTOCOL_VERSION, "host": "aiohcs"}
        )
        while True:
            # If the agent announces itself while our HELLO is pending, our bytes
            # may predate the port being open: ask again.
            self.guest_hello_seen.clear()
            req = asyncio.ensure_future(self._request(HELLO, rec))
            seen = asyncio.ensure_future(self.guest_hello_seen.wait())
            try:
                done, _ = await asyncio.wait({req, seen}, return_when=asyncio.FIRST_COMPLETED)
                if req in done:
                    frame = req.result()
                else:
                    # The reply to the first HELLO may still come; either answer will do.
                    try:
                        frame = await asyncio.wait_for(asyncio.shield(req), 0.5)
                    except TimeoutError:
                        continue
            finally:
                # Cancelled (start timed out, terminate) or retrying: leave no task
                # behind, and no exception unretrieved when the channel closes.
                for task in (req, seen):
                    if not task.done():
                        task.cancel()
                    task.add_done_callback(_retrieve)
            reply = dict(decode_record(frame.payload))
            self.hello = reply
            self.version = int(reply.get("version", "0"))
            return

    # -------------------------------------------------------------- requests

    async def ping(self, payload: bytes = b"ping") -> float:
        """Round trip to the agent; returns seconds."""
        t0 = time.perf_counter()
        frame = await self._request(PING, payload)
        if frame.payload != payload:
            raise AgentError(errno_mod.EPROTO, "PING echo mismatch")
        return time.perf_counter() - t0

    async def create_process(self, params: Mapping[str, Any]) -> AgentProcess:
        """Start a process from an HCS ProcessParameters dict (PascalCase keys).

        Uses CommandArgs, else CommandLine split with shell quoting rules (no
        shell is started: use `sh -c '...'` for shell syntax). Also:
        Environment, WorkingDirectory, User ("uid[:gid]" or "root"),
        EmulateConsole + ConsoleSize, CreateStd*Pipe.
        """
        args = params.get("CommandArgs")
        if not args:
            cmdline = params.get("CommandLine") or params.get("ApplicationName") or ""
            args = split_command_line(cmdline)
        if not args:
            raise AgentError(errno_mod.EINVAL, "ProcessParameters: no CommandLine or CommandArgs")
        tty = bool(params.get("EmulateConsole"))
        want = {
            STDIN: bool(params.get("CreateStdInPipe")),
            STDOUT: bool(params.get("CreateStdOutPipe")),
            STDERR: bool(params.get("CreateStdErrPipe")) and not tty,
        }
        items: list[tuple[str, str | int]] = [("arg", a) for a in args]
        env = params.get("Environment")
        env = dict(env) if env else {}
        env.setdefault("PATH", DEFAULT_PATH)
        env.setdefault("HOME", "/")
        if tty:
            env.setdefault("TERM", "xterm")
        items += [("env", f"{k}={v}") for k, v in env.items()]
        if params.get("WorkingDirectory"):
            items.append(("cwd", params["WorkingDirectory"]))
        user = params.get("User")
        if user:
            items.append(("user", "0:0" if user == "root" else user))
        items += [("stdin", int(want[STDIN])), ("stdout", int(want[STDOUT]))]
        items += [("stderr", int(want[STDERR])), ("tty", int(tty))]
        size = params.get("ConsoleSize")
        if tty and size:
            items += [("rows", int(size[0])), ("cols", int(size[1]))]
        frame = await self._request(CREATE, encode_record(items), create=want | {-1: tty})
        return self._created.pop(frame.req)

    async def process_list(self) -> list[dict[str, Any]]:
        """ProcessDetails of every guest process (HCS ProcessList property)."""
        frame = await self._request(PROCLIST, b"")
        return proclist_to_details(decode_record(frame.payload))

    async def mount_plan9(
        self, tag: str, path: str, *, readonly: bool = False, msize: int = 262144
    ) -> None:
        """Mount the 9p share `tag` (virtio transport) at guest `path`."""
        rec: dict[str, str | int] = {"tag": tag, "path": path, "msize": msize}
        if readonly:
            rec["ro"] = 1
        await self._request(MOUNT9P, encode_record(rec))

    async def unmount(self, path: str) -> None:
        await self._request(UNMOUNT, encode_record({"path": path}))

    @property
    def features(self) -> frozenset[str]:
        """The `features=` of the agent's HELLO."""
        return frozenset(f for f in str(self.hello.get("features", "")).split(",") if f)

    async def bind(self, src: str, path: str, *, readonly: bool = False) -> None:
        """Bind-mount guest directory `src` on `path` (feature `bind`)."""
        rec: dict[str, str | int] = {"src": src, "path": path}
        if readonly:
            rec["ro"] = 1
        await self._request(BIND, encode_record(rec))

    async def set_time(self, when: float | None = None) -> None:
        """Set the guest wall clock (default: the host's now), e.g. after restore."""
        t = time.time_ns() if when is None else int(when * 1e9)
        await self._request(SETTIME, encode_record({"sec": t // 10**9, "nsec": t % 10**9}))

    async def shutdown(self, poweroff: bool = True, grace: float = 2.0) -> None:
        """Ask for an orderly shutdown; returns once the agent acknowledged.

        The agent then terminates all processes (SIGTERM, `grace` seconds,
        SIGKILL), syncs and powers off (or reboots); QEMU exits and `closed`
        resolves.
        """
        mode = "poweroff" if poweroff else "reboot"
        await self._request(SHUTDOWN, encode_record({"mode": mode, "grace_ms": int(grace * 1000)}))

    async def close(self) -> None:
        """Drop the connection (the guest keeps running and sees 'host away')."""
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        self._disconnected("closed by host")

    async def send_raw(self, data: bytes) -> None:
        """Write raw bytes to the channel (tests: malformed input)."""
        await self._send(data)

    # -------------------------------------------------------------- internals

    async def _send(self, data: bytes) -> None:
        if self.closed.done():
            raise AgentDisconnected()
        async with self._write_lock:
            self._writer.write(data)
            try:
                await self._writer.drain()
            except (ConnectionError, OSError) as e:
                raise AgentDisconnected(f"guest connection: {e}") from e

    async def _request(
        self, ftype: int, payload: bytes, pid: int = 0, create: dict[int, bool] | None = None
    ) -> Frame:
        if self.closed.done():
            raise AgentDisconnected()
        req = self._next_req
        self._next_req = (self._next_req % 0xFFFFFFFF) + 1
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[req] = (fut, ftype)
        if create is not None:
            self._pending_create[req] = create
        try:
            await self._send(pack_frame(ftype, payload, req=req, pid=pid))
            return await fut
        except BaseException:
            # A cancelled create whose reply already arrived: nobody will take the
            # client ends of its stdio, so close them here.
            orphan = self._created.pop(req, None)
            if orphan is not None:
                for fd in orphan.take_client_fds().values():
                    os.close(fd)
            raise
        finally:
            self._pending.pop(req, None)
            self._pending_create.pop(req, None)

    async def _read_loop(self) -> None:
        reason = "EOF from guest channel"
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for frame in self._parser.feed(data):
                    self._dispatch(frame)
        except (ConnectionError, OSError) as e:
            reason = f"guest channel: {e}"
        finally:
            self._disconnected(reason)

    def _dispatch(self, f: Frame) -> None:
        if f.type == DATA:
            proc = self._procs.get(f.pid)
            q = proc._out_queues.get(f.stream) if proc else None
            if q is not None:
                q.put_nowait(f.payload)
            return
        if f.type == CREDIT:
            proc = self._procs.get(f.pid)
            if proc is not None and len(f.payload) == 4 and f.stream == STDIN:
                proc._stdin_credit += struct.unpack("<I", f.payload)[0]
                proc._credit_event.set()
            return
        if f.type == EXIT:
            self._on_exit(f)
            return
        if f.type == HELLO | REPLY and f.req == 0:
            self.guest_hello_seen.set()
            return
        if f.type == ERROR and f.req == 0:
            rec = dict(decode_record(f.payload))
            log.warning("guest agent reported: %s", rec.get("message"))
            self.errors.append(rec)
            return
        entry = self._pending.get(f.req)
        if entry is None:
            log.debug("agent frame for unknown request %d (type %#x)", f.req, f.type)
            return
        fut, ftype = entry
        if fut.done():
            return
        if f.type == ERROR:
            rec = dict(decode_record(f.payload))
            fut.set_exception(AgentError(int(rec.get("errno", "0") or 0), rec.get("message", "")))
        elif f.type == ftype | REPLY:
            if ftype == CREATE:
                # Register now: DATA for this pid may be in the very next frame.
                self._register(f)
            fut.set_result(f)
        else:
            fut.set_exception(AgentError(errno_mod.EPROTO, f"unexpected reply type {f.type:#x}"))

    def _register(self, f: Frame) -> None:
        want = self._pending_create.get(f.req, {})
        pid = int(dict(decode_record(f.payload)).get("pid", "0"))
        loop = asyncio.get_running_loop()
        proc = AgentProcess(self, pid, bool(want.get(-1)), loop.create_future())
        for stream in (STDIN, STDOUT, STDERR):
            if not want.get(stream):
                continue
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            mine.setblocking(False)
            proc._relay[stream] = mine
            proc.client_fds[_STREAM_BIT[stream]] = theirs.detach()
            if stream == STDIN:
                proc._tasks.append(asyncio.create_task(self._pump_stdin(proc, mine)))
            else:
                q: asyncio.Queue[bytes] = asyncio.Queue()
                proc._out_queues[stream] = q
                proc._tasks.append(asyncio.create_task(self._pump_out(proc, stream, mine, q)))
        self._procs[pid] = proc
        self._created[f.req] = proc

    async def _pump_out(
        self, proc: AgentProcess, stream: int, sock: socket.socket, q: asyncio.Queue[bytes]
    ) -> None:
        """Guest DATA -> local socket, returning credit once delivered."""
        loop = asyncio.get_running_loop()
        broken = False
        while True:
            data = await q.get()
            if not data:
                break
            if not broken:
                try:
                    await loop.sock_sendall(sock, data)
                except OSError:
                    broken = True  # client closed its end: discard, keep credit flowing
            with contextlib.suppress(AgentDisconnected):
                await self._send(
                    pack_frame(CREDIT, struct.pack("<I", len(data)), pid=proc.pid, stream=stream)
                )
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        proc._out_queues.pop(stream, None)
        s = proc._relay.pop(stream, None)
        if s is not None:
            s.close()
        self._maybe_forget(proc)

    async def _pump_stdin(self, proc: AgentProcess, sock: socket.socket) -> None:
        """Local socket -> guest DATA on stdin, within the credit window."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                while proc._stdin_credit <= 0:
                    proc._credit_event.clear()
                    await proc._credit_event.wait()
                n = min(proc._stdin_credit, DATA_CHUNK)
                try:
                    data = await loop.sock_recv(sock, n)
                except OSError:
                    data = b""
                if proc.exited.done() and not data:
                    return
                proc._stdin_credit -= len(data)
                await self._send(pack_frame(DATA, data, pid=proc.pid, stream=STDIN))
                if not data:
                    return
        except AgentDisconnected:
            return
        finally:
            if proc._relay.get(STDIN) is sock:
                del proc._relay[STDIN]
                sock.close()

    def _on_exit(self, f: Frame) -> None:
        proc = self._procs.get(f.pid)
        if proc is None:
            return
        rec = dict(decode_record(f.payload))
        sig = int(rec.get("signal", "0") or 0)
        proc.raw_status = int(rec.get("status", "0") or 0)
        if not proc.exited.done():
            proc.exited.set_result(ExitStatus(int(rec.get("code", "255")), sig or None, f.pid))
        self._maybe_forget(proc)

    def _maybe_forget(self, proc: AgentProcess) -> None:
        if proc.exited.done() and not proc._out_queues:
            # stdin relay: the process is gone, stop reading the client's end.
            s = proc._relay.pop(STDIN, None)
            if s is not None:
                s.close()
            for t in proc._tasks:
                if t is not asyncio.current_task():
                    t.cancel()
            if self._procs.get(proc.pid) is proc:
                del self._procs[proc.pid]

    def _disconnected(self, reason: str) -> None:
        if self.closed.done():
            return
        log.info("guest agent connection closed: %s", reason)
        self.closed.set_result(None)
        for fut, _ in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(AgentDisconnected(reason))
        self._pending.clear()
        for proc in list(self._procs.values()):
            proc._close_relays()
            if not proc.exited.done():
                proc.exited.set_exception(AgentDisconnected(reason))
                proc.exited.exception()  # retrieved: the backend may not be waiting
        self._procs.clear()
        with contextlib.suppress(Exception):
            self._writer.close()
        if self._on_disconnect is not None:
            try:
                self._on_disconnect(self)
            except Exception:
                log.exception("on_disconnect callback failed")


# ------------------------------------------------------------------ helpers


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a finished task's exception as seen (nobody awaits it any more)."""
    if not task.cancelled():
        task.exception()


def split_command_line(cmdline: str) -> list[str]:
    """CommandLine -> argv, split like a POSIX shell would (as the container backend does)."""
    try:
        return shlex.split(cmdline)
    except ValueError as e:
        raise AgentError(errno_mod.EINVAL, f"CommandLine: {e}") from None


def proclist_to_details(items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """PROCLIST reply records -> HCS ProcessDetails dicts."""
    hz = 100
    btime = 0
    procs: list[dict[str, str]] = []
    cur: dict[str, str] | None = None
    for k, v in items:
        if k == "pid":
            cur = {"pid": v}
            procs.append(cur)
        elif cur is not None:
            cur[k] = v
        elif k == "hz":
            hz = int(v) or 100
        elif k == "btime":
            btime = int(v)
    out: list[dict[str, Any]] = []
    for p in procs:

        def num(key: str, p: dict[str, str] = p) -> int:
            try:
                return int(p.get(key, "0"))
            except ValueError:
                return 0

        start = btime + num("start") / hz
        out.append(
            {
                "ProcessId": num("pid"),
                "ImageName": p.get("name", ""),
                "CreateTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                "UserTime100ns": num("utime") * 10_000_000 // hz,
                "KernelTime100ns": num("stime") * 10_000_000 // hz,
                "MemoryCommitBytes": num("vsize"),
                "MemoryWorkingSetPrivateBytes": num("rss"),
                "MemoryWorkingSetSharedBytes": 0,
            }
        )
    return out
