"""Review regressions: named-pipe socket paths and QEMU dying early in start.

- A Windows pipe name becomes `<socket dir>/pipe-NAME.sock` (up to 70 bytes),
  but the socket directory was chosen by the length of `agent.sock` only: with
  a 64-character system id (containerd/hcsshim ids) under /var/lib/aiohcs and
  a pipe name of 9+ characters QEMU could not bind the socket and the start
  failed.
- An absolute pipe path longer than a unix socket address, and two pipes on
  one socket, were accepted at create and failed (or silently clashed) later.
- QEMU exiting before QMP answered (a file that is not a kernel, a chardev it
  cannot create) was reported as E_FAIL "Connection reset by peer" instead of
  HCS_E_TERMINATED_DURING_START.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from host.conftest import RunningService, start_service, stop_service
from host.wire_client import WireClient, connected

from aiohcs import hresults
from aiohcs._wire import Op
from aiohcs.host.errors import HcsFault
from aiohcs.host.vm import qemu

from .test_qemu import files, kd_vm  # noqa: F401  (fixture)
from .test_vm_backend import exit_event, expect_fault, guest, vm_doc  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(180)


def qemu_running(system_id: str) -> bool:
    for pid in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes() if pid.isdigit() else b""
        except OSError:
            continue
        if f"guest={system_id},".encode() in cmd:
            return True
    return False


def build(vm: dict[str, Any], tmp_path: Path) -> qemu.QemuPlan:
    return qemu.build_plan("vm1", vm, tmp_path / "sys")


def fault(vm: dict[str, Any], tmp_path: Path) -> HcsFault:
    with pytest.raises(HcsFault) as info:
        build(vm, tmp_path)
    return info.value


def test_pipe_errors_name_the_field(files: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    f = fault(kd_vm(files, Devices={"ComPorts": {"1": {"NamedPipe": "relative"}}}), tmp_path)
    assert f.hresult == hresults.HCS_E_INVALID_JSON
    assert f.message.startswith("VirtualMachine.Devices.ComPorts.1.NamedPipe: "), f.message
    vs = {"VirtioSerial": {"Ports": {"k": {"NamedPipe": "rel/x"}}}}
    f = fault(kd_vm(files, Devices=vs), tmp_path)
    assert f.message.startswith("VirtualMachine.Devices.VirtioSerial.Ports.k.NamedPipe: ")


def test_absolute_pipe_longer_than_a_socket_address(
    files: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    long_path = "/tmp/" + "q" * 110 + ".sock"
    f = fault(kd_vm(files, Devices={"ComPorts": {"0": {"NamedPipe": long_path}}}), tmp_path)
    assert f.hresult == hresults.HCS_E_INVALID_JSON
    assert "ComPorts.0.NamedPipe" in f.message and "unix socket" in f.message
    ok = "/tmp/" + "q" * 90 + ".sock"  # 100 bytes: fits
    assert build(kd_vm(files, Devices={"ComPorts": {"0": {"NamedPipe": ok}}}), tmp_path)


def test_two_pipes_on_one_socket(files: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    devices = {"ComPorts": {"0": {"NamedPipe": r"\\.\pipe\x"}, "1": {"NamedPipe": r"\\.\pipe\x"}}}
    f = fault(kd_vm(files, Devices=devices), tmp_path)
    assert f.hresult == hresults.HCS_E_INVALID_JSON and "pipe-x.sock" in f.message
    devices2: dict[str, Any] = {
        "ComPorts": {"0": {"NamedPipe": "/tmp/same.sock"}},
        "VirtioSerial": {"Ports": {"a": {"NamedPipe": "/tmp/same.sock"}}},
    }
    assert fault(kd_vm(files, Devices=devices2), tmp_path).hresult == hresults.HCS_E_INVALID_JSON


# ------------------------------------------------------------------ real service


@pytest.fixture(scope="module")
def short_service(guest: dict[str, Any]) -> Iterator[RunningService]:  # noqa: F811
    # A short state dir, so that agent.sock fits in the system dir.
    base = Path(tempfile.mkdtemp(prefix="rvs", dir="/tmp"))
    svc = start_service(base, "--accel", "tcg")
    yield svc
    stop_service(svc)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def client(short_service: RunningService) -> AsyncIterator[WireClient]:
    async with connected(short_service.socket) as c:
        yield c


async def test_long_system_id_with_a_com_pipe_starts(
    client: WireClient,
    short_service: RunningService,
    guest: dict[str, Any],  # noqa: F811
) -> None:
    systems = short_service.state_dir / "systems"
    # The longest id whose system dir still takes agent.sock (<= 100 bytes).
    sid = "L" * (100 - len(str(systems)) - 2 - len("agent.sock"))
    assert len(str(systems / sid / "agent.sock")) == 100
    doc = vm_doc(
        guest,
        agent=False,
        Devices={"ComPorts": {"0": {"NamedPipe": r"\\.\pipe\guest-console-com1"}}},
    )
    h = await client.create_system(sid, doc)
    await client.call(Op.START, handle=h, timeout=60)  # was: socket path too long
    await client.call(Op.TERMINATE, handle=h)
    assert (await exit_event(client, h))["ExitType"] == "ForcedExit"
    assert short_service.alive()


async def test_qemu_dying_before_qmp_is_terminated_during_start(
    client: WireClient,
    short_service: RunningService,
    guest: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    not_a_kernel = tmp_path / "notkernel"
    not_a_kernel.write_bytes(b"hello world\n" * 100)
    doc = vm_doc(guest, agent=False)
    doc["VirtualMachine"]["Chipset"]["LinuxKernelDirect"]["KernelFilePath"] = str(not_a_kernel)
    # Which of QMP's reset and QEMU's exit is seen first is a race: try a few.
    for i in range(6):
        h = await client.create_system(f"notkernel{i}", doc)
        e = await expect_fault(
            client.call(Op.START, handle=h, timeout=60),
            hresults.HCS_E_TERMINATED_DURING_START,
            "QEMU exited",
        )
        assert "Connection reset" not in e.message
        assert not qemu_running(f"notkernel{i}")
    assert short_service.alive()
