"""Callback bridge vs blocking waits in threads, side by side.

N concurrent ``HcsGetComputeSystemProperties`` calls on one running container:

* bridge:  ``await system.properties()``: completion callback ->
  ``call_soon_threadsafe`` -> future (no thread per call);
* threads: the same call made with ``HcsCreateOperation(NULL, NULL)`` and a
  blocking ``HcsWaitForOperationResult`` inside ``asyncio.to_thread`` (bounded
  by the default executor's worker count).

Prints throughput and p50/p99 latency for both and the ratio.

    python benchmarks/bench_bridge.py -n 500 --rounds 5

Uses the service at $AIOHCS_SOCKET if it answers; otherwise (as root) builds
the native library and a busybox rootfs and starts a private host service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import _service  # noqa: E402

import aiohcs  # noqa: E402
from aiohcs import _bridge  # noqa: E402
from aiohcs._ffi import INFINITE, ffi, get_lib  # noqa: E402


@contextlib.contextmanager
def private_service() -> Iterator[tuple[str, str]]:
    """(socket, rootfs) of a host service started for this run."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "aiohcs" / "_native")], check=True)
    base = pathlib.Path(tempfile.mkdtemp(prefix="aiohcs-b-", dir="/tmp"))
    try:
        rootfs = base / "rootfs"
        subprocess.run(["sh", str(ROOT / "scripts" / "build-rootfs.sh"), str(rootfs)], check=True)
        with _service.private_service(base) as service:
            yield service.socket, str(rootfs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def blocking_properties(raw_system: Any) -> str | None:
    """One GetProperties the synchronous way (runs in a worker thread)."""
    lib = get_lib()
    op = lib.HcsCreateOperation(ffi.NULL, ffi.NULL)
    try:
        result = lib.HcsGetComputeSystemProperties(raw_system, op, ffi.NULL)
        doc = ffi.new("PWSTR *")
        if result >= 0:
            result = lib.HcsWaitForOperationResult(op, INFINITE, doc)
        text = None if doc[0] == ffi.NULL else ffi.string(doc[0])
        if doc[0] != ffi.NULL:
            lib.LocalFree(doc[0])
        if result < 0:
            raise RuntimeError(f"HRESULT 0x{result & 0xFFFFFFFF:08X}")
        return text
    finally:
        lib.HcsCloseOperation(op)


async def measure(n: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, list[float]]:
    """(wall seconds, per-call latencies) for n concurrent calls."""
    latencies: list[float] = []

    async def timed() -> None:
        start = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(timed() for _ in range(n)))
    return time.perf_counter() - start, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(n: int, rounds: int, rootfs: str) -> None:
    config = {
        "SchemaVersion": {"Major": 2, "Minor": 1},
        "Container": {"Storage": {"Layers": [{"Path": rootfs}]}},
        "ShouldTerminateOnLastHandleClosed": True,
    }
    async with await aiohcs.create_system(f"bench-{uuid.uuid4().hex[:8]}", config) as system:
        await system.start()
        raw = system._handle.raw
        await measure(min(n, 50), system.properties)  # warm up both paths
        await measure(min(n, 50), lambda: asyncio.to_thread(blocking_properties, raw))
        results: dict[str, tuple[list[float], list[float]]] = {
            "bridge": ([], []),
            "threads": ([], []),
        }
        for _ in range(rounds):
            wall, lat = await measure(n, system.properties)
            results["bridge"][0].append(n / wall)
            results["bridge"][1].extend(lat)
            wall, lat = await measure(n, lambda: asyncio.to_thread(blocking_properties, raw))
            results["threads"][0].append(n / wall)
            results["threads"][1].extend(lat)
        await system.terminate()
    assert _bridge.pending_operations() == 0

    workers = min(32, (os.cpu_count() or 1) + 4)
    print(
        f"{n} concurrent HcsGetComputeSystemProperties x {rounds} rounds "
        f"(to_thread pool: {workers} workers)"
    )
    print(f"{'path':<8} {'calls/s (median)':>17} {'p50 ms':>8} {'p99 ms':>8}")
    summary = {}
    for name, (rates, lats) in results.items():
        rate = statistics.median(rates)
        p50, p99 = pct(lats, 0.50) * 1e3, pct(lats, 0.99) * 1e3
        summary[name] = (rate, p50, p99)
        print(f"{name:<8} {rate:>17.0f} {p50:>8.2f} {p99:>8.2f}")
    b, t = summary["bridge"], summary["threads"]
    print(
        f"ratio bridge/threads: throughput x{b[0] / t[0]:.2f}, "
        f"p50 x{b[1] / t[1]:.2f}, p99 x{b[2] / t[2]:.2f} (latency: lower is better)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--concurrency", type=int, default=200, help="concurrent calls")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per path")
    args = parser.parse_args()
    sock = os.environ.get("AIOHCS_SOCKET")
    rootfs = os.environ.get("AIOHCS_TEST_ROOTFS")
    if sock and rootfs and _service.answers(sock):
        asyncio.run(run(args.concurrency, args.rounds, rootfs))
        return
    with private_service() as (sock, rootfs):
        os.environ["AIOHCS_SOCKET"] = sock
        asyncio.run(run(args.concurrency, args.rounds, rootfs))


if __name__ == "__main__":
    main()
