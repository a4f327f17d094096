"""Which cgroup layout the host has, and what crun needs from it.

crun (1.8) supports cgroup v1 and v2, but on a *hybrid* host (v1 hierarchies
under a tmpfs at /sys/fs/cgroup plus a cgroup2 mount at
/sys/fs/cgroup/unified) it refuses every container while any controller is
attached to the v2 hierarchy: "cgroups in hybrid mode not supported, drop all
controllers from cgroupv2". A controller is attached to v2 exactly when it is
not bound to a v1 hierarchy (hierarchy 0 in /proc/cgroups) and has a v2 form;
typically `hugetlb`, which systemd leaves unmounted on v1.

The fix is to bind each such controller to a v1 hierarchy of its own
(`mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb`). The kernel only
allows that while no cgroup2 group enables the controller in its
cgroup.subtree_control. This changes the host's cgroup layout, so the service
never does it on its own: `--prepare-cgroups` (and `scripts/dev.sh setup`)
do it explicitly; otherwise the service explains and prints the commands.

`detect_cgroups` is pure (fed with the text of /proc/self/mountinfo,
/proc/cgroups and two cgroup2 files); `read_cgroup_layout` and
`prepare_cgroups_for_crun` do the I/O. `python -m aiohcs.host.container.cgroups
[--prepare]` reports (and with --prepare fixes) the layout.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# Controllers that exist on cgroup v2, by their /proc/cgroups (v1) name.
# cpuacct, devices, freezer, net_cls, net_prio, perf_event have no v2
# controller of that name (perf_event is implicit, never listed).
_V2_NAME = {
    "cpuset": "cpuset",
    "cpu": "cpu",
    "blkio": "io",
    "memory": "memory",
    "hugetlb": "hugetlb",
    "pids": "pids",
    "rdma": "rdma",
    "misc": "misc",
}
_V1_NAME = {v2: v1 for v1, v2 in _V2_NAME.items()}

Mode = Literal["unified", "hybrid", "legacy", "none"]


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1 : i + 4].isdigit() and len(path[i + 1 : i + 4]) == 3:
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class CgroupMount:
    mount_point: str
    fstype: str  # "cgroup" (v1) or "cgroup2"
    options: tuple[str, ...]  # super options, e.g. ("rw", "memory")


@dataclass(frozen=True)
class V1Mount:
    """One `mount -t cgroup -o <options> cgroup <mount_point>` to run."""

    options: str
    mount_point: str

    def command(self) -> str:
        p = shlex.quote(self.mount_point)
        return f"mkdir -p {p} && mount -t cgroup -o {self.options} cgroup {p}"


@dataclass(frozen=True)
class CgroupLayout:
    mode: Mode
    # Where the v1 hierarchies live (/sys/fs/cgroup) and the cgroup2 mount.
    root: str | None = None
    unified: str | None = None
    # v2 names of controllers attached to the v2 hierarchy of a hybrid host.
    on_v2: tuple[str, ...] = ()
    # Of those, the ones some cgroup2 group enables in cgroup.subtree_control:
    # the kernel refuses to bind them to v1 until they are disabled there.
    busy: tuple[str, ...] = ()
    # The mounts that would leave v2 without controllers.
    fix: tuple[V1Mount, ...] = field(default=())

    def crun_blocker(self) -> str | None:
        """Why crun cannot run containers here, or None if it can."""
        if self.mode != "hybrid" or not self.on_v2:
            return None
        text = (
            f"crun refuses hybrid cgroups (v1 hierarchies plus cgroup2 at {self.unified}) "
            f"while controllers are attached to cgroup v2 (attached: {' '.join(self.on_v2)}); "
        )
        if self.busy:
            return text + (
                f"{' '.join(self.busy)} is enabled in a cgroup.subtree_control under "
                f"{self.unified}, so it cannot be moved to cgroup v1 until disabled there; "
                "use runc"
            )
        return text + (
            "bind them to cgroup v1 hierarchies (run the service once with "
            f"--prepare-cgroups, or as root: {'; '.join(m.command() for m in self.fix)}) "
            "or use runc"
        )


def detect_cgroups(
    mountinfo: str,
    proc_cgroups: str,
    unified_controllers: str | None = None,
    unified_subtree_control: str | None = None,
) -> CgroupLayout:
    """Classify the cgroup layout from /proc/self/mountinfo and /proc/cgroups.

    `unified_controllers` / `unified_subtree_control` are the contents of
    cgroup.controllers / cgroup.subtree_control at the cgroup2 mount, when
    readable: the first is the kernel's own list of v2 controllers (used
    instead of deriving it from /proc/cgroups), the second tells which of them
    cannot be rebound to v1 right now.
    """
    by_point: dict[str, CgroupMount] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if len(fields) < sep + 4 or sep < 5:
            continue
        fstype = fields[sep + 1]
        point = _unescape(fields[4])
        if fstype in ("cgroup", "cgroup2"):
            by_point[point] = CgroupMount(point, fstype, tuple(fields[sep + 3].split(",")))
        else:
            by_point.pop(point, None)  # something else mounted over it
    v2 = [m for m in by_point.values() if m.fstype == "cgroup2"]
    v1 = [m for m in by_point.values() if m.fstype == "cgroup"]
    if not v2 and not v1:
        return CgroupLayout("none")
    if not v1:
        return CgroupLayout("unified", root=v2[0].mount_point, unified=v2[0].mount_point)
    root = os.path.dirname(v1[0].mount_point)
    if not v2:
        return CgroupLayout("legacy", root=root)
    unified = v2[0].mount_point

    unbound: list[str] = []  # enabled controllers on no v1 hierarchy (v1 names)
    for line in proc_cgroups.splitlines():
        parts = line.split()
        if len(parts) < 4 or line.startswith("#"):
            continue
        name, hierarchy, _count, enabled = parts[:4]
        if hierarchy == "0" and enabled == "1":
            unbound.append(name)
    if unified_controllers is not None:
        on_v2 = unified_controllers.split()
    else:
        on_v2 = [_V2_NAME[c] for c in unbound if c in _V2_NAME]
    enabled_below = set((unified_subtree_control or "").split())
    busy = [c for c in on_v2 if c in enabled_below]

    fix: list[V1Mount] = []
    for c in on_v2:
        v1_name = _V1_NAME.get(c, c)
        if v1_name == "cpu" and "cpuacct" in unbound:
            v1_name = "cpu,cpuacct"  # the usual pairing; cpuacct alone has no v2 form
        fix.append(V1Mount(v1_name, f"{root}/{v1_name}"))
    return CgroupLayout(
        "hybrid", root=root, unified=unified, on_v2=tuple(on_v2), busy=tuple(busy), fix=tuple(fix)
    )


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def read_cgroup_layout() -> CgroupLayout:
    """detect_cgroups on this host's files."""
    mountinfo = _read("/proc/self/mountinfo") or ""
    proc_cgroups = _read("/proc/cgroups") or ""
    layout = detect_cgroups(mountinfo, proc_cgroups)
    if layout.mode != "hybrid" or layout.unified is None:
        return layout
    return detect_cgroups(
        mountinfo,
        proc_cgroups,
        _read(Path(layout.unified, "cgroup.controllers")),
        _read(Path(layout.unified, "cgroup.subtree_control")),
    )


