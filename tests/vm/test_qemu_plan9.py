"""Plan9 shares added at run time: the pure parts (translation, share parsing,
guest mount paths) and the host bind-mount helpers. The end-to-end test is
tests/vm/test_vm_plan9.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from aiohcs import hresults
from aiohcs.host.errors import HcsFault
from aiohcs.host.vm import plan9, qemu
from aiohcs.host.vm.backend import _guest_mount_path


def kd_vm(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\0" * 64)
    vm: dict[str, Any] = {"Chipset": {"LinuxKernelDirect": {"KernelFilePath": str(kernel)}}}
    vm.update(extra)
    return vm


def hot_args(staging: Path) -> list[str]:
    return [
        "-fsdev",
        f"local,id=fshot,path={staging},security_model=none,multidevs=remap",
        "-device",
        "virtio-9p-pci,id=p9hot,fsdev=fshot,mount_tag=aiohcs-hot",
    ]


def contains(argv: list[str], part: list[str]) -> bool:
    return any(argv[i : i + len(part)] == part for i in range(len(argv)))


@pytest.mark.parametrize("section", [{}, {"Shares": []}, {"Shares": None}])
def test_plan9_section_adds_the_staging_device(tmp_path: Path, section: Any) -> None:
    p = qemu.build_plan("vm1", kd_vm(tmp_path, Devices={"Plan9": section}), tmp_path / "sys")
    assert p.plan9_hot_dir == tmp_path / "sys" / "plan9-hot"
    assert contains(p.argv, hot_args(tmp_path / "sys" / "plan9-hot"))
    assert p.plan9_shares == []


def test_no_plan9_section_no_staging_device(tmp_path: Path) -> None:
    p = qemu.build_plan("vm1", kd_vm(tmp_path, Devices={}), tmp_path / "sys")
    assert p.plan9_hot_dir is None
    assert "-fsdev" not in p.argv and qemu.PLAN9_HOT_TAG not in " ".join(p.argv)


def test_create_shares_keep_their_devices_plus_staging(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    vm = kd_vm(tmp_path, Devices={"Plan9": {"Shares": [{"Name": "data", "Path": str(share)}]}})
    p = qemu.build_plan("vm1", vm, tmp_path / "sys")
    assert p.plan9_shares == ["data"]
    assert "virtio-9p-pci,id=p9dev0,fsdev=fs0,mount_tag=data" in p.argv
    assert contains(p.argv, hot_args(tmp_path / "sys" / "plan9-hot"))


def test_staging_tag_is_reserved(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    vm = kd_vm(
        tmp_path, Devices={"Plan9": {"Shares": [{"Name": "aiohcs-hot", "Path": str(share)}]}}
    )
    with pytest.raises(HcsFault) as e:
        qemu.build_plan("vm1", vm, tmp_path / "sys")
    assert e.value.hresult == hresults.HCS_E_INVALID_JSON and "reserved" in e.value.message


def test_plan9_share_parsing(tmp_path: Path) -> None:
    d = str(tmp_path)
    s = qemu.plan9_share({"Name": "n", "AccessName": "a", "Path": d, "Port": 564}, "Settings")
    assert s == qemu.Plan9Share("a", d, False)
    assert qemu.plan9_share({"Name": "n", "Path": d, "Flags": 1}, "Settings").read_only
    assert qemu.plan9_share({"Name": "n", "Path": d, "ReadOnly": True}, "Settings").read_only
    # a long name is fine for a run-time share (it is no QEMU mount tag)
    assert qemu.plan9_share({"Name": "x" * 40, "Path": d}, "Settings").tag == "x" * 40


@pytest.mark.parametrize(
    ("settings", "hresult", "needle"),
    [
        ({"Name": "n"}, hresults.HCS_E_INVALID_JSON, "Settings.Path"),
        ({"Name": "n", "Path": ""}, hresults.HCS_E_INVALID_JSON, "Settings.Path"),
        ({"Name": "n", "Path": "/no/such/dir"}, hresults.E_PATH_NOT_FOUND, "Settings.Path"),
        ({"Path": "/tmp"}, hresults.HCS_E_INVALID_JSON, "Settings.Name"),
        ({"Name": "n", "Path": "/tmp", "Flags": 6}, hresults.E_NOT_SUPPORTED, "Settings.Flags"),
        (
            {"Name": "n", "Path": "/tmp", "AllowedFiles": ["a"]},
            hresults.E_NOT_SUPPORTED,
            "Settings.AllowedFiles",
        ),
        ({"Name": "n", "Path": "/tmp", "Bogus": 1}, hresults.E_NOT_SUPPORTED, "Settings.Bogus"),
        ("nope", hresults.HCS_E_INVALID_JSON, "Settings"),
    ],
)
def test_plan9_share_errors(settings: Any, hresult: int, needle: str) -> None:
    with pytest.raises(HcsFault) as e:
        qemu.plan9_share(settings, "Settings")
    assert e.value.hresult == hresult and needle in e.value.message, e.value.message


def test_guest_mount_path() -> None:
    assert _guest_mount_path(None, "s1") == ("/run/plan9/s1", False)
    lcow = {
        "ResourceType": "MappedDirectory",
        "RequestType": "Add",
        "Settings": {"MountPath": "/run/gcs/c/abc/", "ShareName": "s1", "ReadOnly": True},
    }
    assert _guest_mount_path(lcow, "s1") == ("/run/gcs/c/abc", True)
    assert _guest_mount_path({"Settings": {}}, "s1") == ("/run/plan9/s1", False)
    for bad in ("relative", "/a/../b", "/"):
        with pytest.raises(HcsFault) as e:
            _guest_mount_path({"Settings": {"MountPath": bad}}, "s1")
        assert "GuestRequest.Settings.MountPath" in e.value.message
    with pytest.raises(HcsFault) as e:
        _guest_mount_path({"ResourceType": "VPMemDevice"}, "s1")
    assert e.value.hresult == hresults.E_NOT_SUPPORTED


def test_subdir_name() -> None:
    assert plan9.subdir_name(3, "a b/c") == "3-a_b_c"


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_host_bind_read_only_and_cleanup(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("hello")
    system = tmp_path / "sys"
    ro = system / "plan9-hot" / "1-ro"
    rw = system / "plan9-hot" / "2-rw"
    plan9.bind(str(src), str(ro), read_only=True)
    plan9.bind(str(src), str(rw), read_only=False)
    try:
        assert (ro / "f").read_text() == "hello"
        with pytest.raises(OSError):
            (ro / "g").write_text("no")
        (rw / "g").write_text("yes")
        assert (src / "g").read_text() == "yes"
        assert plan9.mounts_under(str(system)) == sorted([str(ro), str(rw)])
    finally:
        assert plan9.unmount_all_under(str(system)) == []
    assert not os.listdir(ro) and not os.listdir(rw)
    assert sorted(os.listdir(src)) == ["f", "g"]  # the shared files are untouched
