"""Pure: cgroup layout detection and what crun needs (no host state read or changed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import aiohcs.host.__main__ as host_main
from aiohcs.host.container import runtime
from aiohcs.host.container.cgroups import (
    CgroupLayout,
    CgroupPrepareError,
    V1Mount,
    detect_cgroups,
)

# A hybrid host as systemd (or a VM image) sets it up: v1 hierarchies under a tmpfs,
# cgroup2 at /sys/fs/cgroup/unified, hugetlb bound to no v1 hierarchy.
HYBRID_MOUNTINFO = """\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

HYBRID_PROC_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t3\t1
cpu\t1\t3\t1
cpuacct\t2\t3\t1
blkio\t7\t3\t1
memory\t4\t50\t1
devices\t5\t3\t1
freezer\t6\t3\t1
net_cls\t0\t3\t1
perf_event\t0\t3\t1
net_prio\t0\t3\t1
hugetlb\t0\t3\t1
pids\t8\t3\t1
"""

HUGETLB_MOUNTED_MOUNTINFO = (
    HYBRID_MOUNTINFO
    + "116 31 0:39 / /sys/fs/cgroup/hugetlb rw,relatime - cgroup cgroup rw,hugetlb\n"
)
HUGETLB_MOUNTED_PROC_CGROUPS = HYBRID_PROC_CGROUPS.replace("hugetlb\t0\t", "hugetlb\t10\t")

UNIFIED_MOUNTINFO = """\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""
UNIFIED_PROC_CGROUPS = "".join(
    f"{name}\t0\t120\t1\n"
    for name in ("cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "hugetlb")
)


def test_hybrid_with_hugetlb_on_v2_blocks_crun() -> None:
    layout = detect_cgroups(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUPS)
    assert layout.mode == "hybrid"
    assert (layout.root, layout.unified) == ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
    # net_cls/net_prio are v1-only, perf_event is implicit on v2: only hugetlb is attached
    assert layout.on_v2 == ("hugetlb",)
    assert layout.busy == ()
    assert layout.fix == (V1Mount("hugetlb", "/sys/fs/cgroup/hugetlb"),)
    blocker = layout.crun_blocker()
    assert blocker is not None
    assert "attached: hugetlb" in blocker
    assert "--prepare-cgroups" in blocker
    assert (
        "mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup "
        "/sys/fs/cgroup/hugetlb" in blocker
    )


def test_kernel_list_of_v2_controllers_wins() -> None:
    layout = detect_cgroups(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUPS, "hugetlb misc\n", "")
    assert layout.on_v2 == ("hugetlb", "misc")
    assert [m.mount_point for m in layout.fix] == ["/sys/fs/cgroup/hugetlb", "/sys/fs/cgroup/misc"]
    empty = detect_cgroups(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUPS, "\n", "\n")
    assert empty.mode == "hybrid" and empty.crun_blocker() is None


def test_enabled_in_subtree_control_cannot_be_moved() -> None:
    layout = detect_cgroups(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUPS, "hugetlb\n", "hugetlb\n")
    assert layout.busy == ("hugetlb",)
    blocker = layout.crun_blocker()
    assert blocker is not None
    assert "cgroup.subtree_control" in blocker and "use runc" in blocker
    assert "--prepare-cgroups" not in blocker


def test_hybrid_after_binding_hugetlb_is_fine() -> None:
    layout = detect_cgroups(HUGETLB_MOUNTED_MOUNTINFO, HUGETLB_MOUNTED_PROC_CGROUPS)
    assert layout.mode == "hybrid"
    assert layout.on_v2 == () and layout.fix == ()
    assert layout.crun_blocker() is None


def test_unbound_cpu_and_blkio_map_to_their_v1_names() -> None:
    cgroups = (
        HYBRID_PROC_CGROUPS.replace("cpu\t1\t", "cpu\t0\t")
        .replace("cpuacct\t2\t", "cpuacct\t0\t")
        .replace("blkio\t7\t", "blkio\t0\t")
    )
    layout = detect_cgroups(HYBRID_MOUNTINFO, cgroups)
    assert set(layout.on_v2) == {"cpu", "io", "hugetlb"}
    assert {m.options for m in layout.fix} == {"cpu,cpuacct", "blkio", "hugetlb"}


def test_pure_v2_and_pure_v1_are_fine_for_crun() -> None:
    unified = detect_cgroups(UNIFIED_MOUNTINFO, UNIFIED_PROC_CGROUPS)
    assert unified.mode == "unified" and unified.unified == "/sys/fs/cgroup"
    assert unified.crun_blocker() is None
    legacy_info = "".join(
        line + "\n" for line in HYBRID_MOUNTINFO.splitlines() if "cgroup2" not in line
    )
    legacy = detect_cgroups(legacy_info, HYBRID_PROC_CGROUPS)
    assert legacy.mode == "legacy" and legacy.crun_blocker() is None
    assert detect_cgroups("", "").mode == "none"


def test_mount_over_and_escaped_paths() -> None:
    # a later mount on the same point hides the cgroup2 mount: not hybrid any more
    hidden = HYBRID_MOUNTINFO + "99 41 0:50 / /sys/fs/cgroup/unified rw - tmpfs tmpfs rw\n"
    assert detect_cgroups(hidden, HYBRID_PROC_CGROUPS).mode == "legacy"
    odd = HYBRID_MOUNTINFO.replace("/sys/fs/cgroup", "/my\\040cgroups")
    layout = detect_cgroups(odd, HYBRID_PROC_CGROUPS)
    assert layout.unified == "/my cgroups/unified"
    assert layout.fix[0].command() == (
        "mkdir -p '/my cgroups/hugetlb' && mount -t cgroup -o hugetlb cgroup '/my cgroups/hugetlb'"
    )


@pytest.mark.skipif(shutil.which("crun") is None, reason="crun is not installed")
def test_choose_runtime_refuses_crun_with_the_fix() -> None:
    blocked = detect_cgroups(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUPS)
    with pytest.raises(runtime.RuntimeUnavailable) as info:
        runtime.choose_runtime("crun", blocked)
    assert "--runtime crun" in str(info.value)
    assert "mount -t cgroup -o hugetlb" in str(info.value)
    fine = detect_cgroups(HUGETLB_MOUNTED_MOUNTINFO, HUGETLB_MOUNTED_PROC_CGROUPS)
    assert runtime.choose_runtime("crun", fine)[0] == "crun"
    assert runtime.choose_runtime("crun", CgroupLayout("unified"))[0] == "crun"


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_auto_prefers_runc_whatever_the_layout() -> None:
    blocked = detect_cgroups(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUPS)
    assert runtime.choose_runtime("auto", blocked)[0] == "runc"
    assert runtime.choose_runtime("runc", blocked)[0] == "runc"
    with pytest.raises(runtime.RuntimeUnavailable):
        runtime.choose_runtime("docker", blocked)


needs_root_and_crun = pytest.mark.skipif(
    shutil.which("crun") is None or os.geteuid() != 0, reason="needs root and crun"
)


@needs_root_and_crun
def test_service_refuses_crun_and_prints_the_command(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    blocked = detect_cgroups(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUPS)
    monkeypatch.setattr(runtime, "read_cgroup_layout", lambda: blocked)
    prepared: list[bool] = []

    def fake_prepare() -> list[str]:
        prepared.append(True)
        return []

    monkeypatch.setattr(host_main, "prepare_cgroups_for_crun", fake_prepare)
    args = ["--socket", str(tmp_path / "s"), "--state-dir", str(tmp_path / "st")]
    assert host_main.main([*args, "--runtime", "crun"]) == 1
    assert prepared == []  # never changes the layout without the flag
    assert "mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb" in caplog.text
    assert "--prepare-cgroups" in caplog.text


@needs_root_and_crun
def test_prepare_cgroups_flag_runs_the_fix_first(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    def refuse() -> list[str]:
        raise CgroupPrepareError("hugetlb is enabled in a cgroup.subtree_control")

    monkeypatch.setattr(host_main, "prepare_cgroups_for_crun", refuse)
    args = ["--socket", str(tmp_path / "s"), "--state-dir", str(tmp_path / "st")]
    assert host_main.main([*args, "--runtime", "crun", "--prepare-cgroups"]) == 1
    assert "--prepare-cgroups: hugetlb is enabled" in caplog.text
    assert not (tmp_path / "s").exists()
