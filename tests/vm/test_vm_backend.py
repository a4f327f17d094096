"""Integration: the real host service running QEMU VMs on TCG.

The guest is the utility VM (`uvm` fixture of tests/vm/conftest.py: the guest
agent is init) when it is available; otherwise a kernel and initramfs named by
AIOHCS_TEST_KERNEL / AIOHCS_TEST_INITRD (whose init prints `COUNT n` lines on
ttyS0), and the tests that need the agent are skipped. Boots are shared where a
test can go on from where the previous step left the VM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from host.conftest import RunningService, start_service, stop_service
from host.wire_client import ServiceError, WireClient, connected, read_until_eof, unique_id

from aiohcs import hresults
from aiohcs._wire import EventType, FdMask, Op

from .documents import uefi_disk_vm

pytestmark = pytest.mark.timeout(180)

FAST_CMDLINE = (
    "console=ttyS0 panic=-1 quiet no-timer-check tsc=reliable mitigations=off "
    "i8042.noaux i8042.nokbd cryptomgr.notests"
)


@pytest.fixture(scope="module")
def guest(request: pytest.FixtureRequest) -> dict[str, Any]:
    if os.geteuid() != 0 or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs root and qemu-system-x86_64")
    try:
        uvm = request.getfixturevalue("uvm")
        return {
            "kernel": str(uvm["kernel"]),
            "initrd": str(uvm["initrd"]),
            "cmdline": str(uvm.get("cmdline") or FAST_CMDLINE),
            "agent": True,
        }
    except pytest.FixtureLookupError:
        pass
    kernel = os.environ.get("AIOHCS_TEST_KERNEL")
    initrd = os.environ.get("AIOHCS_TEST_INITRD")
    if not (kernel and initrd and os.path.isfile(kernel) and os.path.isfile(initrd)):
        pytest.skip("no utility VM (uvm fixture) and no AIOHCS_TEST_KERNEL/AIOHCS_TEST_INITRD")
    # AIOHCS_TEST_AGENT=1: that initramfs runs the guest agent as init.
    agent = os.environ.get("AIOHCS_TEST_AGENT") == "1"
    return {"kernel": kernel, "initrd": initrd, "cmdline": FAST_CMDLINE, "agent": agent}


@pytest.fixture(scope="module")
def vm_service(
    tmp_path_factory: pytest.TempPathFactory, guest: dict[str, Any]
) -> Iterator[RunningService]:
    svc = start_service(tmp_path_factory.mktemp("vmsvc"), "--accel", "tcg")
    yield svc
    stop_service(svc)
    import sys

    sys.stderr.write("---- service log (tail) ----\n" + svc.log_text()[-6000:])


@pytest.fixture
async def client(vm_service: RunningService) -> AsyncIterator[WireClient]:
    async with connected(vm_service.socket) as c:
        yield c


def new_id(prefix: str = "vm") -> str:
    return unique_id(prefix)


def vm_doc(guest: dict[str, Any], *, agent: bool | None = None, **vm: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "StopOnReset": True,
        "Chipset": {
            "LinuxKernelDirect": {
                "KernelFilePath": guest["kernel"],
                "InitRdPath": guest["initrd"],
                "KernelCmdLine": guest["cmdline"],
            }
        },
        "ComputeTopology": {"Memory": {"SizeInMB": 256}, "Processor": {"Count": 1}},
    }
    if guest["agent"] if agent is None else agent:
        body["GuestConnection"] = {}
    body.update(vm)
    return {"SchemaVersion": {"Major": 2, "Minor": 1}, "VirtualMachine": body}


async def props(c: WireClient, h: int, *types: str) -> dict[str, Any]:
    r = await c.call(Op.GET_PROPERTIES, json.dumps({"PropertyTypes": list(types)}), handle=h)
    out: dict[str, Any] = r.json()
    return out


async def expect_fault(coro: Any, hr: int, needle: str = "") -> ServiceError:
    with pytest.raises(ServiceError) as info:
        await coro
    assert info.value.hresult == hr, info.value
    assert needle in info.value.message, info.value
    return info.value


async def exit_event(c: WireClient, h: int, timeout: float = 60) -> dict[str, Any]:
    """The SystemExited payload (GuestConnectionClosed may come first)."""
    while True:
        ev = await c.next_event(h, timeout)
        if ev.header.op == EventType.SYSTEM_EXITED:
            doc: dict[str, Any] = ev.json()
            return doc


def assert_alive(svc: RunningService) -> None:
    assert svc.alive(), svc.log_text()[-3000:]


class ComReader:
    """Reads the guest console (COM1 socket) in the background."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.text = ""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, self.path)

        async def pump() -> None:
            with sock:
                while True:
                    data = await loop.sock_recv(sock, 65536)
                    if not data:
                        return
                    self.text += data.decode(errors="replace")

        self._task = asyncio.ensure_future(pump())

    def counts(self) -> list[int]:
        return [int(n) for n in re.findall(r"COUNT (\d+)", self.text)]

    async def wait_count(self, above: int, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.counts()
            if counts and counts[-1] > above:
                return counts[-1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no COUNT above {above} on the console: {self.text[-500:]!r}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def qemu_pid(system_id: str) -> int:
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmd
            and cmd[0].endswith(b"qemu-system-x86_64")
            and f"guest={system_id},".encode() in b" ".join(cmd)
        ):
            return int(d)
    raise AssertionError(f"no QEMU process for {system_id}")


# ------------------------------------------------------------------ bad input


async def test_bad_documents(
    client: WireClient, vm_service: RunningService, guest: dict[str, Any], tmp_path: Path
) -> None:
    doc = vm_doc(guest)
    doc["VirtualMachine"]["Chipset"]["LinuxKernelDirect"]["KernelFilePath"] = "/nonexistent/vmlinux"
    e = await expect_fault(
        client.create_system(new_id(), doc), hresults.E_FILE_NOT_FOUND, "/nonexistent/vmlinux"
    )
    assert "VirtualMachine.Chipset.LinuxKernelDirect.KernelFilePath" in e.message

    doc = vm_doc(guest, Devices={"VirtualPci": {"gpu": {}}})
    e = await expect_fault(client.create_system(new_id(), doc), hresults.E_NOT_SUPPORTED)
    assert e.message == "VirtualMachine.Devices.VirtualPci: not supported"

    corrupt = tmp_path / "corrupt.qcow2"
    corrupt.write_bytes(b"this is not a qcow2 image" * 100)
    doc = vm_doc(
        guest,
        Devices={
            "Scsi": {"c0": {"Attachments": {"0": {"Type": "VirtualDisk", "Path": str(corrupt)}}}}
        },
    )
    e = await expect_fault(
        client.create_system(new_id(), doc), hresults.E_INVALID_DATA, str(corrupt)
    )
    assert "VirtualMachine.Devices.Scsi.c0.Attachments.0.Path" in e.message

    not_saved = tmp_path / "state.bin"
    not_saved.write_bytes(b"garbage" * 100)
    doc = vm_doc(guest, RestoreState={"SaveStateFilePath": str(not_saved)})
    await expect_fault(
        client.create_system(new_id(), doc),
        hresults.E_INVALID_DATA,
        "RestoreState.SaveStateFilePath",
    )
    assert_alive(vm_service)


# ------------------------------------------------------------------ lifecycle


async def test_lifecycle_save_restore(
    client: WireClient, vm_service: RunningService, guest: dict[str, Any], tmp_path: Path
) -> None:
    """Start, no-agent process error, pause/resume, save, restore, truncated restore, kill.

    The VM has no guest connection. With the fallback guest its console counter
    shows the guest continuing across save/restore; the utility VM's counter
    check is in test_agent_processes_save_restore_shutdown.
    """
    counting = not guest["agent"]
    com = f"/tmp/{unique_id('aiohcs-vmt')}.sock"
    devices = {"ComPorts": {"0": {"NamedPipe": com}}}
    doc = vm_doc(guest, agent=False, Devices=devices)
    h = await client.create_system(new_id(), doc)
    t0 = time.monotonic()
    await client.call(Op.START, handle=h, timeout=60)
    console = ComReader(com)
    await console.start()
    if counting:
        first = await console.wait_count(2)
        print(f"boot to COUNT {first}: {time.monotonic() - t0:.2f}s")
    p = await props(client, h, "Statistics", "Memory")
    assert p["State"] == "Running" and p["SystemType"] == "VirtualMachine"
    assert p["Statistics"]["Uptime100ns"] > 0
    assert p["Statistics"]["Processor"]["TotalRuntime100ns"] > 0
    assert p["Memory"]["VirtualMachineMemory"]["AvailableMemory"] == 256

    await expect_fault(
        client.create_process(h, {"CommandLine": "true"}),
        hresults.HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
        "no guest connection",
    )
    await expect_fault(
        props(client, h, "GuestConnection"),
        hresults.HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
        "no guest connection",
    )
    state_file = tmp_path / "saved.bin"
    save_options = json.dumps({"SaveType": "ToFile", "SaveStateFilePath": str(state_file)})
    await expect_fault(
        client.call(Op.SAVE, save_options, handle=h), hresults.HCS_E_INVALID_STATE, "Running"
    )
    await client.call(Op.PAUSE, handle=h)
    assert (await props(client, h))["State"] == "Paused"
    if counting:
        frozen = console.counts()[-1]
        await asyncio.sleep(0.8)
        assert console.counts()[-1] <= frozen + 1
    await client.call(Op.RESUME, handle=h)
    assert (await props(client, h))["State"] == "Running"
    if counting:
        await console.wait_count(frozen + 1)

    await client.call(Op.PAUSE, handle=h)
    before = console.counts()[-1] if counting else 0
    t0 = time.monotonic()
    await client.call(Op.SAVE, save_options, handle=h)
    print(f"save: {time.monotonic() - t0:.2f}s, {state_file.stat().st_size} bytes")
    ev = await exit_event(client, h)
    assert ev["ExitType"] == "GracefulExit"
    await console.stop()
    client.notify(Op.CLOSE_SYSTEM, handle=h)

    # A truncated copy fails to load: a clear error, the service lives on.
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(state_file.read_bytes()[: state_file.stat().st_size // 2])
    bad = vm_doc(
        guest, agent=False, Devices=devices, RestoreState={"SaveStateFilePath": str(truncated)}
    )
    hb = await client.create_system(new_id(), bad)
    e = await expect_fault(
        client.call(Op.START, handle=hb, timeout=60),
        hresults.E_INVALID_DATA,
        "RestoreState.SaveStateFilePath",
    )
    print("truncated restore:", e.message[:200])
    client.notify(Op.CLOSE_SYSTEM, handle=hb)
    assert_alive(vm_service)

    restored_id = new_id()
    doc = vm_doc(
        guest, agent=False, Devices=devices, RestoreState={"SaveStateFilePath": str(state_file)}
    )
    h2 = await client.create_system(restored_id, doc)
    t0 = time.monotonic()
    await client.call(Op.START, handle=h2, timeout=60)
    print(f"restore: {time.monotonic() - t0:.2f}s")
    assert (await props(client, h2))["State"] == "Running"
    console = ComReader(com)
    await console.start()
    if counting:
        after = await console.wait_count(0)
        # The guest continued where it stopped, not from a new boot.
        assert before <= after <= before + 6, (before, after, console.text[-300:])
        assert "INIT-RUNS" not in console.text

    # QEMU killed behind the service's back -> UnexpectedExit.
    os.kill(qemu_pid(restored_id), signal.SIGKILL)
    ev = await exit_event(client, h2)
    assert ev["ExitType"] == "UnexpectedExit"
    await console.stop()
    assert_alive(vm_service)


async def test_terminate_and_acpi_shutdown(
    client: WireClient, vm_service: RunningService, guest: dict[str, Any]
) -> None:
    h = await client.create_system(new_id(), vm_doc(guest, agent=False))
    await client.call(Op.START, handle=h, timeout=60)
    await client.call(Op.TERMINATE, handle=h)
    ev = await exit_event(client, h)
    assert ev["ExitType"] == "ForcedExit"
    p = await props(client, h)
    assert p["State"] == "Stopped" and p["ExitType"] == "ForcedExit"

    # No agent: the ACPI power button; a guest without a handler ignores it,
    # and the grace period ends the VM. Either way the exit is graceful.
    h = await client.create_system(new_id(), vm_doc(guest, agent=False))
    await client.call(Op.START, handle=h, timeout=60)
    await client.call(Op.SHUTDOWN, json.dumps({"GracePeriodSeconds": 2}), handle=h)
    ev = await exit_event(client, h)
    assert ev["ExitType"] == "GracefulExit"
    assert_alive(vm_service)


# ------------------------------------------------------------------ with the agent


@pytest.fixture
def agent_guest(guest: dict[str, Any]) -> dict[str, Any]:
    if not guest["agent"]:
        pytest.skip("needs the utility VM with the guest agent (uvm fixture)")
    return guest


async def test_agent_processes_save_restore_shutdown(
    client: WireClient, vm_service: RunningService, agent_guest: dict[str, Any], tmp_path: Path
) -> None:
    sid = new_id()
    h = await client.create_system(
        sid, vm_doc(agent_guest, Devices={"Scsi": {"primary": {"Attachments": {}}}})
    )
    t0 = time.monotonic()
    await client.call(Op.START, handle=h, timeout=90)
    print(f"boot to guest connection: {time.monotonic() - t0:.2f}s")
    p = await props(client, h, "GuestConnection")
    assert p["GuestConnectionInfo"]["ProtocolVersion"] >= 1

    ph, r = await client.create_process(
        h,
        {
            "CommandArgs": ["/bin/sh", "-c", "echo hello from the vm; exit 7"],
            "CreateStdOutPipe": True,
        },
    )
    out = r.fd(FdMask.STDOUT)
    assert out is not None
    assert b"hello from the vm" in await read_until_eof(out)
    ev = await client.next_event(ph, 30)
    assert ev.json()["ExitCode"] == 7
    client.notify(Op.CLOSE_PROCESS, handle=ph)

    # A counter that writes to a file keeps counting across save/restore.
    _ch, r = await client.create_process(
        h,
        {
            "CommandArgs": [
                "/bin/sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done",
            ]
        },
    )
    r.close_fds()
    pl = await props(client, h, "ProcessList")
    assert any(x["ProcessId"] == r.header.arg for x in pl["ProcessList"])

    async def count() -> int:
        qh, rr = await client.create_process(
            h, {"CommandArgs": ["cat", "/tmp/count"], "CreateStdOutPipe": True}
        )
        fd = rr.fd(FdMask.STDOUT)
        assert fd is not None
        text = await read_until_eof(fd)
        client.notify(Op.CLOSE_PROCESS, handle=qh)
        return int(text.strip() or b"0")

    async def run_out(*argv: str) -> str:
        qh, rr = await client.create_process(
            h, {"CommandArgs": list(argv), "CreateStdOutPipe": True}
        )
        fd = rr.fd(FdMask.STDOUT)
        assert fd is not None
        text = await read_until_eof(fd)
        client.notify(Op.CLOSE_PROCESS, handle=qh)
        return text.decode(errors="replace")

    # Hot-add a qcow2 disk on the SCSI controller, see it in the guest, remove it.
    disk = tmp_path / "hot.qcow2"
    made = await asyncio.to_thread(
        subprocess.run, ["qemu-img", "create", "-f", "qcow2", str(disk), "16M"], capture_output=True
    )
    assert made.returncode == 0, made.stderr
    path = "VirtualMachine/Devices/Scsi/primary/Attachments/1"
    await client.call(
        Op.MODIFY,
        json.dumps(
            {
                "ResourcePath": path,
                "RequestType": "Add",
                "Settings": {"Type": "VirtualDisk", "Path": str(disk)},
            }
        ),
        handle=h,
    )
    deadline = time.monotonic() + 20
    while "sd" not in (blocks := await run_out("ls", "/sys/block")):
        assert time.monotonic() < deadline, blocks
        await asyncio.sleep(0.3)
    await client.call(
        Op.MODIFY, json.dumps({"ResourcePath": path, "RequestType": "Remove"}), handle=h
    )
    deadline = time.monotonic() + 20
    while "sd" in (blocks := await run_out("ls", "/sys/block")):
        assert time.monotonic() < deadline, blocks
        await asyncio.sleep(0.3)
    await expect_fault(
        client.call(
            Op.MODIFY,
            json.dumps(
                {"ResourcePath": "VirtualMachine/Devices/FlexibleIov/x", "RequestType": "Add"}
            ),
            handle=h,
        ),
        hresults.E_NOT_SUPPORTED,
        "FlexibleIov",
    )
    # Memory through the balloon.
    await client.call(
        Op.MODIFY,
        json.dumps(
            {
                "ResourcePath": "VirtualMachine/ComputeTopology/Memory/SizeInMB",
                "RequestType": "Update",
                "Settings": 192,
            }
        ),
        handle=h,
    )
    deadline = time.monotonic() + 20
    while (m := (await props(client, h, "Memory"))["Memory"]["VirtualMachineMemory"])[
        "AssignedMemory"
    ] != 192:
        assert time.monotonic() < deadline, m
        await asyncio.sleep(0.2)

    await asyncio.sleep(0.5)
    await client.call(Op.PAUSE, handle=h)
    state_file = tmp_path / "agent-saved.bin"
    await client.call(
        Op.SAVE, json.dumps({"SaveType": "ToFile", "SaveStateFilePath": str(state_file)}), handle=h
    )
    saved = await exit_event(client, h)
    assert saved["ExitType"] == "GracefulExit"

    h2 = await client.create_system(
        new_id(),
        vm_doc(
            agent_guest,
            Devices={"Scsi": {"primary": {"Attachments": {}}}},
            RestoreState={"SaveStateFilePath": str(state_file)},
        ),
    )
    await client.call(Op.START, handle=h2, timeout=60)
    h = h2
    first = await count()
    await asyncio.sleep(0.6)
    second = await count()
    assert 0 < first < second, (first, second)

    await client.call(Op.SHUTDOWN, json.dumps({}), handle=h2)
    seen = []
    while True:
        ev = await client.next_event(h2, 30)
        seen.append(ev.header.op)
        if ev.header.op == EventType.SYSTEM_EXITED:
            assert ev.json()["ExitType"] == "GracefulExit"
            break
    assert EventType.SYSTEM_GUEST_CONNECTION_CLOSED in seen
    assert_alive(vm_service)


async def test_uefi_boots_to_firmware(
    client: WireClient, vm_service: RunningService, tmp_path: Path
) -> None:
    """Chipset.Uefi: OVMF runs (q35, pflash + a VARS copy) and tries the SCSI disk."""
    if not Path("/usr/share/OVMF/OVMF_CODE_4M.fd").exists():
        pytest.skip("needs ovmf")
    disk = tmp_path / "blank.vhdx"
    made = await asyncio.to_thread(
        subprocess.run, ["qemu-img", "create", "-f", "vhdx", str(disk), "8M"], capture_output=True
    )
    assert made.returncode == 0, made.stderr
    com = f"/tmp/{unique_id('aiohcs-vmt')}.sock"
    vm = uefi_disk_vm(str(disk), Console="ComPort1")
    vm["ComputeTopology"] = {
        "Memory": {"SizeInMB": 256, "Backing": "Virtual"},
        "Processor": {"Count": 1},
    }
    vm["Devices"]["ComPorts"] = {"0": {"NamedPipe": com}}
    doc = {"SchemaVersion": {"Major": 2, "Minor": 1}, "VirtualMachine": vm}
    h = await client.create_system(new_id(), doc)
    await client.call(Op.START, handle=h, timeout=60)
    console = ComReader(com)
    await console.start()
    deadline = time.monotonic() + 60
    # OVMF's boot manager names the devices it tries; the blank disk is one.
    while not re.search(r"BdsDxe|UEFI|Shell>", console.text):
        assert time.monotonic() < deadline, console.text[-500:]
        await asyncio.sleep(0.2)
    await console.stop()
    await client.call(Op.TERMINATE, handle=h)
    assert (await exit_event(client, h))["ExitType"] == "ForcedExit"


async def test_agent_process_stdio_signals_pty(
    client: WireClient, vm_service: RunningService, agent_guest: dict[str, Any]
) -> None:
    h = await client.create_system(new_id(), vm_doc(agent_guest))
    await client.call(Op.START, handle=h, timeout=90)
    loop = asyncio.get_running_loop()

    # stdin in, stdout out, EOF by closing our stdin end.
    ph, r = await client.create_process(
        h, {"CommandArgs": ["cat"], "CreateStdInPipe": True, "CreateStdOutPipe": True}
    )
    stdin, stdout = r.fd(FdMask.STDIN), r.fd(FdMask.STDOUT)
    assert stdin is not None and stdout is not None
    await loop.run_in_executor(None, os.write, stdin, b"through the guest\n")
    os.close(stdin)
    assert await read_until_eof(stdout) == b"through the guest\n"
    assert (await client.next_event(ph, 30)).json()["ExitCode"] == 0

    # Signals go through the agent.
    ph, r = await client.create_process(h, {"CommandArgs": ["sleep", "100"]})
    await client.call(Op.SIGNAL_PROCESS, json.dumps({"Signal": 15}), handle=ph)
    assert (await client.next_event(ph, 30)).json()["ExitCode"] == 128 + 15
    ph, r = await client.create_process(h, {"CommandArgs": ["sleep", "100"]})
    await client.call(Op.TERMINATE_PROCESS, handle=ph)
    assert (await client.next_event(ph, 30)).json()["ExitCode"] == 128 + 9

    # A pty, resized while the process runs.
    ph, r = await client.create_process(
        h,
        {
            "CommandArgs": ["/bin/sh", "-c", "read x; stty size"],
            "EmulateConsole": True,
            "ConsoleSize": [24, 80],
            "CreateStdInPipe": True,
            "CreateStdOutPipe": True,
        },
    )
    stdin, stdout = r.fd(FdMask.STDIN), r.fd(FdMask.STDOUT)
    assert stdin is not None and stdout is not None
    await client.call(
        Op.MODIFY_PROCESS,
        json.dumps({"Operation": "ConsoleSize", "ConsoleSize": {"Height": 33, "Width": 101}}),
        handle=ph,
    )
    await asyncio.sleep(0.3)  # the resize is asynchronous (through the agent)
    await loop.run_in_executor(None, os.write, stdin, b"go\n")
    out = await read_until_eof(stdout)
    os.close(stdin)
    assert b"33 101" in out, out
    await client.call(Op.TERMINATE, handle=h)
    assert (await exit_event(client, h))["ExitType"] == "ForcedExit"
