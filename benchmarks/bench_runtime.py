"""aiohcs (client -> libcomputecore -> host service -> runtime) vs the raw OCI runtime.

The same work done both ways on the same machine, interleaved per round
(and the order flipped every round) so that drift hits both sides alike:

1. start: ``create_system`` + ``start()`` vs ``runc create`` + ``runc start``;
   teardown: ``terminate()`` + ``close()`` vs ``runc kill KILL``, reap init, ``runc delete``;
2. exec: ``create_process(/bin/true)`` + ``wait()`` vs blocking ``runc exec <id> /bin/true``;
   echo: the same with 1 line read back through a stdout pipe;
3. stdout throughput of ``dd if=/dev/zero bs=64k`` read through ``Process.stdout``
   vs from the stdout pipe of a raw ``runc exec``;
4. memory: RSS of the host service and of this (client) process with N running
   containers, per container (raw runc keeps no process per container).

Both sides run the busybox rootfs in place (``Storage.Path``, no overlay) with
the *same* config.json: the raw bundle is built by the service's own
translation, ``aiohcs.host.container.oci.container_bundle`` (init = aiohcs-init).

    python benchmarks/bench_runtime.py                      # runc, defaults
    python benchmarks/bench_runtime.py --runtime crun --rounds 5 --markdown

Needs root. Starts a private host service on a temporary socket and state
directory; removes every container, directory and mount it made, also on
Ctrl-C / SIGTERM / errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import pathlib
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
from _service import Service, private_service  # noqa: E402

import aiohcs  # noqa: E402
from aiohcs.host.container import oci  # noqa: E402
from aiohcs.host.documents import ContainerSettings  # noqa: E402

DEFAULT_ROOTFS = "/var/lib/aiohcs/rootfs/busybox"
INIT_PATH = ROOT / "aiohcs" / "_native" / "build" / "aiohcs-init"
READ_SIZE = 65536  # both sides read stdout in 64 KiB chunks (aiohcs' default)
PR_SET_CHILD_SUBREAPER = 36
MiB = 1024 * 1024


# ---------------------------------------------------------------- helpers


def proc_status_kib(pid: int | str, key: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM) of /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def become_subreaper() -> None:
    """Orphaned container inits (raw side) re-parent to us, so we can reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap(pid: int, timeout: float) -> bool:
    """Wait for our child ``pid`` (pidfd, no polling); True once reaped or not ours."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = -1
    try:
        if pidfd >= 0 and not select.select([pidfd], [], [], timeout)[0]:
            return False
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    return True


def unmount_under(base: pathlib.Path) -> None:
    """Lazily unmount anything still mounted below ``base`` (deepest first)."""
    prefix = str(base) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, stderr=subprocess.DEVNULL)


def runtime_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "?"


# ---------------------------------------------------------------- our side


class Ours:
    """aiohcs systems; every open handle is tracked so cleanup can close it."""

    def __init__(self, rootfs: str) -> None:
        self.config = {
            "SchemaVersion": {"Major": 2, "Minor": 1},
            "Container": {"Storage": {"Path": rootfs}},
            "ShouldTerminateOnLastHandleClosed": True,
        }
        self.live: dict[str, aiohcs.System] = {}

    async def start(self, name: str) -> aiohcs.System:
        system = await aiohcs.create_system(name, self.config)
        self.live[name] = system
        await system.start()
        return system

    async def teardown(self, system: aiohcs.System) -> None:
        await system.terminate()
        await system.close()
        self.live.pop(system.id, None)

    async def cleanup(self) -> None:
        for system in list(self.live.values()):
            with contextlib.suppress(Exception):
                await system.terminate()
            with contextlib.suppress(Exception):
                await system.close()
        self.live.clear()

    @staticmethod
    async def exec_true(system: aiohcs.System) -> None:
        process = await system.create_process({"CommandArgs": ["/bin/true"]})
        code = await process.wait()
        await process.close()
        if code != 0:
            raise RuntimeError(f"/bin/true exited {code}")

    @staticmethod
    async def exec_echo(system: aiohcs.System) -> None:
        process = await system.create_process(
            {"CommandArgs": ["/bin/echo", "hello"], "CreateStdOutPipe": True}
        )
        assert process.stdout is not None
        out = await process.stdout.read_all()
        code = await process.wait()
        await process.close()
        if out != b"hello\n" or code != 0:
            raise RuntimeError(f"echo: {out!r}, exit {code}")

    @staticmethod
    async def stream(system: aiohcs.System, argv: list[str]) -> tuple[int, float, float, float]:
        """(bytes, t_start, t_first_byte_read, t_eof) of ``argv``'s stdout."""
        t0 = time.perf_counter()
        process = await system.create_process({"CommandArgs": argv, "CreateStdOutPipe": True})
        assert process.stdout is not None
        total, first_len, t_first = 0, 0, 0.0
        while True:
            try:
                chunk = await process.stdout.receive(READ_SIZE)
            except anyio.EndOfStream:
                break
            if not total:
                t_first, first_len = time.perf_counter(), len(chunk)
            total += len(chunk)
        t_end = time.perf_counter()
        code = await process.wait()
        await process.close()
        if code != 0:
            raise RuntimeError(f"{argv} exited {code}")
        return total - first_len, t0, t_first, t_end


