"""VirtualMachine document -> QEMU command line (a pure translation).

`build_plan` reads nothing but the document and what it is given; the only
side-effect-free host look-ups it makes are existence checks of the files the
document names (so a missing kernel fails at create time with the field and
path in the message). Everything that starts or talks to QEMU lives in
backend.py.

Every field of the VirtualMachine document is either translated, accepted as a
documented no-op (it has no meaning on this host: see ACCEPTED_NOOP), or
rejected with E_NOT_SUPPORTED naming the field. Nothing is silently dropped.
docs/vm.md lists the mapping field by field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohcs import hresults
from aiohcs.host.errors import HcsFault

QEMU = "qemu-system-x86_64"
OVMF_DIR = Path("/usr/share/OVMF")
OVMF_CODE = OVMF_DIR / "OVMF_CODE_4M.fd"
OVMF_VARS = OVMF_DIR / "OVMF_VARS_4M.fd"
AGENT_PORT_NAME = "org.aiohcs.agent"
# Plan9 shares added at run time: QEMU 7.2 cannot create an -fsdev through QMP,
# so a VM whose document has a Devices.Plan9 section gets one extra 9p device
# exporting a per-VM staging directory; a share added later is a host bind
# mount in a subdirectory of it (backend.py, docs/vm.md "Plan9 shares").
PLAN9_HOT_TAG = "aiohcs-hot"
PLAN9_HOT_DIR = "plan9-hot"  # under the system directory
DEFAULT_MEMORY_MB = 1024
DEFAULT_PROCESSORS = 1
# q35 needs a PCIe root port per hot-pluggable PCI device; pc hot-plugs onto
# its PCI bus directly.
Q35_HOTPLUG_PORTS = 4

# Disk formats by file extension; anything else is probed with qemu-img.
FORMAT_BY_EXTENSION = {
    ".vhd": "vpc",
    ".vhdx": "vhdx",
    ".qcow2": "qcow2",
    ".raw": "raw",
    ".img": "raw",
    ".iso": "raw",
}
KNOWN_FORMATS = frozenset({"vpc", "vhdx", "qcow2", "raw"})


def not_supported(path: str, why: str = "not supported") -> HcsFault:
    return HcsFault(hresults.E_NOT_SUPPORTED, f"{path}: {why}")


def invalid(path: str, why: str) -> HcsFault:
    return HcsFault(hresults.HCS_E_INVALID_JSON, f"{path}: {why}")


def file_not_found(path: str, file: str) -> HcsFault:
    return HcsFault(hresults.E_FILE_NOT_FOUND, f"{path}: file not found: {file}")


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class DiskPlan:
    controller: str  # the HCS controller name (key in Devices.Scsi)
    lun: int
    path: str
    format: str
    read_only: bool
    cdrom: bool
    cache_direct: bool = False

    # QEMU node names: a letter, then [A-Za-z0-9_.-], at most 31 chars. They
    # depend only on (controller index in document order, lun), so hot-plug
    # and a restored VM find the same node.
    def node_for(self, controller_index: int) -> str:
        return f"d{controller_index}l{self.lun}"

    def device_for(self, controller_index: int) -> str:
        return f"scsi{controller_index}-{self.lun}"


@dataclass(slots=True)
class QemuPlan:
    argv: list[str]
    qmp_socket: Path
    machine: str
    accel: str
    memory_mb: int
    processors: int
    agent_socket: Path | None = None
    com_ports: dict[int, Path] = field(default_factory=dict)  # 0 = COM1
    serial_ports: dict[str, Path] = field(default_factory=dict)  # VirtioSerial key -> socket
    scsi_controllers: dict[str, int] = field(default_factory=dict)  # HCS name -> index
    disks: list[DiskPlan] = field(default_factory=list)
    plan9_shares: list[str] = field(default_factory=list)  # mount tags
    plan9_hot_dir: Path | None = None  # staging directory of run-time shares
    restore_from: Path | None = None
    vars_copy: tuple[Path, Path] | None = None  # (template, per-VM copy) for OVMF
    balloon: bool = True
    hotplug_buses: list[str] = field(default_factory=list)  # q35 root ports free for hot-plug

    def sockets(self) -> list[Path]:
        """Every unix socket QEMU creates (to unlink stale ones before a start)."""
        out = [self.qmp_socket, *self.com_ports.values(), *self.serial_ports.values()]
        if self.agent_socket is not None:
            out.append(self.agent_socket)
        return out

    def controller_bus(self, name: str) -> str:
        return f"scsi{self.scsi_controllers[name]}.0"


# ------------------------------------------------------------------ helpers


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(path, "expected a JSON object")
    return value


def _check_keys(
    obj: Mapping[str, Any],
    path: str,
    handled: set[str],
    noop: Mapping[str, str] | None = None,
) -> None:
    """Reject every key that is neither translated nor a documented no-op."""
    for key in obj:
        if key in handled or (noop is not None and key in noop):
            continue
        raise not_supported(f"{path}.{key}" if path else key)


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise invalid(path, "expected a string")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(path, "expected true or false")
    return value


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(path, "expected an integer")
    if not lo <= value <= hi:
        raise invalid(path, f"{value} is out of range {lo}..{hi}")
    return value


def _require_file(value: Any, path: str) -> str:
    file = _str(value, path)
    if not file:
        raise invalid(path, "a path is required")
    if os.path.isdir(file):
        # Not "file not found": the path exists, it is the wrong kind.
        raise HcsFault(hresults.E_INVALIDARG, f"{path}: {file} is a directory, not a file")
    if not os.path.isfile(file):
        raise file_not_found(path, file)
    return file


def _opt(value: str) -> str:
    """Escape a value for QEMU's key=value option syntax (',' doubles)."""
    return value.replace(",", ",,")


UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


def pipe_socket_path(name: str, system_dir: Path, where: str = "NamedPipe") -> Path:
    r"""Where a named pipe of the document lives on this host.

    A Windows pipe name ``\\.\pipe\NAME`` becomes ``<system dir>/pipe-NAME.sock``
    (NAME reduced to [A-Za-z0-9_.-]); an absolute Linux path is used as is
    (and must fit a unix socket address). `where` names the field in errors.
    """
    m = re.fullmatch(r"\\\\[.?]\\pipe\\(.+)", name)
    if m:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", m.group(1))[:60]
        return system_dir / f"pipe-{safe}.sock"
    if name.startswith("/"):
        if len(os.fsencode(name)) > UNIX_PATH_MAX:
            raise invalid(
                where,
                f"{name!r} is longer than {UNIX_PATH_MAX} bytes, the limit of a unix socket path",
            )
        return Path(name)
    raise invalid(where, rf"{name!r} is neither \\.\pipe\NAME nor an absolute path")


def format_from_extension(path: str) -> str | None:
    return FORMAT_BY_EXTENSION.get(os.path.splitext(path)[1].lower())


def mac_address(value: str, path: str) -> str:
    parts = re.split(r"[-:]", value)
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9A-Fa-f]{2}", p) for p in parts):
        raise invalid(path, f"{value!r} is not a MAC address (00-15-5D-00-00-01)")
    return ":".join(p.lower() for p in parts)


# ------------------------------------------------------------------ no-ops

# Fields accepted without effect, and why. They describe Hyper-V host
# mechanics with no QEMU equivalent, and real documents (hcsshim, WSL,
# Multipass) always send them; rejecting them would reject those documents.
ACCEPTED_NOOP_VM = {"Version": "schema version of the VM object; informational"}
ACCEPTED_NOOP_CHIPSET = {"IsNumLockDisabled": "no keyboard LED state is emulated at boot"}
ACCEPTED_NOOP_MEMORY = {
    "AllowOvercommit": "QEMU guest RAM is always demand-paged host memory",
    "Backing": "QEMU guest RAM is always virtual (anonymous) memory",
    "EnableDeferredCommit": "QEMU guest RAM is committed on first touch anyway",
    "EnableHotHint": "memory hints are a Hyper-V enlightenment",
    "EnableColdHint": "memory hints are a Hyper-V enlightenment",
    "EnableColdDiscardHint": "free-page reporting of the balloon plays this role",
}
ACCEPTED_NOOP_UEFI = {
    "Console": "OVMF writes to the first serial port (COM1) whatever this says",
    "StopOnBootFailure": "OVMF drops to its shell; the VM keeps running",
}
ACCEPTED_NOOP_ATTACHMENT = {
    "SupportCompressedVolumes": "an NTFS host-volume hint",
    "AlwaysAllowSparseFiles": "an NTFS host-volume hint",
    "SupportEncryptedFiles": "an NTFS host-volume hint",
}
ACCEPTED_NOOP_DEVICES = {
    "Keyboard": "the chipset's PS/2 keyboard is always present",
    "Mouse": "the chipset's PS/2 mouse is always present",
    "Battery": "no battery is emulated; the guest sees mains power",
}
ACCEPTED_NOOP_SERVICES = frozenset({"Shutdown", "Heartbeat", "Timesync", "KvpExchange"})


# ------------------------------------------------------------------ translation


