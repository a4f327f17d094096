"""Unit tests of the pure VirtualMachine -> QEMU argv translation (aiohcs.host.vm.qemu)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from shared_material import REALDOCS, SAMPLES

from aiohcs import hresults
from aiohcs.host.errors import HcsFault
from aiohcs.host.vm import qemu

from .documents import uefi_disk_vm


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in (
        "vmlinux",
        "initrd.img",
        "disk.vhdx",
        "disk.vhd",
        "disk.qcow2",
        "disk.img",
        "x.iso",
        "blob",
    ):
        p = tmp_path / name
        p.write_bytes(b"\0" * 512)
        out[name] = p
    share = tmp_path / "share"
    share.mkdir()
    out["share"] = share
    return out


def kd_vm(files: dict[str, Path], **extra: Any) -> dict[str, Any]:
    vm: dict[str, Any] = {
        "Chipset": {
            "LinuxKernelDirect": {
                "KernelFilePath": str(files["vmlinux"]),
                "InitRdPath": str(files["initrd.img"]),
                "KernelCmdLine": "console=ttyS0 panic=-1",
            }
        },
        "ComputeTopology": {"Memory": {"SizeInMB": 256}, "Processor": {"Count": 2}},
    }
    vm.update(extra)
    return vm


def plan(vm: dict[str, Any], tmp_path: Path, **kw: Any) -> qemu.QemuPlan:
    return qemu.build_plan("vm1", vm, tmp_path / "sys", **kw)


def fault(vm: dict[str, Any], tmp_path: Path) -> HcsFault:
    with pytest.raises(HcsFault) as e:
        plan(vm, tmp_path)
    return e.value


def after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_base_command_line(files: dict[str, Path], tmp_path: Path) -> None:
    p = plan(kd_vm(files), tmp_path)
    a = p.argv
    assert a[0] == "qemu-system-x86_64"
    for flag in ("-nodefaults", "-no-user-config", "-S"):
        assert flag in a
    assert after(a, "-display") == ["none"]
    assert after(a, "-m") == ["256"]
    assert after(a, "-smp") == ["2"]
    assert after(a, "-machine") == ["pc,accel=tcg"]
    assert p.qmp_socket == tmp_path / "sys" / "qmp.sock"
    assert f"socket,id=qmp,path={p.qmp_socket},server=on,wait=off" in a
    assert "chardev=qmp,mode=control" in after(a, "-mon")
    assert p.memory_mb == 256 and p.processors == 2


def test_defaults_when_topology_absent(files: dict[str, Path], tmp_path: Path) -> None:
    vm = kd_vm(files)
    del vm["ComputeTopology"]
    p = plan(vm, tmp_path)
    assert after(p.argv, "-m") == [str(qemu.DEFAULT_MEMORY_MB)]
    assert after(p.argv, "-smp") == ["1"]


def test_kvm_accel_uses_host_cpu(files: dict[str, Path], tmp_path: Path) -> None:
    p = plan(kd_vm(files), tmp_path, accel="kvm")
    assert after(p.argv, "-machine") == ["pc,accel=kvm"]
    assert after(p.argv, "-cpu") == ["host"]


def test_linux_kernel_direct(files: dict[str, Path], tmp_path: Path) -> None:
    a = plan(kd_vm(files), tmp_path).argv
    assert after(a, "-kernel") == [str(files["vmlinux"])]
    assert after(a, "-initrd") == [str(files["initrd.img"])]
    assert after(a, "-append") == ["console=ttyS0 panic=-1"]


def test_kernel_direct_without_initrd_or_cmdline(files: dict[str, Path], tmp_path: Path) -> None:
    vm = kd_vm(files)
    vm["Chipset"]["LinuxKernelDirect"] = {"KernelFilePath": str(files["vmlinux"])}
    a = plan(vm, tmp_path).argv
    assert "-initrd" not in a and "-append" not in a


@pytest.mark.parametrize("field", ["KernelFilePath", "InitRdPath"])
def test_missing_boot_file(files: dict[str, Path], tmp_path: Path, field: str) -> None:
    vm = kd_vm(files)
    vm["Chipset"]["LinuxKernelDirect"][field] = "/nonexistent/file"
    f = fault(vm, tmp_path)
    assert f.hresult == hresults.E_FILE_NOT_FOUND
    assert f"VirtualMachine.Chipset.LinuxKernelDirect.{field}" in f.message
    assert "/nonexistent/file" in f.message


def test_no_boot_method(tmp_path: Path) -> None:
    f = fault({"ComputeTopology": {}}, tmp_path)
    assert f.hresult == hresults.HCS_E_INVALID_JSON
    assert "VirtualMachine.Chipset" in f.message


def test_stop_on_reset(files: dict[str, Path], tmp_path: Path) -> None:
    assert "-no-reboot" in plan(kd_vm(files, StopOnReset=True), tmp_path).argv
    assert "-no-reboot" not in plan(kd_vm(files, StopOnReset=False), tmp_path).argv


def test_uefi_q35_ovmf_and_vars_copy(files: dict[str, Path], tmp_path: Path) -> None:
    vm = uefi_disk_vm(str(files["disk.vhdx"]))
    p = plan(vm, tmp_path)
    assert p.machine == "q35"
    drives = after(p.argv, "-drive")
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={qemu.OVMF_CODE}" in drives
    vars_copy = tmp_path / "sys" / "OVMF_VARS.fd"
    assert f"if=pflash,format=raw,unit=1,file={vars_copy}" in drives
    assert p.vars_copy == (qemu.OVMF_VARS, vars_copy)
    devices = after(p.argv, "-device")
    assert any(d.startswith("scsi-hd,") and "bootindex=0" in d for d in devices)
    assert p.hotplug_buses  # q35 reserves root ports for hot-plug
    assert any(d.startswith("pcie-root-port,") for d in devices)


def test_uefi_boot_target_absent_uses_default_order(tmp_path: Path) -> None:
    vm = {
        "Chipset": {
            "Uefi": {"BootThis": {"DeviceType": "ScsiDrive", "DevicePath": "nope", "DiskNumber": 0}}
        }
    }
    assert not any("bootindex" in d for d in after(plan(vm, tmp_path).argv, "-device"))


@pytest.mark.parametrize(
    ("uefi", "field"),
    [
        ({"BootThis": {"DeviceType": "VmbFs", "VmbFsRootPath": "x"}}, "BootThis.VmbFsRootPath"),
        ({"BootThis": {"DeviceType": "Network"}}, "BootThis.DeviceType"),
        ({"ApplySecureBootTemplate": "Apply"}, "ApplySecureBootTemplate"),
        ({"EnableDebugger": True}, "EnableDebugger"),
    ],
)
def test_uefi_unsupported(tmp_path: Path, uefi: dict[str, Any], field: str) -> None:
    f = fault({"Chipset": {"Uefi": uefi}}, tmp_path)
    assert f.hresult == hresults.E_NOT_SUPPORTED
    assert f"VirtualMachine.Chipset.Uefi.{field}" in f.message


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("disk.vhd", "vpc"), ("disk.vhdx", "vhdx"), ("disk.qcow2", "qcow2"), ("disk.img", "raw")],
)
def test_scsi_disk_formats(files: dict[str, Path], tmp_path: Path, name: str, fmt: str) -> None:
    vm = kd_vm(
        files,
        Devices={
            "Scsi": {
                "c0": {"Attachments": {"3": {"Type": "VirtualDisk", "Path": str(files[name])}}}
            }
        },
    )
    p = plan(vm, tmp_path)
    assert "virtio-scsi-pci,id=scsi0" in after(p.argv, "-device")
    (disk,) = p.disks
    assert (disk.controller, disk.lun, disk.format, disk.read_only) == ("c0", 3, fmt, False)
    assert (
        f"driver={fmt},node-name=d0l3,file.driver=file,file.filename={files[name]},read-only=off"
        in after(p.argv, "-blockdev")
    )
    assert "scsi-hd,id=scsi0-3,drive=d0l3,bus=scsi0.0,channel=0,scsi-id=0,lun=3" in after(
        p.argv, "-device"
    )


def test_scsi_probed_format_wins_over_unknown_extension(
    files: dict[str, Path], tmp_path: Path
) -> None:
    vm = kd_vm(
        files, Devices={"Scsi": {"c0": {"Attachments": {"0": {"Path": str(files["blob"])}}}}}
    )
    assert plan(vm, tmp_path).disks[0].format == "raw"
    p = plan(vm, tmp_path, formats={str(files["blob"]): "qcow2"})
    assert p.disks[0].format == "qcow2"
    with pytest.raises(HcsFault) as e:
        plan(vm, tmp_path, formats={str(files["blob"]): "vmdk"})
    f = e.value
    assert f.hresult == hresults.E_NOT_SUPPORTED and "vmdk" in f.message


def test_scsi_read_only_and_iso(files: dict[str, Path], tmp_path: Path) -> None:
    vm = kd_vm(
        files,
        Devices={
            "Scsi": {
                "a": {
                    "Attachments": {
                        "0": {
                            "Type": "VirtualDisk",
                            "Path": str(files["disk.qcow2"]),
                            "ReadOnly": True,
                        }
                    }
                },
                "b": {"Attachments": {"1": {"Type": "Iso", "Path": str(files["x.iso"])}}},
            }
        },
    )
    p = plan(vm, tmp_path)
    assert p.scsi_controllers == {"a": 0, "b": 1}
    ro, iso = p.disks
    assert ro.read_only and not ro.cdrom
    assert iso.read_only and iso.cdrom and iso.format == "raw"
    blockdevs = after(p.argv, "-blockdev")
    assert "file.read-only=on" in blockdevs[0] and blockdevs[0].endswith("read-only=on")
    assert any(d.startswith("scsi-cd,id=scsi1-1,") for d in after(p.argv, "-device"))
    assert p.controller_bus("b") == "scsi1.0"


def test_scsi_uncached(files: dict[str, Path], tmp_path: Path) -> None:
    vm = kd_vm(
        files,
        Devices={
            "Scsi": {
                "c": {
                    "Attachments": {
                        "0": {"Path": str(files["disk.img"]), "CachingMode": "Uncached"}
                    }
                }
            }
        },
    )
    assert "cache.direct=on" in after(plan(vm, tmp_path).argv, "-blockdev")[0]


def test_scsi_missing_disk(files: dict[str, Path], tmp_path: Path) -> None:
    vm = kd_vm(files, Devices={"Scsi": {"c": {"Attachments": {"0": {"Path": "/no/such.vhdx"}}}}})
    f = fault(vm, tmp_path)
    assert f.hresult == hresults.E_FILE_NOT_FOUND
    assert (
        "VirtualMachine.Devices.Scsi.c.Attachments.0.Path" in f.message
        and "/no/such.vhdx" in f.message
    )


@pytest.mark.parametrize(
    ("att", "code", "where"),
    [
        ({"Type": "PassThru", "Path": "x"}, hresults.E_NOT_SUPPORTED, "Attachments.0.Type"),
        (
            {"Type": "VirtualDisk", "Path": "PATH", "Foo": 1},
            hresults.E_NOT_SUPPORTED,
            "Attachments.0.Foo",
        ),
        (
            {"Path": "PATH", "ReadOnly": "yes"},
            hresults.HCS_E_INVALID_JSON,
            "Attachments.0.ReadOnly",
        ),
        ({"Path": "PATH", "CachingMode": "Weird"}, hresults.HCS_E_INVALID_JSON, "CachingMode"),
    ],
)
def test_scsi_attachment_errors(
    files: dict[str, Path], tmp_path: Path, att: dict[str, Any], code: int, where: str
) -> None:
    att = json.loads(json.dumps(att).replace("PATH", str(files["disk.img"])))
    f = fault(kd_vm(files, Devices={"Scsi": {"c": {"Attachments": {"0": att}}}}), tmp_path)
    assert f.hresult == code and where in f.message


def test_scsi_bad_lun(files: dict[str, Path], tmp_path: Path) -> None:
    f = fault(
        kd_vm(
            files, Devices={"Scsi": {"c": {"Attachments": {"x": {"Path": str(files["disk.img"])}}}}}
        ),
        tmp_path,
    )
    assert f.hresult == hresults.HCS_E_INVALID_JSON and "Attachments.x" in f.message


def test_com_ports(files: dict[str, Path], tmp_path: Path) -> None:
    vm = kd_vm(
        files,
        Devices={
            "ComPorts": {
                "0": {"NamedPipe": r"\\.\pipe\test_vm"},
                "1": {"NamedPipe": "/tmp/x/com2.sock"},
            }
        },
    )
    p = plan(vm, tmp_path)
    com1 = tmp_path / "sys" / "pipe-test_vm.sock"
    assert p.com_ports == {0: com1, 1: Path("/tmp/x/com2.sock")}
    assert f"socket,id=com0,path={com1},server=on,wait=off" in after(p.argv, "-chardev")
    assert "isa-serial,chardev=com0,index=0" in after(p.argv, "-device")
    assert "isa-serial,chardev=com1,index=1" in after(p.argv, "-device")
    assert com1 in p.sockets()


def test_com_port_bad_key_and_pipe(files: dict[str, Path], tmp_path: Path) -> None:
    f = fault(kd_vm(files, Devices={"ComPorts": {"2": {"NamedPipe": "/x"}}}), tmp_path)
    assert f.hresult == hresults.HCS_E_INVALID_JSON and "ComPorts.2" in f.message
    f = fault(kd_vm(files, Devices={"ComPorts": {"0": {"NamedPipe": "relative"}}}), tmp_path)
    assert f.hresult == hresults.HCS_E_INVALID_JSON and "NamedPipe" in f.message


def test_pipe_name_mapping(tmp_path: Path) -> None:
    assert qemu.pipe_socket_path(r"\\.\pipe\a b/c", tmp_path) == tmp_path / "pipe-a_b_c.sock"


def test_guest_connection_adds_agent_port(files: dict[str, Path], tmp_path: Path) -> None:
    p = plan(kd_vm(files, GuestConnection={}), tmp_path)
    assert p.agent_socket == tmp_path / "sys" / "agent.sock"
    assert "virtio-serial-pci,id=vser0" in after(p.argv, "-device")
    assert f"socket,id=agent,path={p.agent_socket},server=on,wait=off" in after(p.argv, "-chardev")
    assert "virtserialport,bus=vser0.0,chardev=agent,name=org.aiohcs.agent" in after(
        p.argv, "-device"
    )
    assert plan(kd_vm(files), tmp_path).agent_socket is None


def test_guest_connection_socket_dir(files: dict[str, Path], tmp_path: Path) -> None:
    p = plan(kd_vm(files, GuestConnection={"UseVsock": True}), tmp_path, socket_dir=tmp_path / "s")
    assert p.agent_socket == tmp_path / "s" / "agent.sock"
    assert p.qmp_socket == tmp_path / "s" / "qmp.sock"


def test_guest_connection_unsupported(files: dict[str, Path], tmp_path: Path) -> None:
    f = fault(kd_vm(files, GuestConnection={"UseConnectedSuspend": True}), tmp_path)
    assert (
        f.hresult == hresults.E_NOT_SUPPORTED and "GuestConnection.UseConnectedSuspend" in f.message
    )


def test_virtio_serial_ports(files: dict[str, Path], tmp_path: Path) -> None:
    vm = kd_vm(
        files,
        Devices={
            "VirtioSerial": {
                "Ports": {
                    "a": {"NamedPipe": r"\\.\pipe\one", "Name": "org.x.one"},
                    "b": {"NamedPipe": "/tmp/two.sock", "ConsoleSupport": True},
                }
            }
        },
    )
    p = plan(vm, tmp_path)
    assert p.serial_ports == {"a": tmp_path / "sys" / "pipe-one.sock", "b": Path("/tmp/two.sock")}
    devices = after(p.argv, "-device")
    assert "virtserialport,bus=vser0.0,chardev=vport0,name=org.x.one" in devices
    assert "virtconsole,bus=vser0.0,chardev=vport1,name=b" in devices
    assert devices.count("virtio-serial-pci,id=vser0") == 1


def test_virtio_serial_reserved_name(files: dict[str, Path], tmp_path: Path) -> None:
    vm = kd_vm(
        files,
        Devices={
            "VirtioSerial": {"Ports": {"a": {"NamedPipe": "/tmp/a", "Name": "org.aiohcs.agent"}}}
        },
    )
    assert "reserved" in fault(vm, tmp_path).message


def test_plan9_shares(files: dict[str, Path], tmp_path: Path) -> None:
    share = str(files["share"])
    vm = kd_vm(
        files,
        Devices={
            "Plan9": {
                "Shares": [
                    {"Name": "data", "Path": share, "Port": 564},
                    {"Name": "n", "AccessName": "ro", "Path": share, "ReadOnly": True},
                ]
            }
        },
    )
    p = plan(vm, tmp_path)
    assert p.plan9_shares == ["data", "ro"]
    fsdevs = after(p.argv, "-fsdev")
    assert fsdevs == [
        f"local,id=fs0,path={share},security_model=none",
        f"local,id=fs1,path={share},security_model=none,readonly=on",
        # the staging export of shares added at run time (test_qemu_plan9.py)
        f"local,id=fshot,path={tmp_path}/sys/plan9-hot,security_model=none,multidevs=remap",
    ]
    assert "virtio-9p-pci,id=p9dev1,fsdev=fs1,mount_tag=ro" in after(p.argv, "-device")


def test_plan9_errors(files: dict[str, Path], tmp_path: Path) -> None:
    f = fault(
        kd_vm(files, Devices={"Plan9": {"Shares": [{"Name": "x", "Path": "/no/dir"}]}}), tmp_path
    )
    assert f.hresult == hresults.E_PATH_NOT_FOUND and "Plan9.Shares[0].Path" in f.message
    f = fault(
        kd_vm(
            files,
            Devices={
                "Plan9": {
                    "Shares": [{"Name": "x", "Path": str(files["share"]), "AllowedFiles": ["a"]}]
                }
            },
        ),
        tmp_path,
    )
    assert f.hresult == hresults.E_NOT_SUPPORTED and "AllowedFiles" in f.message


def test_empty_plan9_accepted(files: dict[str, Path], tmp_path: Path) -> None:
    # Only the run-time share device (tests/vm/test_qemu_plan9.py).
    assert after(plan(kd_vm(files, Devices={"Plan9": {}}), tmp_path).argv, "-fsdev") == [
        f"local,id=fshot,path={tmp_path}/sys/plan9-hot,security_model=none,multidevs=remap"
    ]


def test_network_user_mode_when_no_endpoint(files: dict[str, Path], tmp_path: Path) -> None:
    p = plan(
        kd_vm(files, Devices={"NetworkAdapters": {"eth0": {"MacAddress": "00-15-5D-00-00-01"}}}),
        tmp_path,
    )
    assert after(p.argv, "-netdev") == ["user,id=net0"]
    assert "virtio-net-pci,id=nic0,netdev=net0,mac=00:15:5d:00:00:01" in after(p.argv, "-device")


def test_network_tap_endpoint(files: dict[str, Path], tmp_path: Path) -> None:
    p = plan(kd_vm(files, Devices={"NetworkAdapters": {"eth0": {"EndpointId": "lo"}}}), tmp_path)
    assert after(p.argv, "-netdev") == ["tap,id=net0,ifname=lo,script=no,downscript=no"]
    f = fault(
        kd_vm(files, Devices={"NetworkAdapters": {"eth0": {"EndpointId": "nosuchtap0"}}}), tmp_path
    )
    assert f.hresult == hresults.E_NOT_FOUND and "EndpointId" in f.message
    f = fault(kd_vm(files, Devices={"NetworkAdapters": {"eth0": {"MacAddress": "zz"}}}), tmp_path)
    assert f.hresult == hresults.HCS_E_INVALID_JSON and "MacAddress" in f.message


def test_no_network_adapters_no_nic(files: dict[str, Path], tmp_path: Path) -> None:
    assert "-netdev" not in plan(kd_vm(files, Devices={"NetworkAdapters": {}}), tmp_path).argv


def test_restore_state(files: dict[str, Path], tmp_path: Path) -> None:
    saved = tmp_path / "state.bin"
    saved.write_bytes(b"QEVM")
    p = plan(kd_vm(files, RestoreState={"SaveStateFilePath": str(saved)}), tmp_path)
    assert p.restore_from == saved
    assert after(p.argv, "-incoming") == ["defer"]
    # Same devices as the saved VM: only -incoming differs.
    base = plan(kd_vm(files), tmp_path).argv
    assert p.argv[: len(base)] == base and p.argv[len(base) :] == ["-incoming", "defer"]


def test_restore_missing_file_and_template(files: dict[str, Path], tmp_path: Path) -> None:
    f = fault(kd_vm(files, RestoreState={"SaveStateFilePath": "/no/state"}), tmp_path)
    assert f.hresult == hresults.E_FILE_NOT_FOUND and "RestoreState.SaveStateFilePath" in f.message
    f = fault(kd_vm(files, RestoreState={"TemplateSystemId": "x"}), tmp_path)
    assert f.hresult == hresults.E_NOT_SUPPORTED and "RestoreState.TemplateSystemId" in f.message


def test_chipset_extras(files: dict[str, Path], tmp_path: Path) -> None:
    vm = kd_vm(files)
    vm["Chipset"].update(
        UseUtc=True, BaseBoardSerialNumber="B1", ChassisSerialNumber="C,1", ChassisAssetTag="T"
    )
    a = plan(vm, tmp_path).argv
    assert after(a, "-rtc") == ["base=utc"]
    assert after(a, "-smbios") == ["type=2,serial=B1", "type=3,serial=C,,1,asset=T"]


def test_balloon_always_present(files: dict[str, Path], tmp_path: Path) -> None:
    p = plan(kd_vm(files), tmp_path)
    assert p.balloon
    assert any(d.startswith("virtio-balloon-pci,id=balloon0") for d in after(p.argv, "-device"))


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (("Devices", "VirtualPci"), {"gpu": {}}, hresults.E_NOT_SUPPORTED),
        (("Devices", "VideoMonitor"), {}, hresults.E_NOT_SUPPORTED),
        (("Devices", "VirtualSmb"), {}, hresults.E_NOT_SUPPORTED),
        (("Devices", "Battery"), {"x": 1}, hresults.E_NOT_SUPPORTED),
        (("GuestState",), {}, hresults.E_NOT_SUPPORTED),
        (("StorageQoS",), {}, hresults.E_NOT_SUPPORTED),
        (("ComputeTopology", "Memory", "PinBackingPages"), True, hresults.E_NOT_SUPPORTED),
        (("ComputeTopology", "Processor", "Limit"), 50, hresults.E_NOT_SUPPORTED),
        (("ComputeTopology", "Processor", "Count"), 0, hresults.HCS_E_INVALID_JSON),
        (("ComputeTopology", "Memory", "SizeInMB"), "1G", hresults.HCS_E_INVALID_JSON),
        (("Chipset", "EnableHibernation"), True, hresults.E_NOT_SUPPORTED),
        (("Services", "Magic"), {}, hresults.E_NOT_SUPPORTED),
        (
            ("Devices", "HvSocket", "HvSocketConfig", "ServiceTable"),
            {"g": {}},
            hresults.E_NOT_SUPPORTED,
        ),
    ],
)
def test_unsupported_fields_named(
    files: dict[str, Path], tmp_path: Path, path: tuple[str, ...], value: Any, code: int
) -> None:
    vm = kd_vm(files)
    node = vm
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    f = fault(vm, tmp_path)
    assert f.hresult == code
    assert "VirtualMachine." + ".".join(path) in f.message


def test_virtual_pci_message(files: dict[str, Path], tmp_path: Path) -> None:
    f = fault(kd_vm(files, Devices={"VirtualPci": {}}), tmp_path)
    assert f.message == "VirtualMachine.Devices.VirtualPci: not supported"
    assert f.hresult == 0x80070032


def _replace_windows_paths(doc: Any, files: dict[str, Path]) -> Any:
    doc = copy.deepcopy(doc)
    vm = doc["VirtualMachine"]
    kd = vm.get("Chipset", {}).get("LinuxKernelDirect")
    if kd:
        kd["KernelFilePath"] = str(files["vmlinux"])
        kd["InitRdPath"] = str(files["initrd.img"])
    for ctrl in vm.get("Devices", {}).get("Scsi", {}).values():
        for att in (ctrl.get("Attachments") or {}).values():
            att["Path"] = str(files["x.iso"] if att.get("Type") == "Iso" else files["disk.vhdx"])
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        SAMPLES / "vm-empty-uefi.json",
        SAMPLES / "vm-uefi-scsi-vhdx.json",
        REALDOCS / "14-v2-vm-lcow-kernel-direct.json",
        REALDOCS / "16-v2-vm-wsl2-dump.json",
        REALDOCS / "18-v2-vm-multipass-services-comports.json",
        REALDOCS / "19-v2-vm-multipass-empty-scsi.json",
    ],
    ids=lambda p: p.stem,
)
def test_real_documents_accepted(files: dict[str, Path], tmp_path: Path, doc: Path) -> None:
    if not doc.exists():
        pytest.skip(f"{doc} not present")
    data = _replace_windows_paths(json.loads(doc.read_text()), files)
    p = plan(data["VirtualMachine"], tmp_path)
    assert p.argv[0] == "qemu-system-x86_64"
