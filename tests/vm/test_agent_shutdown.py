"""Powering the utility VM off: through the agent, and with QEMU's ACPI power button."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable

import pytest

from aiohcs.host.vm.agent import AgentClient
from aiohcs.uvm.raw import BootedUvm

pytestmark = pytest.mark.timeout(120)


async def test_agent_shutdown_powers_off(uvm_factory: Callable[[], BootedUvm]) -> None:
    vm = uvm_factory()
    c = await AgentClient.connect(vm.agent_socket, timeout=60)
    p = await c.create_process({"CommandArgs": ["sleep", "1000"]})
    t0 = time.monotonic()
    await c.shutdown(grace=1.0)
    rc = await asyncio.to_thread(vm.proc.wait, 30)
    assert rc == 0
    await asyncio.wait_for(c.closed, 10)
    assert p.exited.done()  # failed with AgentDisconnected: the guest is gone
    print(f"\nshutdown request -> QEMU exit: {time.monotonic() - t0:.2f} s")
    assert "reboot: Power down" in vm.console_text()


def qmp(path: str, command: str) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rw")
    f.readline()  # greeting
    for cmd in ("qmp_capabilities", command):
        f.write(json.dumps({"execute": cmd}) + "\n")
        f.flush()
        while "return" not in json.loads(f.readline()):
            pass
    s.close()


async def test_acpi_power_button(uvm_factory: Callable[[], BootedUvm]) -> None:
    vm = uvm_factory()
    c = await AgentClient.connect(vm.agent_socket, timeout=60)
    # The watcher opens the button after the "late" modules loaded in the background.
    for _ in range(100):
        procs = await c.process_list()
        if len(procs) and not any(x["ImageName"] == "init" and x["ProcessId"] != 1 for x in procs):
            break
        await asyncio.sleep(0.1)
    qmp(vm.qmp_socket, "system_powerdown")
    rc = await asyncio.to_thread(vm.proc.wait, 30)
    assert rc == 0
    assert "power button" in vm.console_text()