def build_plan(
    system_id: str,
    vm: Mapping[str, Any],
    system_dir: Path,
    *,
    accel: str = "tcg",
    formats: Mapping[str, str] | None = None,
    socket_dir: Path | None = None,
) -> QemuPlan:
    """Translate a VirtualMachine document into a QEMU command line.

    `formats` maps disk paths to image formats found by probing (for files
    whose extension does not say); `socket_dir` holds QEMU's unix sockets
    (default `system_dir`; the backend picks a shorter one when the path
    would not fit a socket address).
    """
    sockets = socket_dir or system_dir
    vm = _obj(vm, "VirtualMachine")
    _check_keys(
        vm,
        "VirtualMachine",
        {
            "StopOnReset",
            "Chipset",
            "ComputeTopology",
            "Devices",
            "Services",
            "RestoreState",
            "GuestConnection",
        },
        ACCEPTED_NOOP_VM,
    )

    chipset = _obj(vm.get("Chipset"), "VirtualMachine.Chipset")
    _check_keys(
        chipset,
        "VirtualMachine.Chipset",
        {
            "Uefi",
            "LinuxKernelDirect",
            "UseUtc",
            "BaseBoardSerialNumber",
            "ChassisSerialNumber",
            "ChassisAssetTag",
            "EnableHibernation",
        },
        ACCEPTED_NOOP_CHIPSET,
    )
    uefi = chipset.get("Uefi")
    kernel_direct = chipset.get("LinuxKernelDirect")
    if uefi is None and kernel_direct is None:
        raise invalid(
            "VirtualMachine.Chipset", "a boot method is required (Uefi or LinuxKernelDirect)"
        )
    machine = "q35" if uefi is not None else "pc"

    topo = _obj(vm.get("ComputeTopology"), "VirtualMachine.ComputeTopology")
    _check_keys(topo, "VirtualMachine.ComputeTopology", {"Memory", "Processor"})
    mem = _obj(topo.get("Memory"), "VirtualMachine.ComputeTopology.Memory")
    _check_keys(mem, "VirtualMachine.ComputeTopology.Memory", {"SizeInMB"}, ACCEPTED_NOOP_MEMORY)
    memory_mb = DEFAULT_MEMORY_MB
    if "SizeInMB" in mem:
        memory_mb = _int(
            mem["SizeInMB"], "VirtualMachine.ComputeTopology.Memory.SizeInMB", 16, 1 << 20
        )
    proc = _obj(topo.get("Processor"), "VirtualMachine.ComputeTopology.Processor")
    _check_keys(proc, "VirtualMachine.ComputeTopology.Processor", {"Count"})
    processors = DEFAULT_PROCESSORS
    if "Count" in proc:
        processors = _int(proc["Count"], "VirtualMachine.ComputeTopology.Processor.Count", 1, 288)

    argv = [
        QEMU,
        "-name",
        f"guest={_opt(system_id)},debug-threads=on",
        "-machine",
        f"{machine},accel={accel}",
        "-m",
        str(memory_mb),
        "-smp",
        str(processors),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        # Start stopped: the backend connects every chardev first, then `cont`
        # (a guest write to an unconnected port would otherwise block or EOF).
        "-S",
    ]
    if accel == "kvm":
        argv += ["-cpu", "host"]
    qmp = sockets / "qmp.sock"
    argv += ["-chardev", f"socket,id=qmp,path={_opt(str(qmp))},server=on,wait=off"]
    argv += ["-mon", "chardev=qmp,mode=control"]
    plan = QemuPlan(argv, qmp, machine, accel, memory_mb, processors)

    if vm.get("StopOnReset") is not None and _bool(vm["StopOnReset"], "VirtualMachine.StopOnReset"):
        argv.append("-no-reboot")

    # --- chipset
    if "UseUtc" in chipset:
        utc = _bool(chipset["UseUtc"], "VirtualMachine.Chipset.UseUtc")
        argv += ["-rtc", "base=utc" if utc else "base=localtime"]
    if chipset.get("EnableHibernation"):
        raise not_supported("VirtualMachine.Chipset.EnableHibernation")
    if "BaseBoardSerialNumber" in chipset:
        serial = _str(
            chipset["BaseBoardSerialNumber"], "VirtualMachine.Chipset.BaseBoardSerialNumber"
        )
        argv += ["-smbios", f"type=2,serial={_opt(serial)}"]
    chassis = []
    if "ChassisSerialNumber" in chipset:
        v = _str(chipset["ChassisSerialNumber"], "VirtualMachine.Chipset.ChassisSerialNumber")
        chassis.append(f"serial={_opt(v)}")
    if "ChassisAssetTag" in chipset:
        v = _str(chipset["ChassisAssetTag"], "VirtualMachine.Chipset.ChassisAssetTag")
        chassis.append(f"asset={_opt(v)}")
    if chassis:
        argv += ["-smbios", "type=3," + ",".join(chassis)]

    if kernel_direct is not None:
        _linux_kernel_direct(kernel_direct, argv)
    boot_target: tuple[str, int] | None = None
    if uefi is not None:
        boot_target = _uefi(uefi, argv, plan, system_dir)

    if machine == "q35":
        for i in range(Q35_HOTPLUG_PORTS):
            bus = f"hp{i}"
            argv += ["-device", f"pcie-root-port,id={bus},bus=pcie.0,chassis={i + 1}"]
            plan.hotplug_buses.append(bus)

    # --- devices
    devices = _obj(vm.get("Devices"), "VirtualMachine.Devices")
    _check_keys(
        devices,
        "VirtualMachine.Devices",
        {
            "Scsi",
            "ComPorts",
            "VirtioSerial",
            "Plan9",
            "NetworkAdapters",
            "HvSocket",
            "VirtualPMem",
        },
        ACCEPTED_NOOP_DEVICES,
    )
    for key in ACCEPTED_NOOP_DEVICES:
        if key in devices and _obj(devices[key], f"VirtualMachine.Devices.{key}"):
            raise not_supported(f"VirtualMachine.Devices.{key}", "settings are not supported")
    _scsi(devices.get("Scsi"), argv, plan, formats or {}, boot_target)
    # Named pipes live with QEMU's other sockets (socket addresses are short).
    _com_ports(devices.get("ComPorts"), argv, plan, sockets)
    _virtio_serial(devices.get("VirtioSerial"), vm.get("GuestConnection"), argv, plan, sockets)
    # Two chardevs serving one path: the second unlinks the first's socket.
    seen: set[Path] = set()
    for sock in plan.sockets():
        if sock in seen:
            raise invalid("VirtualMachine.Devices", f"two named pipes use the socket {sock}")
        seen.add(sock)
    _plan9(devices.get("Plan9"), argv, plan, system_dir)
    _network(devices.get("NetworkAdapters"), argv)
    _hvsocket(devices.get("HvSocket"))
    pmem = _obj(devices.get("VirtualPMem"), "VirtualMachine.Devices.VirtualPMem")
    if pmem.get("Devices"):
        raise not_supported("VirtualMachine.Devices.VirtualPMem.Devices")
    # Only limits remain (MaximumCount, MaximumSizeBytes): no devices, no effect.

    services = _obj(vm.get("Services"), "VirtualMachine.Services")
    for key, value in services.items():
        if key not in ACCEPTED_NOOP_SERVICES:
            raise not_supported(f"VirtualMachine.Services.{key}")
        if _obj(value, f"VirtualMachine.Services.{key}"):
            raise not_supported(f"VirtualMachine.Services.{key}", "settings are not supported")

    # A balloon lets Memory properties report the guest's view and lets a
    # SizeInMB modify shrink the guest (needs virtio_balloon in the guest).
    argv += ["-device", "virtio-balloon-pci,id=balloon0,deflate-on-oom=on"]

    restore = vm.get("RestoreState")
    if restore is not None:
        restore = _obj(restore, "VirtualMachine.RestoreState")
        _check_keys(restore, "VirtualMachine.RestoreState", {"SaveStateFilePath"})
        if "SaveStateFilePath" not in restore:
            raise invalid("VirtualMachine.RestoreState.SaveStateFilePath", "required")
        saved = _require_file(
            restore["SaveStateFilePath"], "VirtualMachine.RestoreState.SaveStateFilePath"
        )
        plan.restore_from = Path(saved)
        argv += ["-incoming", "defer"]
    return plan


