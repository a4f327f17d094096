"""Shared fixtures of the VM tests.

`uvm` (session): the default utility VM — `{"kernel": Path, "initrd": Path,
"cmdline": str}` — built with `aiohcs.uvm` if missing (a cached build takes a
second). Skips only when qemu-system-x86_64 is missing; a failing build is an
error. `booted_uvm` / `uvm_factory` start it (aiohcs.uvm.raw) with a raw QEMU command line (pc,
TCG, PVH vmlinux, the fast cmdline, the agent's virtio-serial port) for tests
that talk to the agent without the host service.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aiohcs.uvm.raw import QEMU, BootedUvm, boot_uvm


@pytest.fixture(scope="session")
def uvm() -> dict[str, Any]:
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
    from aiohcs.uvm import boot_cmdline, ensure

    paths = ensure()
    return {"kernel": paths.kernel, "initrd": paths.initrd, "cmdline": boot_cmdline()}


@pytest.fixture(scope="module")
def booted_uvm(uvm: dict[str, Any]) -> Iterator[BootedUvm]:
    """One VM shared by the tests of a module; each test connects its own client."""
    vm = boot_uvm(uvm)
    try:
        yield vm
    finally:
        vm.stop()


@pytest.fixture(scope="session")
def agent_binary() -> Path:
    native = Path(__file__).resolve().parents[2] / "aiohcs" / "_native"
    subprocess.run(["make", "-s", "-C", str(native), "build/aiohcs-agent"], check=True)
    return native / "build" / "aiohcs-agent"


@pytest.fixture
def uvm_factory(uvm: dict[str, Any]) -> Iterator[Callable[[], BootedUvm]]:
    """Boot extra VMs in a test (stopped at its end): `vm = uvm_factory()`."""
    vms: list[BootedUvm] = []

    def boot() -> BootedUvm:
        vms.append(boot_uvm(uvm))
        return vms[-1]

    yield boot
    for vm in vms:
        vm.stop()
