"""Boot the utility VM with a raw QEMU command line (tests, benchmarks).

Not the VM backend: no HCS document, no QMP driving beyond a socket. pc
machine, TCG, PVH vmlinux, the fast command line, the agent's virtio-serial
port, a 9p share with mount_tag `hostshare`, a QMP socket.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QEMU = "qemu-system-x86_64"


@dataclass
class BootedUvm:
    """A utility VM started with a raw QEMU command line."""

    proc: subprocess.Popen[bytes]
    dir: Path
    agent_socket: str
    qmp_socket: str
    share: Path  # exported over 9p with mount_tag "hostshare"
    started: float
    console: Path
    argv: list[str] = field(default_factory=list)

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def uvm_argv(uvm: dict[str, Any], d: Path, share: Path, accel: str = "tcg") -> list[str]:
    """`uvm`: {"kernel", "initrd", "cmdline"}; `d`: where sockets and console.log go."""
    return [
        QEMU,
        "-M", "pc",
        "-accel", accel,
        "-m", "256",
        "-smp", "1",
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-serial", f"file:{d / 'console.log'}",
        "-kernel", str(uvm["kernel"]),
        "-initrd", str(uvm["initrd"]),
        "-append", str(uvm["cmdline"]),
        "-qmp", f"unix:{d / 'qmp.sock'},server=on,wait=off",
        "-device", "virtio-serial-pci,id=vser0",
        "-chardev", f"socket,id=agent,path={d / 'agent.sock'},server=on,wait=off",
        "-device", "virtserialport,bus=vser0.0,chardev=agent,name=org.aiohcs.agent",
        "-fsdev", f"local,id=fs0,path={share},security_model=none",
        "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=hostshare",
    ]  # fmt: skip


def boot_uvm(uvm: dict[str, Any]) -> BootedUvm:
    """Start QEMU (not waiting for anything); `BootedUvm.stop()` kills it and removes its dir."""
    # Short path: unix socket paths are limited to 108 bytes.
    d = Path(tempfile.mkdtemp(prefix="aiohcs-vm-", dir="/tmp"))
    share = d / "share"
    share.mkdir()
    argv = uvm_argv(uvm, d, share)
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    return BootedUvm(
        proc, d, str(d / "agent.sock"), str(d / "qmp.sock"), share, started,
        d / "console.log", argv,
    )  # fmt: skip