def _linux_kernel_direct(value: Any, argv: list[str]) -> None:
    where = "VirtualMachine.Chipset.LinuxKernelDirect"
    kd = _obj(value, where)
    _check_keys(kd, where, {"KernelFilePath", "InitRdPath", "KernelCmdLine"})
    if "KernelFilePath" not in kd:
        raise invalid(f"{where}.KernelFilePath", "required")
    # An uncompressed vmlinux (ELF with a PVH note) boots through PVH, a
    # bzImage through the Linux boot protocol: QEMU tells them apart itself.
    argv += ["-kernel", _require_file(kd["KernelFilePath"], f"{where}.KernelFilePath")]
    if kd.get("InitRdPath"):
        argv += ["-initrd", _require_file(kd["InitRdPath"], f"{where}.InitRdPath")]
    if kd.get("KernelCmdLine"):
        argv += ["-append", _str(kd["KernelCmdLine"], f"{where}.KernelCmdLine").strip()]


def _uefi(value: Any, argv: list[str], plan: QemuPlan, system_dir: Path) -> tuple[str, int] | None:
    where = "VirtualMachine.Chipset.Uefi"
    uefi = _obj(value, where)
    _check_keys(
        uefi,
        where,
        {"BootThis", "ApplySecureBootTemplate", "SecureBootTemplateId", "EnableDebugger"},
        ACCEPTED_NOOP_UEFI,
    )
    if uefi.get("EnableDebugger"):
        raise not_supported(f"{where}.EnableDebugger")
    if uefi.get("ApplySecureBootTemplate", "Skip") != "Skip":
        raise not_supported(f"{where}.ApplySecureBootTemplate", "secure boot is not supported")
    if uefi.get("SecureBootTemplateId"):
        raise not_supported(f"{where}.SecureBootTemplateId", "secure boot is not supported")
    if not OVMF_CODE.is_file():
        raise HcsFault(
            hresults.E_FILE_NOT_FOUND,
            f"{where}: UEFI firmware {OVMF_CODE} is missing (apt-get install ovmf)",
        )
    # The firmware's variable store is per VM: each gets its own copy.
    vars_copy = system_dir / "OVMF_VARS.fd"
    plan.vars_copy = (OVMF_VARS, vars_copy)
    argv += [
        "-drive",
        f"if=pflash,format=raw,unit=0,readonly=on,file={_opt(str(OVMF_CODE))}",
        "-drive",
        f"if=pflash,format=raw,unit=1,file={_opt(str(vars_copy))}",
    ]
    boot = uefi.get("BootThis")
    if boot is None:
        return None
    bwhere = f"{where}.BootThis"
    boot = _obj(boot, bwhere)
    _check_keys(boot, bwhere, {"DeviceType", "DevicePath", "DiskNumber"})
    kind = boot.get("DeviceType", "ScsiDrive")
    if kind != "ScsiDrive":
        raise not_supported(f"{bwhere}.DeviceType", f"{kind!r} is not supported (only ScsiDrive)")
    controller = _str(boot.get("DevicePath", ""), f"{bwhere}.DevicePath")
    lun = _int(boot.get("DiskNumber", 0), f"{bwhere}.DiskNumber", 0, 255)
    return controller, lun