class CgroupPrepareError(RuntimeError):
    pass


def _mount_cgroup_v1(options: str, target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    os.makedirs(target, exist_ok=True)
    rc = libc.mount(b"cgroup", target.encode(), b"cgroup", ctypes.c_ulong(0), options.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise CgroupPrepareError(
            f"mount -t cgroup -o {options} cgroup {target}: {os.strerror(err)}"
        )


def prepare_cgroups_for_crun() -> list[str]:
    """Bind every controller left on cgroup v2 of a hybrid host to cgroup v1.

    Returns the commands that were carried out (empty when nothing was
    needed). Raises CgroupPrepareError when it cannot be done.
    """
    layout = read_cgroup_layout()
    if layout.crun_blocker() is None:
        return []
    if layout.busy:
        raise CgroupPrepareError(str(layout.crun_blocker()))
    done = []
    for m in layout.fix:
        _mount_cgroup_v1(m.options, m.mount_point)
        done.append(m.command())
    left = read_cgroup_layout().crun_blocker()
    if left is not None:
        raise CgroupPrepareError(f"still not usable by crun after {'; '.join(done)}: {left}")
    return done


def main(argv: list[str]) -> int:
    prepare = "--prepare" in argv
    layout = read_cgroup_layout()
    blocker = layout.crun_blocker()
    if blocker is None:
        print(f"cgroups: {layout.mode}; usable by crun")
        return 0
    if not prepare:
        print(f"cgroups: {layout.mode}; {blocker}")
        return 1
    try:
        for command in prepare_cgroups_for_crun():
            print(f"cgroups: {command}")
    except CgroupPrepareError as e:
        print(f"cgroups: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
