"""VirtualMachine document bodies shared by the VM tests."""

from __future__ import annotations

from typing import Any


def uefi_disk_vm(disk: str, **uefi: Any) -> dict[str, Any]:
    """A ``VirtualMachine`` body booting ``disk`` with UEFI: LUN 0 of SCSI controller
    "Primary disk", which ``Uefi.BootThis`` points at; ``uefi``: more ``Uefi`` fields."""
    return {
        "Chipset": {
            "Uefi": {
                "BootThis": {
                    "DeviceType": "ScsiDrive",
                    "DevicePath": "Primary disk",
                    "DiskNumber": 0,
                },
                **uefi,
            }
        },
        "Devices": {
            "Scsi": {"Primary disk": {"Attachments": {"0": {"Type": "VirtualDisk", "Path": disk}}}}
        },
    }