def _scsi(
    value: Any,
    argv: list[str],
    plan: QemuPlan,
    formats: Mapping[str, str],
    boot_target: tuple[str, int] | None,
) -> None:
    where = "VirtualMachine.Devices.Scsi"
    controllers = _obj(value, where)
    for index, (name, ctrl_value) in enumerate(controllers.items()):
        cwhere = f"{where}.{name}"
        ctrl = _obj(ctrl_value, cwhere)
        _check_keys(ctrl, cwhere, {"Attachments"}, {"DisableInterruptBatching": "a Hyper-V tuning"})
        plan.scsi_controllers[name] = index
        argv += ["-device", f"virtio-scsi-pci,id=scsi{index}"]
        for lun_key, att_value in _obj(ctrl.get("Attachments"), f"{cwhere}.Attachments").items():
            awhere = f"{cwhere}.Attachments.{lun_key}"
            if not re.fullmatch(r"\d{1,5}", lun_key) or int(lun_key) > 16383:
                raise invalid(awhere, "the key must be a LUN number 0..16383")
            disk = attachment_plan(name, int(lun_key), att_value, awhere, formats)
            clash = image_conflict(plan.disks, disk)
            if clash is not None:
                other = (
                    f"VirtualMachine.Devices.Scsi.{clash.controller}.Attachments.{clash.lun}.Path"
                )
                raise invalid(
                    f"{awhere}.Path",
                    f"{disk.path} is already attached as {other}; an image can be attached "
                    "more than once only if every attachment of it is ReadOnly",
                )
            plan.disks.append(disk)
            boot = boot_target == (name, disk.lun)
            argv += disk_args(disk, index, bootindex=0 if boot else None)
    # A BootThis naming no attachment is not an error: real clients send one
    # before any disk exists (Multipass's "Primary disk"); OVMF then tries
    # every bootable device in its default order, as Hyper-V's firmware does.


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def image_conflict(disks: list[DiskPlan], disk: DiskPlan) -> DiskPlan | None:
    """An attachment of the same image file that cannot coexist with `disk`.

    QEMU locks an image it writes: the same file (by device and inode, so also
    through a symlink or hard link) may be attached twice only read-only.
    """
    ident = _file_id(disk.path)
    if ident is None:
        return None
    for other in disks:
        if (disk.read_only and other.read_only) or _file_id(other.path) != ident:
            continue
        return other
    return None


