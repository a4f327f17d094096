"""Builders for the common ComputeSystem documents.  They return ordinary models:
change anything afterwards, then pass the model to :func:`aiohcs.create_system`.

>>> doc = container_from_rootfs("/srv/rootfs", owner="me")
>>> doc.to_json()
'{"Owner":"me","SchemaVersion":{"Major":2,"Minor":1},"Container":{"Storage":{"Path":"/srv/rootfs"}},"ShouldTerminateOnLastHandleClosed":true}'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._models import (
    ApplySecureBootTemplateType,
    Attachment,
    AttachmentType,
    Chipset,
    ComputeSystem,
    Container,
    ContainerMemory,
    ContainerProcessor,
    Devices,
    Layer,
    LinuxKernelDirect,
    MappedDirectory,
    Scsi,
    Storage,
    Topology,
    Uefi,
    UefiBootDevice,
    UefiBootEntry,
    Version,
    VirtualMachine,
    VirtualMachineMemory,
    VirtualMachineProcessor,
)

SCHEMA_VERSION = (2, 1)
"""Schema version the builders write (what hcsshim uses for containers and utility VMs)."""


def _system(
    owner: str | None,
    terminate_on_last_handle_closed: bool,
    *,
    container: Container | None = None,
    virtual_machine: VirtualMachine | None = None,
    minor: int = SCHEMA_VERSION[1],
) -> ComputeSystem:
    fields: dict[str, Any] = {}
    if owner is not None:
        fields["owner"] = owner
    fields["schema_version"] = Version(major=SCHEMA_VERSION[0], minor=minor)
    if container is not None:
        fields["container"] = container
    if virtual_machine is not None:
        fields["virtual_machine"] = virtual_machine
    fields["should_terminate_on_last_handle_closed"] = terminate_on_last_handle_closed
    return ComputeSystem(**fields)


def _container(
    storage: Storage,
    mounts: Mapping[str, str] | Sequence[MappedDirectory],
    memory_mb: int | None,
    cpu_count: int | None,
) -> Container:
    c = Container(storage=storage)
    if mounts:
        c.mapped_directories = (
            [MappedDirectory(host_path=h, container_path=p) for h, p in mounts.items()]
            if isinstance(mounts, Mapping)
            else list(mounts)
        )
    if memory_mb is not None:
        c.memory = ContainerMemory(size_in_mb=memory_mb)
    if cpu_count is not None:
        c.processor = ContainerProcessor(count=cpu_count)
    return c


def container_from_rootfs(
    rootfs: str,
    *,
    owner: str | None = None,
    mounts: Mapping[str, str] | Sequence[MappedDirectory] = (),
    memory_mb: int | None = None,
    cpu_count: int | None = None,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """A container whose root filesystem is the directory ``rootfs`` (``Storage.Path``,
    no layers), used in place.  ``mounts`` maps host paths to container paths."""
    storage = Storage(path=rootfs)
    return _system(
        owner,
        terminate_on_last_handle_closed,
        container=_container(storage, mounts, memory_mb, cpu_count),
    )


def container_from_layers(
    layers: Sequence[str | Layer],
    *,
    scratch: str | None = None,
    owner: str | None = None,
    mounts: Mapping[str, str] | Sequence[MappedDirectory] = (),
    memory_mb: int | None = None,
    cpu_count: int | None = None,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """A container on read-only ``layers`` (topmost first, base last, as HCS lists
    them), with its writable layer in ``scratch`` (``Storage.Path``) if given."""
    if not layers:
        raise ValueError("container_from_layers needs at least one layer")
    storage = Storage(layers=[x if isinstance(x, Layer) else Layer(path=x) for x in layers])
    if scratch is not None:
        storage.path = scratch
    return _system(
        owner,
        terminate_on_last_handle_closed,
        container=_container(storage, mounts, memory_mb, cpu_count),
    )


def _topology(memory_mb: int, cpu_count: int) -> Topology:
    return Topology(
        memory=VirtualMachineMemory(size_in_mb=memory_mb),
        processor=VirtualMachineProcessor(count=cpu_count),
    )


def _scsi(disks: Sequence[str], controller: str, read_only: bool = False) -> dict[str, Scsi]:
    attachments = {}
    for lun, path in enumerate(disks):
        a = Attachment(type=AttachmentType.VirtualDisk, path=path)
        if read_only:
            a.read_only = True
        attachments[str(lun)] = a
    return {controller: Scsi(attachments=attachments)}


def linux_vm(
    kernel: str,
    *,
    initrd: str | None = None,
    cmdline: str | None = None,
    memory_mb: int = 1024,
    cpu_count: int = 1,
    disks: Sequence[str] = (),
    owner: str | None = None,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """A Linux VM booting ``kernel`` directly (``Chipset.LinuxKernelDirect``, schema 2.2+),
    with optional ``initrd`` and kernel command line; ``disks`` become LUNs 0.. of SCSI
    controller ``"0"``."""
    direct = LinuxKernelDirect(kernel_file_path=kernel)
    if initrd is not None:
        direct.init_rd_path = initrd
    if cmdline is not None:
        direct.kernel_cmd_line = cmdline
    vm = VirtualMachine(
        chipset=Chipset(linux_kernel_direct=direct),
        compute_topology=_topology(memory_mb, cpu_count),
    )
    if disks:
        vm.devices = Devices(scsi=_scsi(disks, "0"))
    return _system(owner, terminate_on_last_handle_closed, virtual_machine=vm, minor=2)


def uefi_vm(
    disk: str,
    *,
    memory_mb: int = 2048,
    cpu_count: int = 2,
    controller: str = "Primary disk",
    secure_boot_template: str | None = None,
    owner: str | None = None,
    terminate_on_last_handle_closed: bool = True,
) -> ComputeSystem:
    """A VM booting the disk image ``disk`` with UEFI: the image is LUN 0 of SCSI
    controller ``controller`` and ``Uefi.BootThis`` points at it (the shape of the
    official tutorial).  ``secure_boot_template`` (a GUID) turns on Secure Boot."""
    uefi = Uefi(
        boot_this=UefiBootEntry(
            device_type=UefiBootDevice.ScsiDrive, device_path=controller, disk_number=0
        )
    )
    if secure_boot_template is not None:
        uefi.secure_boot_template_id = secure_boot_template
        uefi.apply_secure_boot_template = ApplySecureBootTemplateType.Apply
    vm = VirtualMachine(
        chipset=Chipset(uefi=uefi),
        compute_topology=_topology(memory_mb, cpu_count),
        devices=Devices(scsi=_scsi([disk], controller)),
    )
    return _system(owner, terminate_on_last_handle_closed, virtual_machine=vm)


__all__ = [
    "SCHEMA_VERSION",
    "container_from_layers",
    "container_from_rootfs",
    "linux_vm",
    "uefi_vm",
]
