"""Review regressions: Terminate/GetProperties/CANCEL versus a hung Start or Shutdown.

- Terminate (and every other call) waited behind a Start waiting up to 60 s for
  a guest agent that never answers (rdinit=/bin/sleep): Terminate now preempts
  the start (HCS_E_TERMINATED_DURING_START, ForcedExit), GetProperties answers
  at once ("Created" while starting), CANCEL stops the start (E_ABORT).
- A Shutdown the guest ignores must not hold up Terminate.
- Also: empty CommandArgs in a VM, directory paths, the same image attached twice.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from host.conftest import RunningService
from host.wire_client import WireClient, connected

from aiohcs import hresults
from aiohcs._wire import Op
from aiohcs.host.vm.agent import AgentError
from aiohcs.host.vm.backend import agent_fault

from .test_review_vm_start import qemu_running
from .test_vm_backend import (  # noqa: F401  (fixtures)
    agent_guest,
    assert_alive,
    client,
    exit_event,
    expect_fault,
    guest,
    new_id,
    props,
    vm_doc,
    vm_service,
)

pytestmark = pytest.mark.timeout(180)


def hung_doc(guest: dict[str, Any], *, agent: bool = True, **vm: Any) -> dict[str, Any]:  # noqa: F811
    """A VM whose init sleeps: with GuestConnection no agent ever answers."""
    doc = vm_doc(guest, agent=agent, **vm)
    kd = doc["VirtualMachine"]["Chipset"]["LinuxKernelDirect"]
    kd["KernelCmdLine"] = guest["cmdline"] + " rdinit=/bin/sleep 100000"
    return doc


async def open_system(c: WireClient, sid: str) -> int:
    h = c.new_handle()
    await c.call(Op.OPEN_SYSTEM, sid, new_handle=h)
    return h


async def wait_qemu(sid: str, up: bool, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while qemu_running(sid) != up:
        assert time.monotonic() < deadline, f"QEMU of {sid} running={not up}"
        await asyncio.sleep(0.1)


async def test_terminate_preempts_a_start_waiting_for_the_guest(
    client: WireClient,  # noqa: F811
    vm_service: RunningService,  # noqa: F811
    guest: dict[str, Any],  # noqa: F811
) -> None:
    sid = new_id("hung")
    h = await client.create_system(sid, hung_doc(guest))
    _, start = client.start_request(Op.START, handle=h)
    await wait_qemu(sid, True)
    async with connected(vm_service.socket) as c2:
        h2 = await open_system(c2, sid)
        # Properties answer at once while the start waits for the guest.
        t0 = time.monotonic()
        p = await props(c2, h2, "Statistics", "ProcessList")
        assert p["State"] == "Created" and p["ProcessList"] == []
        await expect_fault(
            props(c2, h2, "GuestConnection"), hresults.HCS_E_INVALID_STATE, "not started"
        )
        await c2.call(Op.TERMINATE, handle=h2, timeout=20)
        assert time.monotonic() - t0 < 15  # not after the 60 s hello timeout
        r = await asyncio.wait_for(start, 10)
        assert r.hresult == hresults.HCS_E_TERMINATED_DURING_START, r
        ev = await exit_event(c2, h2, 10)
        assert ev["ExitType"] == "ForcedExit"
        assert (await exit_event(client, h, 10))["ExitType"] == "ForcedExit"
        assert not qemu_running(sid)
        p = await props(c2, h2)
        assert p["State"] == "Stopped" and p["ExitType"] == "ForcedExit"
        await expect_fault(c2.call(Op.TERMINATE, handle=h2), hresults.HCS_E_SYSTEM_ALREADY_STOPPED)
    assert_alive(vm_service)


async def test_cancel_of_a_pending_start(
    client: WireClient,  # noqa: F811
    vm_service: RunningService,  # noqa: F811
    guest: dict[str, Any],  # noqa: F811
) -> None:
    sid = new_id("cancel")
    h = await client.create_system(sid, hung_doc(guest))
    rid, start = client.start_request(Op.START, handle=h)
    await wait_qemu(sid, True)
    client.notify(Op.CANCEL, arg=rid)
    r = await asyncio.wait_for(start, 15)
    assert r.hresult == hresults.E_ABORT, r
    await wait_qemu(sid, False, 5)  # nothing left running
    p = await props(client, h)
    assert p["State"] == "Created"  # may be started again or terminated
    await client.call(Op.TERMINATE, handle=h)
    assert (await exit_event(client, h, 10))["ExitType"] == "ForcedExit"
    assert_alive(vm_service)


async def test_terminate_while_an_ignored_shutdown_waits_and_duplicate_disks(
    client: WireClient,  # noqa: F811
    vm_service: RunningService,  # noqa: F811
    guest: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    disk = tmp_path / "d.raw"
    made = subprocess.run(
        ["qemu-img", "create", "-f", "raw", str(disk), "8M"], capture_output=True, check=False
    )
    assert made.returncode == 0, made.stderr
    link = tmp_path / "link.raw"
    link.symlink_to(disk)

    def scsi(*atts: dict[str, Any]) -> dict[str, Any]:
        return {"Scsi": {"primary": {"Attachments": {str(i): a for i, a in enumerate(atts)}}}}

    # The same image twice (also through a symlink): rejected at create, naming both.
    for second in (str(disk), str(link)):
        doc = hung_doc(guest, agent=False, Devices=scsi({"Path": str(disk)}, {"Path": second}))
        e = await expect_fault(
            client.create_system(new_id("dup"), doc), hresults.HCS_E_INVALID_JSON
        )
        assert "Scsi.primary.Attachments.1.Path" in e.message, e.message
        assert "Scsi.primary.Attachments.0.Path" in e.message, e.message
    # Read-only twice is fine (QEMU shares the lock): that is the VM run below.
    ro = {"Path": str(disk), "ReadOnly": True}
    sid = new_id("ign")
    h = await client.create_system(sid, hung_doc(guest, agent=False, Devices=scsi(ro, ro)))
    await client.call(Op.START, handle=h, timeout=60)

    # Hot-adding the image again, writable: a clear error naming the attachment.
    add = {
        "ResourcePath": "VirtualMachine/Devices/Scsi/primary/Attachments/5",
        "RequestType": "Add",
        "Settings": {"Type": "VirtualDisk", "Path": str(disk)},
    }
    e = await expect_fault(
        client.call(Op.MODIFY, json.dumps(add), handle=h), hresults.E_OBJECT_ALREADY_EXISTS
    )
    assert str(disk) in e.message and "Attachments/0" in e.message, e.message
    # A directory as a hot-added disk: named, not "file not found".
    add["Settings"] = {"Type": "VirtualDisk", "Path": str(tmp_path)}
    await expect_fault(
        client.call(Op.MODIFY, json.dumps(add), handle=h),
        hresults.E_INVALIDARG,
        "is a directory",
    )

    # No agent and no ACPI handler (init is sleep): the shutdown is ignored.
    _, shutdown = client.start_request(
        Op.SHUTDOWN, json.dumps({"GracePeriodSeconds": 120}), handle=h
    )
    await asyncio.sleep(0.5)
    assert not shutdown.done()
    async with connected(vm_service.socket) as c2:
        h2 = await open_system(c2, sid)
        t0 = time.monotonic()
        assert (await props(c2, h2))["State"] == "Running"
        await c2.call(Op.TERMINATE, handle=h2, timeout=20)
        assert time.monotonic() - t0 < 10
        assert (await exit_event(c2, h2, 10))["ExitType"] == "ForcedExit"
    r = await asyncio.wait_for(shutdown, 10)
    assert r.ok, r
    assert not qemu_running(sid)
    assert_alive(vm_service)


async def test_directory_paths_are_named(
    client: WireClient,  # noqa: F811
    guest: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    for field in ("KernelFilePath", "InitRdPath"):
        doc = vm_doc(guest, agent=False)
        doc["VirtualMachine"]["Chipset"]["LinuxKernelDirect"][field] = str(tmp_path)
        e = await expect_fault(
            client.create_system(new_id("dir"), doc), hresults.E_INVALIDARG, "is a directory"
        )
        assert f"LinuxKernelDirect.{field}" in e.message, e.message
    doc = vm_doc(guest, agent=False, Devices={"Scsi": {"s": {"Attachments": {"0": {}}}}})
    doc["VirtualMachine"]["Devices"]["Scsi"]["s"]["Attachments"]["0"]["Path"] = str(tmp_path)
    e = await expect_fault(
        client.create_system(new_id("dir"), doc), hresults.E_INVALIDARG, "is a directory"
    )
    assert "Scsi.s.Attachments.0.Path" in e.message, e.message
    doc = vm_doc(guest, agent=False, RestoreState={"SaveStateFilePath": str(tmp_path)})
    e = await expect_fault(
        client.create_system(new_id("dir"), doc), hresults.E_INVALIDARG, "is a directory"
    )
    assert "SaveStateFilePath" in e.message, e.message


async def test_process_without_a_command_in_a_vm(
    client: WireClient,  # noqa: F811
    vm_service: RunningService,  # noqa: F811
    agent_guest: dict[str, Any],  # noqa: F811
) -> None:
    h = await client.create_system(new_id(), vm_doc(agent_guest))
    await client.call(Op.START, handle=h, timeout=90)
    empty: list[dict[str, Any]] = [{"CommandArgs": []}, {"CommandLine": ""}, {}]
    for params in empty:
        await expect_fault(
            client.create_process(h, params),
            hresults.HCS_E_INVALID_JSON,
            "CommandArgs or CommandLine is required",
        )
    await expect_fault(
        client.create_process(h, {"CommandLine": "sh -c 'unbalanced"}),
        hresults.HCS_E_INVALID_JSON,
        "CommandLine",
    )
    await client.call(Op.TERMINATE, handle=h)
    assert (await exit_event(client, h))["ExitType"] == "ForcedExit"


def test_agent_einval_is_invalidarg() -> None:
    assert agent_fault(AgentError(22, "bad"), "X").hresult == hresults.E_INVALIDARG
    assert agent_fault(AgentError(2, "no"), "X").hresult == hresults.E_FILE_NOT_FOUND
    assert agent_fault(AgentError(5, "io"), "X").hresult == hresults.E_FAIL