def attachment_plan(
    controller: str, lun: int, value: Any, where: str, formats: Mapping[str, str]
) -> DiskPlan:
    """One Devices.Scsi attachment (also the Settings of a hot-add)."""
    att = _obj(value, where)
    _check_keys(att, where, {"Type", "Path", "ReadOnly", "CachingMode"}, ACCEPTED_NOOP_ATTACHMENT)
    kind = att.get("Type", "VirtualDisk")
    if kind not in ("VirtualDisk", "Iso"):
        raise not_supported(f"{where}.Type", f"{kind!r} is not supported (VirtualDisk, Iso)")
    path = _require_file(att.get("Path", ""), f"{where}.Path")
    read_only = _bool(att.get("ReadOnly", False), f"{where}.ReadOnly")
    caching = att.get("CachingMode", "Default")
    if caching not in ("Default", "Cached", "Uncached", "ReadOnlyCached"):
        raise invalid(f"{where}.CachingMode", f"{caching!r} is not a caching mode")
    if kind == "Iso":
        fmt = "raw"
        read_only = True
    else:
        fmt = formats.get(path) or format_from_extension(path) or "raw"
        if fmt not in KNOWN_FORMATS:
            raise not_supported(f"{where}.Path", f"image format {fmt!r} of {path}")
    return DiskPlan(
        controller, lun, path, fmt, read_only, kind == "Iso", cache_direct=caching == "Uncached"
    )


def blockdev_options(disk: DiskPlan, controller_index: int) -> dict[str, Any]:
    """The blockdev-add arguments of one disk (the same node as on the command line)."""
    file: dict[str, Any] = {"driver": "file", "filename": disk.path}
    if disk.read_only:
        file["read-only"] = True
    opts: dict[str, Any] = {
        "driver": disk.format,
        "node-name": disk.node_for(controller_index),
        "file": file,
        "read-only": disk.read_only,
    }
    if disk.cache_direct:
        opts["cache"] = {"direct": True}
    return opts


def device_options(disk: DiskPlan, controller_index: int) -> dict[str, Any]:
    return {
        "driver": "scsi-cd" if disk.cdrom else "scsi-hd",
        "id": disk.device_for(controller_index),
        "drive": disk.node_for(controller_index),
        "bus": f"scsi{controller_index}.0",
        "channel": 0,
        "scsi-id": 0,
        "lun": disk.lun,
    }


