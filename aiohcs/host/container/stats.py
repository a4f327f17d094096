"""Properties read from /proc and the container's cgroup v1 files.

Pure readers over paths; missing files give zeros rather than errors, because a
container can exit between listing and reading.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cgroup_paths(pid: int, mount_root: str = "/sys/fs/cgroup") -> dict[str, Path]:
    """controller -> directory of `pid`'s cgroup, from /proc/<pid>/cgroup (v1)."""
    out: dict[str, Path] = {}
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(","):
            if c:
                out[c.removeprefix("name=")] = Path(mount_root, c, path.lstrip("/"))
    return out


def _int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
    except OSError:
        pass
    return out


def pids_in(cgroups: dict[str, Path]) -> list[int]:
    for controller in ("pids", "memory", "cpuacct", "freezer"):
        d = cgroups.get(controller)
        if d is None:
            continue
        try:
            return sorted(int(p) for p in (d / "cgroup.procs").read_text().split())
        except (OSError, ValueError):
            continue
    return []


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _boot_time() -> float:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return time.time() - time.monotonic()


def process_details(host_pid: int, boot_time: float | None = None) -> dict[str, Any] | None:
    """ProcessDetails of one process, with its pid as seen inside its container."""
    try:
        stat = Path(f"/proc/{host_pid}/stat").read_text()
        status = Path(f"/proc/{host_pid}/status").read_text()
    except OSError:
        return None
    # comm may contain spaces and parens: split after the last ')'.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, starttime = int(fields[11]), int(fields[12]), int(fields[19])
    ns_pid = host_pid
    rss_anon = 0
    vm_data = 0
    rss_shared = 0
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "NSpid":
            ns_pid = int(value.split()[-1])
        elif key == "RssAnon":
            rss_anon = int(value.split()[0]) * 1024
        elif key == "RssFile" or key == "RssShmem":
            rss_shared += int(value.split()[0]) * 1024
        elif key == "VmData":
            vm_data = int(value.split()[0]) * 1024
    bt = boot_time if boot_time is not None else _boot_time()
    return {
        "ProcessId": ns_pid,
        "ImageName": comm,
        "CreateTimestamp": rfc3339(bt + starttime / CLK_TCK),
        "UserTime100ns": utime * 10_000_000 // CLK_TCK,
        "KernelTime100ns": stime * 10_000_000 // CLK_TCK,
        "MemoryCommitBytes": vm_data,
        "MemoryWorkingSetPrivateBytes": rss_anon,
        "MemoryWorkingSetSharedBytes": rss_shared,
    }


def process_list(init_pid: int) -> list[dict[str, Any]]:
    bt = _boot_time()
    details = (process_details(p, bt) for p in pids_in(cgroup_paths(init_pid)))
    return sorted((d for d in details if d is not None), key=lambda d: int(d["ProcessId"]))


def statistics(init_pid: int, start_time: float) -> dict[str, Any]:
    """The Statistics property, from the cpuacct and memory cgroups of init."""
    cg = cgroup_paths(init_pid)
    now = time.time()
    cpuacct = cg.get("cpuacct", Path("/nonexistent"))
    memory = cg.get("memory", Path("/nonexistent"))
    mstat = _kv(memory / "memory.stat")
    return {
        "Timestamp": rfc3339(now),
        "ContainerStartTime": rfc3339(start_time),
        "Uptime100ns": max(0, int((now - start_time) * 10_000_000)),
        "Processor": {
            # cpuacct counters are nanoseconds; HCS wants 100 ns units.
            "TotalRuntime100ns": _int(cpuacct / "cpuacct.usage") // 100,
            "RuntimeUser100ns": _int(cpuacct / "cpuacct.usage_user") // 100,
            "RuntimeKernel100ns": _int(cpuacct / "cpuacct.usage_sys") // 100,
        },
        "Memory": {
            "MemoryUsageCommitBytes": _int(memory / "memory.usage_in_bytes"),
            "MemoryUsageCommitPeakBytes": _int(memory / "memory.max_usage_in_bytes"),
            "MemoryUsagePrivateWorkingSetBytes": mstat.get("total_rss", mstat.get("rss", 0)),
        },
    }