# ---------------------------------------------------------------- raw side


class Raw:
    """The OCI runtime driven directly with blocking subprocesses."""

    def __init__(self, runtime: str, base: pathlib.Path, rootfs: str) -> None:
        self.runtime = runtime
        self.base = base
        self.root = base / "runtime"
        self.root.mkdir(parents=True)
        self.settings = ContainerSettings.model_validate({"Storage": {"Path": rootfs}})
        self.live: dict[str, int] = {}  # container id -> init pid (our child, we reap it)

    def argv(self, *args: str) -> list[str]:
        return [self.runtime, "--root", str(self.root), *args]

    def _run(
        self, *args: str, stdout: int = subprocess.DEVNULL
    ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            start_new_session=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{args[0]} exited {done.returncode}: {done.stderr.decode().strip()}"
            )
        return done

    def write_bundle(self, cid: str) -> pathlib.Path:
        bundle = self.base / "bundles" / cid
        plan = oci.container_bundle(
            cid,
            self.settings,
            bundle_dir=str(bundle),
            scratch_dir=str(bundle / "scratch"),
            init_host_path=str(INIT_PATH),
        )
        bundle.mkdir(parents=True, mode=0o700)
        (bundle / "config.json").write_text(json.dumps(plan.config, indent=1))
        return bundle

    def start(self, cid: str) -> None:
        bundle = self.write_bundle(cid)
        pid_file = bundle / "init.pid"
        self.live[cid] = -1
        # The init inherits create's stdio (as the service does it: a console log
        # file); a pipe here would never see EOF.
        console = bundle / "console.log"
        with open(console, "wb") as log:
            done = subprocess.run(
                self.argv("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                check=False,
            )
        if done.returncode != 0:
            text = console.read_text(errors="replace").strip()
            raise RuntimeError(f"create exited {done.returncode}: {text}")
        self.live[cid] = int(pid_file.read_text())
        self._run("start", cid)

    def teardown(self, cid: str) -> None:
        self._run("kill", cid, "KILL")
        if not reap(self.live[cid], 10):
            raise RuntimeError(f"init of {cid} did not exit after SIGKILL")
        self._run("delete", cid)
        del self.live[cid]
        shutil.rmtree(self.base / "bundles" / cid)

    def exec_true(self, cid: str) -> None:
        self._run("exec", cid, "/bin/true")

    def exec_echo(self, cid: str) -> None:
        out = self._run("exec", cid, "/bin/echo", "hello", stdout=subprocess.PIPE).stdout
        if out != b"hello\n":
            raise RuntimeError(f"echo: {out!r}")

    def stream(self, cid: str, argv: list[str]) -> tuple[int, float, float, float]:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            self.argv("exec", cid, *argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            bufsize=0,
        )
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        total, first_len, t_first = 0, 0, 0.0
        while chunk := os.read(fd, READ_SIZE):
            if not total:
                t_first, first_len = time.perf_counter(), len(chunk)
            total += len(chunk)
        t_end = time.perf_counter()
        proc.stdout.close()
        if proc.wait() != 0:
            raise RuntimeError(f"runc exec {argv} exited {proc.returncode}")
        return total - first_len, t0, t_first, t_end

    def cleanup(self) -> None:
        """Delete every container under our --root (also half-created ones); reap inits."""
        names = set(self.live)
        listed = subprocess.run(
            self.argv("list", "--format", "json"), capture_output=True, check=False
        )
        with contextlib.suppress(ValueError):
            for entry in json.loads(listed.stdout or b"null") or []:
                names.add(str(entry.get("id")))
        for cid in names:
            subprocess.run(
                self.argv("delete", "--force", cid),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                check=False,
            )
            pid = self.live.get(cid, -1)
            if pid > 0:
                reap(pid, 5)
        self.live.clear()


# ---------------------------------------------------------------- measuring


@dataclass
class Metric:
    label: str
    unit: str
    higher_is_better: bool = False
    ours: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace, ours: Ours, raw: Raw) -> None:
        self.args = args
        self.ours = ours
        self.raw = raw
        self.tag = uuid.uuid4().hex[:6]
        self.seq = 0
        self.metrics = {
            "start": Metric("container start (create+start)", "ms"),
            "teardown": Metric("teardown (terminate+close vs kill+delete)", "ms"),
            "true": Metric("process round trip /bin/true", "ms"),
            "echo": Metric("process round trip echo, 1 line via pipe", "ms"),
            "mibs": Metric(f"stdout {args.mib} MiB, first byte->EOF", "MiB/s", True),
            "mibs_total": Metric(f"stdout {args.mib} MiB, incl. exec+exit", "MiB/s", True),
        }

    def name(self, side: str) -> str:
        self.seq += 1
        return f"bench-{side}-{self.tag}-{self.seq}"

    async def pair(
        self,
        ours_first: bool,
        ours: Callable[[], Awaitable[None]],
        raw: Callable[[], None],
    ) -> None:
        if ours_first:
            await ours()
            raw()
        else:
            raw()
            await ours()

    async def round(
        self, r: int, ours_sys: aiohcs.System, raw_cid: str, record: bool = True
    ) -> None:
        m = self.metrics

        def keep(key: str, side: str, value: float) -> None:
            if record:
                getattr(m[key], side).append(value)

        async def ours_lifecycle() -> None:
            t0 = time.perf_counter()
            system = await self.ours.start(self.name("ours"))
            t1 = time.perf_counter()
            await self.ours.teardown(system)
            t2 = time.perf_counter()
            keep("start", "ours", (t1 - t0) * 1e3)
            keep("teardown", "ours", (t2 - t1) * 1e3)

        def raw_lifecycle() -> None:
            cid = self.name("raw")
            t0 = time.perf_counter()
            self.raw.start(cid)
            t1 = time.perf_counter()
            self.raw.teardown(cid)
            t2 = time.perf_counter()
            keep("start", "raw", (t1 - t0) * 1e3)
            keep("teardown", "raw", (t2 - t1) * 1e3)

        def timed_ours(
            key: str, op: Callable[[], Awaitable[None]]
        ) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                t0 = time.perf_counter()
                await op()
                keep(key, "ours", (time.perf_counter() - t0) * 1e3)

            return run

        def timed_raw(key: str, op: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                t0 = time.perf_counter()
                op()
                keep(key, "raw", (time.perf_counter() - t0) * 1e3)

            return run

        first = r % 2 == 0  # flip the order every round
        for i in range(self.args.starts):
            await self.pair(first ^ bool(i % 2), ours_lifecycle, raw_lifecycle)
        for i in range(self.args.iterations):
            await self.pair(
                first ^ bool(i % 2),
                timed_ours("true", lambda: Ours.exec_true(ours_sys)),
                timed_raw("true", lambda: self.raw.exec_true(raw_cid)),
            )
        for i in range(self.args.iterations):
            await self.pair(
                first ^ bool(i % 2),
                timed_ours("echo", lambda: Ours.exec_echo(ours_sys)),
                timed_raw("echo", lambda: self.raw.exec_echo(raw_cid)),
            )

        count = self.args.mib * MiB // 65536
        dd = ["/bin/dd", "if=/dev/zero", "bs=64k", f"count={count}"]

        def rates(side: str, result: tuple[int, float, float, float]) -> None:
            counted, t0, t_first, t_end = result
            keep("mibs", side, counted / MiB / (t_end - t_first))
            keep("mibs_total", side, self.args.mib / (t_end - t0))

        async def ours_dd() -> None:
            rates("ours", await Ours.stream(ours_sys, dd))

        def raw_dd() -> None:
            rates("raw", self.raw.stream(raw_cid, dd))

        await self.pair(first, ours_dd, raw_dd)

    async def memory(self, service_pid: int) -> list[str]:
        """Service / client RSS and MemAvailable with N running containers each way."""
        n = self.args.containers
        lines = []
        # ours
        svc_before = proc_status_kib(service_pid, "VmRSS")
        cli_before = proc_status_kib("self", "VmRSS")
        systems = [await self.ours.start(self.name("ours")) for _ in range(n)]
        await asyncio.sleep(0.5)
        svc_after = proc_status_kib(service_pid, "VmRSS")
        svc_hwm = proc_status_kib(service_pid, "VmHWM")
        cli_after = proc_status_kib("self", "VmRSS")
        for system in systems:
            await self.ours.teardown(system)
        # raw
        cids = [self.name("raw") for _ in range(n)]
        for cid in cids:
            self.raw.start(cid)
        await asyncio.sleep(0.5)
        init_rss = sum(proc_status_kib(self.raw.live[cid], "VmRSS") for cid in cids)
        for cid in cids:
            self.raw.teardown(cid)

        lines.append(f"memory with {n} running containers (busybox, idle aiohcs-init as PID 1):")
        lines.append(
            f"  host service VmRSS {svc_before / 1024:.1f} -> {svc_after / 1024:.1f} MiB "
            f"(VmHWM {svc_hwm / 1024:.1f} MiB): "
            f"{(svc_after - svc_before) / n:.0f} KiB per container"
        )
        lines.append(
            f"  client (this process) VmRSS {cli_before / 1024:.1f} -> {cli_after / 1024:.1f} MiB: "
            f"{(cli_after - cli_before) / n:.0f} KiB per container"
        )
        lines.append(
            f"  raw {pathlib.Path(self.raw.runtime).name}: no resident process per container "
            "(create/start exit; only the container's own init stays)"
        )
        lines.append(
            f"  the container's init itself (both sides alike): VmRSS {init_rss / n:.0f} KiB "
            "per container"
        )
        return lines

    def table(self, markdown: bool) -> list[str]:
        rows = []
        for m in self.metrics.values():
            om, op = statistics.median(m.ours), pct(m.ours, 0.9)
            rm, rp = statistics.median(m.raw), pct(m.raw, 0.9)
            if m.higher_is_better:  # p90 of a rate: the slow tail, i.e. the 10th percentile
                op, rp = pct(m.ours, 0.1), pct(m.raw, 0.1)
            rows.append((f"{m.label} [{m.unit}]", len(m.ours), om, op, rm, rp, om / rm))
        head = ("metric", "n", "ours median", "ours p90", "raw median", "raw p90", "ours/raw")
        out = []
        if markdown:
            out.append("| " + " | ".join(head) + " |")
            out.append("|---|" + "---:|" * (len(head) - 1))
            for label, n, *vals, ratio in rows:
                cells = [label, str(n), *(f"{v:.1f}" for v in vals), f"{ratio:.2f}"]
                out.append("| " + " | ".join(cells) + " |")
        else:
            out.append(f"{head[0]:<52}{head[1]:>5}" + "".join(f"{h:>13}" for h in head[2:]))
            for label, n, *vals, ratio in rows:
                out.append(
                    f"{label:<52}{n:>5}" + "".join(f"{v:>13.1f}" for v in vals) + f"{ratio:>13.2f}"
                )
        return out


async def run(args: argparse.Namespace, service: Service, raw: Raw, rootfs: str) -> None:
    ours = Ours(rootfs)
    bench = Bench(args, ours, raw)
    raw_cid = bench.name("raw")
    try:
        ours_sys = await ours.start(bench.name("ours"))
        raw.start(raw_cid)
        await bench.round(0, ours_sys, raw_cid, record=False)  # warm-up: caches, first exec
        t0 = time.monotonic()
        for r in range(args.rounds):
            await bench.round(r, ours_sys, raw_cid)
            print(f"  round {r + 1}/{args.rounds} done ({time.monotonic() - t0:.0f} s)", flush=True)
        await ours.teardown(ours_sys)
        raw.teardown(raw_cid)
        memory = await bench.memory(service.pid)
    finally:
        await ours.cleanup()
        raw.cleanup()

    runtime = runtime_version(raw.runtime)
    print()
    print(
        f"{runtime}; {os.cpu_count()} CPUs; rounds {args.rounds} (ours/raw interleaved, order "
        f"flipped each round); per round {args.starts} start/teardown, {args.iterations} of "
        f"each round trip, 1 x {args.mib} MiB"
    )
    print(
        "config.json: identical on both sides, built by the service's own translation "
        "aiohcs.host.container.oci.container_bundle (rootfs used in place, PID 1 aiohcs-init)"
    )
    print(
        "ours round trips include Process.close(); raw exec is a blocking `runc exec` "
        "(no --detach); p90 of a rate = 10th percentile (the slow tail)"
    )
    print()
    for line in bench.table(args.markdown):
        print(line)
    print()
    for line in memory:
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("runc", "crun"), default="runc")
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds (after 1 warm-up)")
    parser.add_argument("--starts", type=int, default=3, help="start/teardown pairs per round")
    parser.add_argument(
        "--iterations", type=int, default=20, help="round trips of each kind per round"
    )
    parser.add_argument(
        "--mib", type=int, default=256, help="MiB streamed through stdout per round"
    )
    parser.add_argument("--containers", type=int, default=20, help="running containers for memory")
    parser.add_argument(
        "--rootfs", default=DEFAULT_ROOTFS, help="busybox rootfs (built if missing)"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (containers)")
    runtime = shutil.which(args.runtime)
    if runtime is None:
        sys.exit(f"{args.runtime} is not installed")
    if not INIT_PATH.exists():
        subprocess.run(["make", "-s", "-C", str(ROOT / "aiohcs" / "_native")], check=True)

    # SIGTERM takes the Ctrl-C path: asyncio.run cancels the main task, cleanup runs.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    become_subreaper()
    base = pathlib.Path(tempfile.mkdtemp(prefix="aiohcs-rt-", dir="/tmp"))
    try:
        rootfs = args.rootfs
        if not os.path.isdir(os.path.join(rootfs, "bin")):
            rootfs = str(base / "rootfs")
            subprocess.run(
                ["sh", str(ROOT / "scripts" / "build-rootfs.sh"), rootfs],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        with private_service(base, "--runtime", args.runtime) as service:
            os.environ["AIOHCS_SOCKET"] = service.socket
            raw = Raw(runtime, base, rootfs)
            try:
                asyncio.run(run(args, service, raw, rootfs))
            finally:
                raw.cleanup()  # again, in case asyncio.run was interrupted before its own
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
    finally:
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        with contextlib.suppress(ChildProcessError):  # anything orphaned onto us
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass


if __name__ == "__main__":
    main()