def _kv(opts: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in opts.items():
        if isinstance(v, dict):
            out += _kv(v, f"{prefix}{k}.")
        elif isinstance(v, bool):
            out.append(f"{prefix}{k}={'on' if v else 'off'}")
        else:
            out.append(f"{prefix}{k}={_opt(str(v))}")
    return out


def disk_args(disk: DiskPlan, controller_index: int, bootindex: int | None = None) -> list[str]:
    device = device_options(disk, controller_index)
    if bootindex is not None:
        device["bootindex"] = bootindex
    driver = device.pop("driver")
    return [
        "-blockdev",
        ",".join(_kv(blockdev_options(disk, controller_index))),
        "-device",
        ",".join([driver, *_kv(device)]),
    ]


def _com_ports(value: Any, argv: list[str], plan: QemuPlan, system_dir: Path) -> None:
    where = "VirtualMachine.Devices.ComPorts"
    for key, port_value in _obj(value, where).items():
        pwhere = f"{where}.{key}"
        if key not in ("0", "1"):
            raise invalid(pwhere, "the key must be 0 (COM1) or 1 (COM2)")
        port = _obj(port_value, pwhere)
        _check_keys(port, pwhere, {"NamedPipe"}, {"OptimizeForDebugger": "no kernel debugger"})
        if not port.get("NamedPipe"):
            continue  # a COM port with no pipe attached: nothing listens
        sock = pipe_socket_path(
            _str(port["NamedPipe"], f"{pwhere}.NamedPipe"), system_dir, f"{pwhere}.NamedPipe"
        )
        n = int(key)
        plan.com_ports[n] = sock
        argv += [
            "-chardev",
            f"socket,id=com{n},path={_opt(str(sock))},server=on,wait=off",
            "-device",
            f"isa-serial,chardev=com{n},index={n}",
        ]


def _virtio_serial(
    value: Any,
    guest_connection: Any,
    argv: list[str],
    plan: QemuPlan,
    sockets: Path,
) -> None:
    where = "VirtualMachine.Devices.VirtioSerial"
    serial = _obj(value, where)
    _check_keys(serial, where, {"Ports"})
    ports = _obj(serial.get("Ports"), f"{where}.Ports")
    gc = None
    if guest_connection is not None:
        gc = _obj(guest_connection, "VirtualMachine.GuestConnection")
        _check_keys(
            gc,
            "VirtualMachine.GuestConnection",
            {"UseVsock", "UseConnectedSuspend", "UseHostTimeZone"},
        )
        for key in ("UseConnectedSuspend", "UseHostTimeZone"):
            if gc.get(key):
                raise not_supported(f"VirtualMachine.GuestConnection.{key}")
        # UseVsock: there is no vhost-vsock on these hosts; the agent channel
        # is virtio-serial either way (the guest finds it by name).
    if not ports and gc is None:
        return
    argv += ["-device", "virtio-serial-pci,id=vser0"]
    if gc is not None:
        plan.agent_socket = sockets / "agent.sock"
        argv += [
            "-chardev",
            f"socket,id=agent,path={_opt(str(plan.agent_socket))},server=on,wait=off",
            "-device",
            f"virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT_NAME}",
        ]
    for i, (key, port_value) in enumerate(ports.items()):
        pwhere = f"{where}.Ports.{key}"
        port = _obj(port_value, pwhere)
        _check_keys(port, pwhere, {"NamedPipe", "Name", "ConsoleSupport"})
        name = _str(port.get("Name") or key, f"{pwhere}.Name")
        if name == AGENT_PORT_NAME:
            raise invalid(f"{pwhere}.Name", f"{name!r} is reserved for the guest connection")
        if not port.get("NamedPipe"):
            raise invalid(f"{pwhere}.NamedPipe", "required")
        sock = pipe_socket_path(
            _str(port["NamedPipe"], f"{pwhere}.NamedPipe"), sockets, f"{pwhere}.NamedPipe"
        )
        plan.serial_ports[key] = sock
        console = _bool(port.get("ConsoleSupport", False), f"{pwhere}.ConsoleSupport")
        argv += [
            "-chardev",
            f"socket,id=vport{i},path={_opt(str(sock))},server=on,wait=off",
            "-device",
            f"{'virtconsole' if console else 'virtserialport'},bus=vser0.0,chardev=vport{i},"
            f"name={_opt(name)}",
        ]


@dataclass(frozen=True, slots=True)
class Plan9Share:
    tag: str  # AccessName, else Name: the 9p mount tag, and the share's identity
    path: str  # host directory
    read_only: bool


def plan9_share(share_value: Any, where: str, *, check_path: bool = True) -> Plan9Share:
    """One Plan9Share object (a Devices.Plan9.Shares entry or a modify's Settings)."""
    share = _obj(share_value, where)
    _check_keys(
        share,
        where,
        {"Name", "AccessName", "Path", "ReadOnly", "Flags", "AllowedFiles"},
        {"Port": "a Hyper-V socket port; virtio-9p needs none"},
    )
    if share.get("AllowedFiles"):
        raise not_supported(f"{where}.AllowedFiles")
    tag = _str(share.get("AccessName") or share.get("Name") or "", f"{where}.Name")
    if not tag:
        raise invalid(f"{where}.Name", "a share name is required")
    if share.get("Path") in (None, ""):
        raise invalid(f"{where}.Path", "a host directory is required")
    path = _str(share["Path"], f"{where}.Path")
    if check_path and not os.path.isdir(path):
        raise HcsFault(hresults.E_PATH_NOT_FOUND, f"{where}.Path: directory not found: {path}")
    read_only = _bool(share.get("ReadOnly", False), f"{where}.ReadOnly")
    flags = _int(share.get("Flags", 0), f"{where}.Flags", 0, 0xFFFFFFFF)
    if flags & ~1:
        raise not_supported(f"{where}.Flags", f"0x{flags:x} (only ReadOnly = 0x1)")
    return Plan9Share(tag, path, read_only or bool(flags & 1))


def plan9_share_args(
    share_value: Any, where: str, index: int
) -> tuple[str, list[str], dict[str, Any]]:
    """(mount tag, command-line args, device_add arguments) of one Plan9 share."""
    share = plan9_share(share_value, where)
    tag = share.tag
    if len(tag) > 31:
        raise invalid(f"{where}.Name", "a mount tag of 1..31 characters is required")
    if tag == PLAN9_HOT_TAG:
        raise invalid(f"{where}.Name", f"{tag!r} is reserved for shares added at run time")
    fsdev = f"fs{index}"
    ro = ",readonly=on" if share.read_only else ""
    args = [
        "-fsdev",
        f"local,id={fsdev},path={_opt(share.path)},security_model=none{ro}",
        "-device",
        f"virtio-9p-pci,id=p9dev{index},fsdev={fsdev},mount_tag={_opt(tag)}",
    ]
    device = {"driver": "virtio-9p-pci", "id": f"p9dev{index}", "fsdev": fsdev, "mount_tag": tag}
    return tag, args, device


def plan9_hot_args(staging: Path) -> list[str]:
    """The extra 9p device of a VM with a Devices.Plan9 section.

    It exports the staging directory whose subdirectories are bind mounts of
    the shares added at run time; `multidevs=remap` keeps inode numbers unique
    across those mounts (they are different host filesystems).
    """
    return [
        "-fsdev",
        f"local,id=fshot,path={_opt(str(staging))},security_model=none,multidevs=remap",
        "-device",
        f"virtio-9p-pci,id=p9hot,fsdev=fshot,mount_tag={PLAN9_HOT_TAG}",
    ]


def _plan9(value: Any, argv: list[str], plan: QemuPlan, system_dir: Path) -> None:
    where = "VirtualMachine.Devices.Plan9"
    if value is None:
        return  # no section: no shares now, none can be added later
    p9 = _obj(value, where)
    _check_keys(p9, where, {"Shares"})
    shares = p9.get("Shares") or []
    if not isinstance(shares, list):
        raise invalid(f"{where}.Shares", "expected an array")
    for i, share in enumerate(shares):
        tag, args, _ = plan9_share_args(share, f"{where}.Shares[{i}]", i)
        if tag in plan.plan9_shares:
            raise invalid(f"{where}.Shares[{i}].Name", f"duplicate share {tag!r}")
        plan.plan9_shares.append(tag)
        argv += args
    # A Plan9 section (even an empty one: real clients send "Plan9": {} so
    # that shares can be added later) gets the run-time share device.
    plan.plan9_hot_dir = system_dir / PLAN9_HOT_DIR
    argv += plan9_hot_args(plan.plan9_hot_dir)


def _network(value: Any, argv: list[str]) -> None:
    where = "VirtualMachine.Devices.NetworkAdapters"
    for i, (name, nic_value) in enumerate(_obj(value, where).items()):
        nwhere = f"{where}.{name}"
        nic = _obj(nic_value, nwhere)
        _check_keys(
            nic,
            nwhere,
            {"EndpointId", "MacAddress"},
            {"InstanceId": "the device is named by its key", "DisableInterruptBatching": "tuning"},
        )
        endpoint = _str(nic.get("EndpointId") or "", f"{nwhere}.EndpointId")
        if endpoint:
            # The endpoint is a tap device the client created (HCS never makes
            # endpoints itself; see docs/vm.md).
            if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,15}", endpoint):
                raise invalid(f"{nwhere}.EndpointId", f"{endpoint!r} is not a tap device name")
            if not os.path.exists(f"/sys/class/net/{endpoint}"):
                raise HcsFault(
                    hresults.E_NOT_FOUND,
                    f"{nwhere}.EndpointId: no network device {endpoint!r} on this host "
                    "(create the tap device first)",
                )
            netdev = f"tap,id=net{i},ifname={endpoint},script=no,downscript=no"
        else:
            # No endpoint: user-mode networking (NAT through the host, no setup).
            netdev = f"user,id=net{i}"
        device = f"virtio-net-pci,id=nic{i},netdev=net{i}"
        if nic.get("MacAddress"):
            mac = mac_address(
                _str(nic["MacAddress"], f"{nwhere}.MacAddress"), f"{nwhere}.MacAddress"
            )
            device += f",mac={mac}"
        argv += ["-netdev", netdev, "-device", device]


def _hvsocket(value: Any) -> None:
    where = "VirtualMachine.Devices.HvSocket"
    hv = _obj(value, where)
    _check_keys(hv, where, {"HvSocketConfig"})
    cfg = _obj(hv.get("HvSocketConfig"), f"{where}.HvSocketConfig")
    # Security descriptors guard Hyper-V socket binds; with no Hyper-V sockets
    # they guard nothing. Service tables would need them: rejected.
    _check_keys(
        cfg,
        f"{where}.HvSocketConfig",
        {"ServiceTable"},
        {
            "DefaultBindSecurityDescriptor": "no Hyper-V sockets",
            "DefaultConnectSecurityDescriptor": "no Hyper-V sockets",
        },
    )
    if cfg.get("ServiceTable"):
        raise not_supported(f"{where}.HvSocketConfig.ServiceTable")
