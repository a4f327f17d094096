"""Integration: Plan9 shares added and removed at run time (real service, TCG).

One boot of the utility VM (guest agent as init) carries the whole scenario;
a second VM without a Plan9 section runs without a guest connection (its
start returns at `cont`, it never needs to boot) only to be refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from host.conftest import RunningService, start_service, stop_service
from host.wire_client import ServiceError, WireClient, connected, read_until_eof, unique_id

from aiohcs import hresults
from aiohcs._wire import EventType, FdMask, Op
from aiohcs.host.vm import plan9

pytestmark = pytest.mark.timeout(180)

SHARES = "VirtualMachine/Devices/Plan9/Shares"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, uvm: dict[str, Any]) -> Iterator[RunningService]:
    if os.geteuid() != 0 or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("needs root and qemu-system-x86_64")
    s = start_service(tmp_path_factory.mktemp("p9svc"), "--accel", "tcg")
    yield s
    stop_service(s)


@pytest.fixture
async def client(svc: RunningService) -> AsyncIterator[WireClient]:
    async with connected(svc.socket) as c:
        yield c


def doc(uvm: dict[str, Any], *, agent: bool = True, **devices: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "StopOnReset": True,
        "Chipset": {
            "LinuxKernelDirect": {
                "KernelFilePath": str(uvm["kernel"]),
                "InitRdPath": str(uvm["initrd"]),
                "KernelCmdLine": str(uvm["cmdline"]),
            }
        },
        "ComputeTopology": {"Memory": {"SizeInMB": 256}, "Processor": {"Count": 1}},
        "Devices": devices,
    }
    if agent:
        body["GuestConnection"] = {}
    return {"SchemaVersion": {"Major": 2, "Minor": 1}, "VirtualMachine": body}


async def modify(c: WireClient, h: int, request: dict[str, Any]) -> None:
    await c.call(Op.MODIFY, json.dumps(request), handle=h, timeout=60)


async def fails(coro: Any, hresult: int, *needles: str) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        await coro
    assert info.value.hresult == hresult, info.value
    for needle in needles:
        assert needle in info.value.message, info.value
    return info.value


async def run(c: WireClient, h: int, script: str) -> tuple[int, str]:
    """(exit code, stdout+stderr) of `sh -c script` in the guest."""
    ph, r = await c.create_process(
        h, {"CommandArgs": ["/bin/sh", "-c", "{ " + script + "; } 2>&1"], "CreateStdOutPipe": True}
    )
    fd = r.fd(FdMask.STDOUT)
    assert fd is not None
    out = (await read_until_eof(fd)).decode(errors="replace")
    ev = await c.next_event(ph, 30)
    c.notify(Op.CLOSE_PROCESS, handle=ph)
    return int(ev.json()["ExitCode"]), out


async def test_plan9_share_hot_add_remove(
    client: WireClient, svc: RunningService, uvm: dict[str, Any], tmp_path: Path
) -> None:
    rw_dir = tmp_path / "rw"
    rw_dir.mkdir()
    (rw_dir / "hello.txt").write_text("hello from the host\n")
    ro_dir = tmp_path / "ro"
    ro_dir.mkdir()
    (ro_dir / "data.txt").write_text("read me\n")
    c = client

    # A VM without a Plan9 section refuses run-time shares (no boot needed).
    h0 = await c.create_system(unique_id("p9none"), doc(uvm, agent=False))
    await c.call(Op.START, handle=h0, timeout=60)
    add_rw = {
        "ResourcePath": SHARES,
        "RequestType": "Add",
        "Settings": {
            "Name": "rw-share",
            "AccessName": "rw-share",
            "Path": str(rw_dir),
            "Port": 564,
        },
    }
    await fails(
        modify(c, h0, add_rw),
        hresults.HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
        "VirtualMachine.Devices.Plan9",
    )
    await c.call(Op.TERMINATE, handle=h0)

    sid = unique_id("p9")
    h = await c.create_system(sid, doc(uvm, Plan9={}))
    await c.call(Op.START, handle=h, timeout=90)
    staging = svc.state_dir / "systems" / sid / "plan9-hot"

    # Bad requests: the field is named, nothing is mounted.
    bad = {"ResourcePath": SHARES, "RequestType": "Add"}
    await fails(
        modify(c, h, bad | {"Settings": {"Name": "x"}}),
        hresults.HCS_E_INVALID_JSON,
        "Settings.Path",
    )
    await fails(
        modify(c, h, bad | {"Settings": {"Name": "x", "Path": str(tmp_path / "nope")}}),
        hresults.E_PATH_NOT_FOUND,
        "Settings.Path",
        str(tmp_path / "nope"),
    )
    assert plan9.mounts_under(str(staging)) == []

    # Read-write share at the default guest path /run/plan9/<Name>.
    await modify(c, h, add_rw)
    code, out = await run(c, h, "cat /run/plan9/rw-share/hello.txt")
    assert (code, out) == (0, "hello from the host\n")
    code, out = await run(c, h, "echo from the guest > /run/plan9/rw-share/back.txt")
    assert code == 0, out
    assert (rw_dir / "back.txt").read_text() == "from the guest\n"
    await fails(modify(c, h, add_rw), hresults.E_OBJECT_ALREADY_EXISTS, "rw-share")

    # Read-only share (Flags bit 0) at the MountPath of an LCOW GuestRequest.
    await modify(
        c,
        h,
        {
            "ResourcePath": SHARES,
            "RequestType": "Add",
            "Settings": {"Name": "ro-share", "Path": str(ro_dir), "Flags": 1},
            "GuestRequest": {
                "ResourceType": "MappedDirectory",
                "RequestType": "Add",
                "Settings": {"MountPath": "/mnt/ro", "ShareName": "ro-share", "Port": 564},
            },
        },
    )
    code, out = await run(c, h, "cat /mnt/ro/data.txt")
    assert (code, out) == (0, "read me\n")
    code, out = await run(c, h, "echo no > /mnt/ro/new.txt")
    assert code != 0 and "Read-only" in out, out
    # Even through the staging export the host bind refuses writes.
    code, out = await run(c, h, "echo no > /run/aiohcs/plan9-hot/*-ro-share/new2.txt")
    assert code != 0, out
    assert sorted(os.listdir(ro_dir)) == ["data.txt"]
    assert len(plan9.mounts_under(str(staging))) == 2

    # Save is refused while a share is mounted in the guest; the VM goes on.
    await c.call(Op.PAUSE, handle=h)
    await fails(
        c.call(
            Op.SAVE,
            json.dumps({"SaveType": "ToFile", "SaveStateFilePath": str(tmp_path / "s.bin")}),
            handle=h,
        ),
        hresults.HCS_E_INVALID_STATE,
        "Plan9 share",
        "ro-share",
    )
    await c.call(Op.RESUME, handle=h)

    # Remove: the guest no longer sees it, the host bind is gone.
    remove = {"ResourcePath": SHARES, "RequestType": "Remove"}
    await modify(c, h, remove | {"Settings": {"Name": "rw-share"}})
    code, out = await run(c, h, "ls /run/plan9/rw-share; grep -c rw-share /proc/mounts")
    assert "hello.txt" not in out, out
    assert [p for p in plan9.mounts_under(str(staging)) if "rw-share" in p] == []
    assert [p.name for p in staging.iterdir()] == [
        n for n in os.listdir(staging) if n.endswith("ro-share")
    ]
    await fails(modify(c, h, remove | {"Settings": {"Name": "rw-share"}}), hresults.E_NOT_FOUND)
    assert sorted(os.listdir(rw_dir)) == ["back.txt", "hello.txt"]

    # Terminating with a share still added: the host bind goes with the VM,
    # the shared files stay.
    await c.call(Op.TERMINATE, handle=h)
    while (await c.next_event(h, 60)).header.op != EventType.SYSTEM_EXITED:
        pass
    system_dir = svc.state_dir / "systems" / sid
    for _ in range(100):
        if not system_dir.exists():
            break
        await asyncio.sleep(0.05)
    assert plan9.mounts_under(str(svc.state_dir)) == []
    assert not system_dir.exists()
    assert sorted(os.listdir(ro_dir)) == ["data.txt"]
    assert svc.alive()


def test_leftover_binds_unmounted_at_service_start(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "keep.txt").write_text("keep")
    base = tmp_path / "svc"
    leftover = base / "state" / "systems" / "dead-vm" / "plan9-hot" / "1-x"
    plan9.bind(str(shared), str(leftover), read_only=False)
    try:
        s = start_service(base, "--accel", "tcg")
        stop_service(s)
    finally:
        plan9.unmount_all_under(str(base))
    assert (shared / "keep.txt").read_text() == "keep"
    assert not (base / "state" / "systems" / "dead-vm").exists()
