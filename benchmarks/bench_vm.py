"""aiohcs VMs (client -> libcomputecore -> host service -> QEMU + guest agent) vs raw QEMU.

The default utility VM (``python -m aiohcs.uvm``: Debian kernel as PVH vmlinux,
busybox + the guest agent as init) booted both ways on the same machine:

- **ours**: a ``VirtualMachine`` document (``LinuxKernelDirect`` with the same
  kernel, initramfs and command line, 256 MiB, 1 CPU, ``GuestConnection``)
  through ``aiohcs.create_system`` / ``System`` methods;
- **raw**: ``qemu-system-x86_64`` with ``aiohcs.uvm.raw.uvm_argv`` (pc, TCG,
  the same kernel/initramfs/cmdline, 256 MiB, 1 CPU, the agent's virtio-serial
  port), driven with blocking sockets: the console file, the agent socket
  (frames packed with ``aiohcs.host.vm.agent``'s codec) and a minimal QMP client.

Per round, each side does (sides alternate, the order flips every round, and a
side's VM is gone before the other side starts, so they never share the CPU):

1. boot: ours ``create_system`` + ``start()`` (returns when the agent answered
   HELLO) + ``create_process(["/bin/true"])`` + ``wait()``; raw: spawn -> the
   init's first console line (``aiohcs-agent: ready``) and spawn -> the agent
   answered our HELLO;
2. ``--cycles`` x pause and resume: ``pause()`` / ``resume()`` vs QMP ``stop`` / ``cont``;
3. save (paused VM): ``save(ToFile)`` (returns once QEMU is gone) vs QMP
   ``migrate-set-parameters max-bandwidth`` + ``migrate exec:cat > FILE`` +
   ``query-migrate`` every 20 ms until completed + ``quit`` + reap; file sizes;
4. restore: ``create_system`` with ``RestoreState`` + ``start()`` vs spawn
   with ``-incoming defer`` + ``migrate-incoming exec:cat FILE`` + polling +
   agent HELLO answered; then (ours) ``/bin/true`` in the restored VM.

    python benchmarks/bench_vm.py                 # 3 rounds after 1 warm-up, ~40 s on TCG
    python benchmarks/bench_vm.py --rounds 5 --markdown

Needs root and QEMU. Starts a private host service (``--accel tcg`` unless
told otherwise) on a temporary socket and state directory; kills every VM and
removes every file it made, also on Ctrl-C / SIGTERM / errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _service import Service, private_service  # noqa: E402

import aiohcs  # noqa: E402
from aiohcs import schema  # noqa: E402
from aiohcs.host.vm.agent import (  # noqa: E402
    HELLO,
    REPLY,
    FrameParser,
    encode_record,
    pack_frame,
)
from aiohcs.uvm import boot_cmdline, ensure  # noqa: E402
from aiohcs.uvm.raw import QEMU, uvm_argv  # noqa: E402

MEMORY_MB = 256  # uvm_argv's -m
POLL = 0.02  # migration status polling, both sides (the service polls every 20 ms)
BOOT_TIMEOUT = 120.0
MiB = 1024 * 1024


# ---------------------------------------------------------------- helpers


def connect_unix(
    path: pathlib.Path, proc: subprocess.Popen[bytes], timeout: float
) -> socket.socket:
    """Connect as soon as QEMU made the socket (it is the server, wait=off)."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if proc.poll() is not None:
                raise RuntimeError(
                    f"QEMU exited {proc.returncode} before {path.name} was up"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not appear in {timeout:.0f} s") from None
            time.sleep(0.001)


class Qmp:
    """Minimal blocking QMP client: one command at a time, events skipped."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        greeting = json.loads(self.file.readline())
        if "QMP" not in greeting:
            raise RuntimeError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        msg: dict[str, Any] = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError(f"QMP closed during {command}")
            reply = json.loads(line)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")

    def wait_migration(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self.execute("query-migrate").get("status", "none")
            if status == "completed":
                return
            if status in ("failed", "cancelled") or time.monotonic() > deadline:
                raise RuntimeError(f"migration {status}")
            time.sleep(POLL)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


# ---------------------------------------------------------------- raw side


@dataclass
class RawVm:
    proc: subprocess.Popen[bytes]
    dir: pathlib.Path
    t0: float
    agent: socket.socket | None = None
    qmp: Qmp | None = None
    parser: FrameParser = field(default_factory=FrameParser)

    @property
    def console(self) -> pathlib.Path:
        return self.dir / "console.log"

    def send_hello(self, req: int) -> None:
        assert self.agent is not None
        payload = encode_record([("version_min", 1), ("version_max", 1), ("host", "bench")])
        self.agent.sendall(pack_frame(HELLO, payload, req=req))

    def frames(self, timeout: float) -> list[Any]:
        assert self.agent is not None
        if not select.select([self.agent], [], [], timeout)[0]:
            return []
        data = self.agent.recv(65536)
        if not data:
            raise RuntimeError("agent socket closed")
        return self.parser.feed(data)

    def kill(self) -> None:
        for closer in (self.qmp, self.agent):
            if closer is not None:
                with contextlib.suppress(OSError):
                    closer.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Raw:
    def __init__(self, uvm: dict[str, Any], base: pathlib.Path) -> None:
        self.uvm = uvm
        self.base = base
        self.live: list[RawVm] = []

    def spawn(self, incoming: bool) -> RawVm:
        d = pathlib.Path(tempfile.mkdtemp(prefix="raw-", dir=self.base))
        share = d / "share"
        share.mkdir()
        argv = uvm_argv(self.uvm, d, share)
        if incoming:
            argv += ["-incoming", "defer"]
        log = open(d / "qemu.log", "wb")  # noqa: SIM115 - QEMU keeps it
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        vm = RawVm(proc, d, t0)
        self.live.append(vm)
        return vm

    def boot(self) -> tuple[RawVm, float, float]:
        """(vm, spawn -> init's first console line, spawn -> agent answered HELLO) in ms."""
        vm = self.spawn(incoming=False)
        vm.agent = connect_unix(vm.dir / "agent.sock", vm.proc, 10)
        t_console = t_hello = 0.0
        asked = False
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not (t_console and t_hello):
            if time.monotonic() > deadline or vm.proc.poll() is not None:
                raise RuntimeError(f"raw boot failed:\n{vm.console.read_text(errors='replace')}")
            for frame in vm.frames(0.002):
                if frame.type == HELLO | REPLY and frame.req == 0 and not asked:
                    vm.send_hello(1)  # the unsolicited HELLO: the agent is up; handshake
                    asked = True
                elif frame.type == HELLO | REPLY and frame.req == 1:
                    t_hello = time.perf_counter()
            if not t_console:
                with contextlib.suppress(OSError), open(vm.console, "rb") as f:
                    if b"aiohcs-agent:" in f.read():
                        t_console = time.perf_counter()
        vm.qmp = Qmp(connect_unix(vm.dir / "qmp.sock", vm.proc, 10))
        return vm, (t_console - vm.t0) * 1e3, (t_hello - vm.t0) * 1e3

    @staticmethod
    def timed(vm: RawVm, command: str) -> float:
        assert vm.qmp is not None
        t0 = time.perf_counter()
        vm.qmp.execute(command)
        return (time.perf_counter() - t0) * 1e3

    def save(self, vm: RawVm, path: pathlib.Path) -> float:
        """Paused VM -> file, QEMU quit and reaped; ms."""
        assert vm.qmp is not None
        t0 = time.perf_counter()
        vm.qmp.execute("migrate-set-parameters", {"max-bandwidth": 10_000_000_000})
        vm.qmp.execute("migrate", {"uri": f"exec:cat > {path}"})
        vm.qmp.wait_migration()
        with contextlib.suppress(RuntimeError):  # QEMU may close QMP before replying
            vm.qmp.execute("quit")
        vm.proc.wait(30)
        took = (time.perf_counter() - t0) * 1e3
        self.live.remove(vm)
        vm.kill()
        return took

    def restore(self, path: pathlib.Path) -> tuple[RawVm, float]:
        """Spawn with -incoming defer -> state loaded -> running -> agent answered HELLO; ms."""
        vm = self.spawn(incoming=True)
        vm.qmp = Qmp(connect_unix(vm.dir / "qmp.sock", vm.proc, 10))
        vm.agent = connect_unix(vm.dir / "agent.sock", vm.proc, 10)  # before the guest runs
        vm.qmp.execute("migrate-incoming", {"uri": f"exec:cat {path}"})
        vm.qmp.wait_migration()
        if vm.qmp.execute("query-status").get("status") != "running":
            vm.qmp.execute("cont")
        vm.send_hello(7)
        deadline = time.monotonic() + 30
        while not any(f.type == HELLO | REPLY and f.req == 7 for f in vm.frames(0.05)):
            if time.monotonic() > deadline:
                raise RuntimeError("restored agent did not answer HELLO")
        return vm, (time.perf_counter() - vm.t0) * 1e3

    def cleanup(self) -> None:
        for vm in self.live:
            vm.kill()
        self.live.clear()


# ---------------------------------------------------------------- our side


class Ours:
    def __init__(self, uvm: dict[str, Any]) -> None:
        self.uvm = uvm
        self.live: dict[str, aiohcs.System] = {}

    def document(self, restore_from: pathlib.Path | None = None) -> schema.ComputeSystem:
        doc = schema.linux_vm(
            str(self.uvm["kernel"]), initrd=str(self.uvm["initrd"]),
            cmdline=str(self.uvm["cmdline"]), memory_mb=MEMORY_MB, cpu_count=1,
        )  # fmt: skip
        assert doc.virtual_machine is not None
        doc.virtual_machine.stop_on_reset = True
        doc.virtual_machine.guest_connection = schema.GuestConnection()
        if restore_from is not None:
            doc.virtual_machine.restore_state = schema.RestoreState(
                save_state_file_path=str(restore_from)
            )
        return doc

    async def create_start(self, name: str, doc: schema.ComputeSystem) -> aiohcs.System:
        system = await aiohcs.create_system(name, doc)
        self.live[name] = system
        async with asyncio.timeout(BOOT_TIMEOUT):
            await system.start()
        return system

    @staticmethod
    async def true(system: aiohcs.System) -> None:
        process = await system.create_process({"CommandArgs": ["/bin/true"]})
        code = await asyncio.wait_for(process.wait(), 30)
        await process.close()
        if code != 0:
            raise RuntimeError(f"/bin/true exited {code}")

    async def forget(self, system: aiohcs.System) -> None:
        self.live.pop(system.id, None)
        await system.close()

    async def cleanup(self) -> None:
        for system in list(self.live.values()):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(15):
                    await system.terminate()
            with contextlib.suppress(Exception):
                await system.close()
        self.live.clear()


# ---------------------------------------------------------------- measuring


@dataclass
class Row:
    label: str
    ours_key: str
    raw_key: str
    unit: str = "ms"


ROWS = [
    Row("boot to first process: ours /bin/true exited vs raw init's 1st console line",
        "first_process", "console"),
    Row("boot to first process: ours /bin/true exited vs raw agent answered HELLO",
        "first_process", "hello"),
    Row("boot to guest connection: ours start() returned vs raw agent answered HELLO",
        "started", "hello"),
    Row("pause: pause() vs QMP stop", "pause", "pause"),
    Row("resume: resume() vs QMP cont", "resume", "resume"),
    Row("save paused VM to file, QEMU gone: save() vs QMP migrate+quit", "save", "save"),
    Row("save file size", "size", "size", "MiB"),
    Row("restore to guest connection: create+start() vs -incoming + agent HELLO",
        "restore", "restore"),
]  # fmt: skip


class Bench:
    def __init__(self, args: argparse.Namespace, ours: Ours, raw: Raw, base: pathlib.Path) -> None:
        self.args = args
        self.ours = ours
        self.raw = raw
        self.base = base
        self.tag = uuid.uuid4().hex[:6]
        self.seq = 0
        self.data: dict[str, dict[str, list[float]]] = {"ours": {}, "raw": {}}
        self.record = True

    def keep(self, side: str, key: str, value: float) -> None:
        if self.record:
            self.data[side].setdefault(key, []).append(value)

    def name(self) -> str:
        self.seq += 1
        return f"bench-vm-{self.tag}-{self.seq}"

    async def ours_round(self) -> None:
        keep = self.keep
        t0 = time.perf_counter()
        system = await self.ours.create_start(self.name(), self.ours.document())
        t1 = time.perf_counter()
        await Ours.true(system)
        t2 = time.perf_counter()
        keep("ours", "started", (t1 - t0) * 1e3)
        keep("ours", "first_process", (t2 - t0) * 1e3)
        for _ in range(self.args.cycles):
            t = time.perf_counter()
            await system.pause()
            keep("ours", "pause", (time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            await system.resume()
            keep("ours", "resume", (time.perf_counter() - t) * 1e3)
        await system.pause()
        path = self.base / f"{system.id}.state"
        options = schema.SaveOptions(
            save_type=schema.SaveType.ToFile, save_state_file_path=str(path)
        )
        t = time.perf_counter()
        await system.save(options)
        keep("ours", "save", (time.perf_counter() - t) * 1e3)
        keep("ours", "size", path.stat().st_size / MiB)
        async with asyncio.timeout(30):
            await system.wait()
        await self.ours.forget(system)
        try:
            t = time.perf_counter()
            restored = await self.ours.create_start(self.name(), self.ours.document(path))
            keep("ours", "restore", (time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            await Ours.true(restored)
            keep("ours", "restored_true", (time.perf_counter() - t) * 1e3)
            async with asyncio.timeout(30):
                await restored.terminate()
                await restored.wait()
            await self.ours.forget(restored)
        finally:
            path.unlink(missing_ok=True)

    def raw_round(self) -> None:
        keep = self.keep
        vm, console, hello = self.raw.boot()
        keep("raw", "console", console)
        keep("raw", "hello", hello)
        for _ in range(self.args.cycles):
            keep("raw", "pause", Raw.timed(vm, "stop"))
            keep("raw", "resume", Raw.timed(vm, "cont"))
        assert vm.qmp is not None
        vm.qmp.execute("stop")
        path = self.base / f"raw-{self.tag}-{self.seq}.state"
        self.seq += 1
        try:
            keep("raw", "save", self.raw.save(vm, path))
            keep("raw", "size", path.stat().st_size / MiB)
            restored, took = self.raw.restore(path)
            keep("raw", "restore", took)
            self.raw.live.remove(restored)
            restored.kill()
        finally:
            path.unlink(missing_ok=True)

    async def round(self, r: int) -> None:
        if r % 2 == 0:
            await self.ours_round()
            self.raw_round()
        else:
            self.raw_round()
            await self.ours_round()

    def table(self, markdown: bool) -> list[str]:
        head = ("metric", "n", "ours median", "ours min..max", "raw median", "raw min..max",
                "ours/raw")  # fmt: skip
        rows = []
        for row in ROWS:
            o, w = self.data["ours"][row.ours_key], self.data["raw"][row.raw_key]
            om, wm = statistics.median(o), statistics.median(w)
            rows.append((
                f"{row.label} [{row.unit}]", str(len(o)),
                f"{om:.1f}", f"{min(o):.1f}..{max(o):.1f}",
                f"{wm:.1f}", f"{min(w):.1f}..{max(w):.1f}", f"{om / wm:.2f}",
            ))  # fmt: skip
        if markdown:
            out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
            out += ["| " + " | ".join(cells) + " |" for cells in rows]
            return out
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
        fmt = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}"
                        for i, w in enumerate(widths))  # fmt: skip
        return [fmt.format(*head)] + [fmt.format(*cells) for cells in rows]


def qemu_version() -> str:
    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "?"


async def run(
    args: argparse.Namespace, service: Service, uvm: dict[str, Any], base: pathlib.Path
) -> None:
    ours, raw = Ours(uvm), Raw(uvm, base)
    bench = Bench(args, ours, raw, base)
    try:
        bench.record = False
        for w in range(args.warmup):  # accelerator probe, page cache, first spawn
            await bench.round(w)
            print(f"  warm-up {w + 1}/{args.warmup} done", flush=True)
        bench.record = True
        t0 = time.monotonic()
        for r in range(args.rounds):
            await bench.round(r)
            print(f"  round {r + 1}/{args.rounds} done ({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        await ours.cleanup()
        raw.cleanup()

    restored_true = statistics.median(bench.data["ours"]["restored_true"])
    print()
    print(
        f"{qemu_version()}; TCG; {os.cpu_count()} CPUs; {args.rounds} rounds (ours/raw "
        f"alternating, order flipped each round), {args.cycles} pause/resume cycles per round"
    )
    print(f"guest: {uvm['kernel']} + {uvm['initrd']}, {MEMORY_MB} MiB, 1 vCPU")
    print(f"cmdline: {uvm['cmdline']}")
    print(
        "raw init's 1st console line = 'aiohcs-agent: ready' on ttyS0 (the agent is PID 1; "
        "printed once its virtio-serial port is open)"
    )
    print(f"ours /bin/true in the restored VM: median {restored_true:.1f} ms more")
    print()
    for line in bench.table(args.markdown):
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first (1)")
    parser.add_argument("--cycles", type=int, default=5, help="pause/resume cycles per round (5)")
    parser.add_argument("--accel", choices=("tcg", "auto", "kvm"), default="tcg",
                        help="the service's accelerator (raw uses TCG; default tcg)")  # fmt: skip
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (host service)")
    if shutil.which(QEMU) is None:
        sys.exit(f"{QEMU} is not installed")
    paths = ensure()
    uvm = {"kernel": str(paths.kernel), "initrd": str(paths.initrd), "cmdline": boot_cmdline()}

    # SIGTERM takes the Ctrl-C path: asyncio.run cancels the main task, cleanup runs.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    # Short path: unix socket addresses are limited to 108 bytes.
    base = pathlib.Path(tempfile.mkdtemp(prefix="aiohcs-vmb-", dir="/tmp"))
    try:
        with private_service(base, "--accel", args.accel) as service:
            os.environ["AIOHCS_SOCKET"] = service.socket
            asyncio.run(run(args, service, uvm, base))
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
