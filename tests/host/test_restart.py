"""Integration: containers survive a restart of the host service (docs/host.md,
"Restart survival"): --keep-systems + SIGTERM, and SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support import spawn_service

from aiohcs import hresults
from aiohcs._wire import EventType, FdMask, Op

from .conftest import RunningService, runtime_args, stop_service
from .test_service import expect_fault, properties, run_proc
from .wire_client import WireClient, unique_id

pytestmark = pytest.mark.timeout(180)


def start(base: Path, runtime: str, name: str, *extra: str) -> RunningService:
    """A service on base/run/hcs.sock and base/state, logging to base/<name>.log."""
    base.mkdir(parents=True, exist_ok=True)
    sock = base / "run" / "hcs.sock"
    log = base / f"{name}.log"
    sock.unlink(missing_ok=True)
    args = ("--log-level", "DEBUG", "--shutdown-grace", "5", *runtime_args(runtime), *extra)
    proc = spawn_service(str(sock), base / "state", log, *args)
    deadline = time.monotonic() + 20
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("service did not start:\n" + log.read_text(errors="replace"))
        time.sleep(0.05)
    return RunningService(str(sock), base / "state", log, proc)


def runtime_containers(runtime: str, state: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [runtime, "--root", str(state / "runtime"), "list", "--format", "json"],
        check=True,
        capture_output=True,
    ).stdout
    value = json.loads(out or b"null")
    return value if isinstance(value, list) else []


def runtime_status(runtime: str, state: Path, cid: str) -> str:
    for entry in runtime_containers(runtime, state):
        if entry.get("id") == cid:
            return str(entry.get("status"))
    return "absent"


def overlay_doc(rootfs: Path, scratch: Path) -> dict[str, Any]:
    scratch.mkdir(parents=True, exist_ok=True)
    return {
        "Owner": "restart-tests",
        "SchemaVersion": {"Major": 2, "Minor": 1},
        "Container": {"Storage": {"Layers": [{"Path": str(rootfs)}], "Path": str(scratch)}},
    }


def crash(svc: RunningService) -> None:
    svc.proc.send_signal(signal.SIGKILL)
    svc.proc.wait()


def assert_nothing_left(runtime: str, base: Path) -> None:
    assert runtime_containers(runtime, base / "state") == []
    assert list((base / "state" / "systems").iterdir()) == []
    assert str(base) not in Path("/proc/self/mountinfo").read_text()


async def read_some(fd: int, timeout: float = 10) -> bytes:
    return await asyncio.wait_for(asyncio.to_thread(os.read, fd, 4096), timeout)


async def wait_removed(c: WireClient, sid: str) -> None:
    for _ in range(100):
        if not (await c.call(Op.ENUMERATE, json.dumps({"Ids": [sid]}))).json():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"system {sid} is still in the table")


@pytest.mark.parametrize("how", ["keep-sigterm", "sigkill"])
async def test_container_survives_restart(
    tmp_path: Path, busybox_rootfs: Path, init_binary: Path, runtime: str, how: str
) -> None:
    base = tmp_path / "svc"
    flags = ("--keep-systems",) if how == "keep-sigterm" else ()
    sid = unique_id("keep")
    cid = sid  # a safe name: the runtime container id is the system id
    svc = start(base, runtime, "first", *flags)
    old_stdin = old_stdout = -1
    try:
        c = await WireClient.connect(svc.socket)
        h = await c.create_system(sid, overlay_doc(busybox_rootfs, tmp_path / "scratch"))
        await c.call(Op.START, handle=h)
        before = await properties(c, h)
        _ph, r = await c.create_process(
            h,
            {
                "CommandArgs": ["sh", "-c", "echo started; read x; echo got $x; sleep 1000"],
                "CreateStdInPipe": True,
                "CreateStdOutPipe": True,
            },
        )
        old_pid = r.header.arg
        stdin, stdout = r.fd(FdMask.STDIN), r.fd(FdMask.STDOUT)
        assert stdin is not None and stdout is not None
        old_stdin, old_stdout = os.dup(stdin), os.dup(stdout)
        assert await read_some(old_stdout) == b"started\n"
        await c.close()
        state = json.loads((base / "state" / "systems" / cid / "state.json").read_text())
        assert state["state"] == "Running" and state["id"] == sid
        if how == "sigkill":
            crash(svc)
        else:
            stop_service(svc)
            assert svc.proc.returncode == 0, svc.log_text()[-2000:]
            assert f"leaving system {sid} Running" in svc.log_text()
    finally:
        if svc.alive():
            crash(svc)
    assert runtime_status(runtime, base / "state", cid) == "running"
    assert str(base / "state" / "systems" / cid / "rootfs") in Path("/proc/mounts").read_text()

    svc2 = start(base, runtime, "second", *flags)
    try:
        assert f"re-adopted system {sid} (Running" in svc2.log_text()
        c = await WireClient.connect(svc2.socket)
        h = c.new_handle()
        await c.call(Op.OPEN_SYSTEM, sid, new_handle=h)
        props = await properties(c, h, "ProcessList", "Statistics")
        assert props["State"] == "Running"
        assert props["RuntimeId"] == before["RuntimeId"]
        assert props["Owner"] == "restart-tests"
        assert old_pid in {p["ProcessId"] for p in props["ProcessList"]}
        assert props["Statistics"]["Uptime100ns"] > 0
        # A process of the earlier run cannot be opened; its stdio still works.
        await expect_fault(
            c.call(Op.OPEN_PROCESS, handle=h, new_handle=c.new_handle(), arg=old_pid),
            hresults.E_NOT_FOUND,
        )
        os.write(old_stdin, b"hi\n")
        assert await read_some(old_stdout) == b"got hi\n"
        # New processes are children of the new service: exact exit codes.
        code, out, _ = await run_proc(c, h, ["sh", "-c", "echo new; exit 7"])
        assert (code, out) == (7, b"new\n")
        await c.call(Op.PAUSE, handle=h)
        assert (await properties(c, h))["State"] == "Paused"
        state = json.loads((base / "state" / "systems" / cid / "state.json").read_text())
        assert state["state"] == "Paused"
        await c.call(Op.RESUME, handle=h)
        assert (await properties(c, h))["State"] == "Running"
        await c.call(Op.TERMINATE, handle=h)
        ev = await c.next_event(h)
        assert ev.header.op == EventType.SYSTEM_EXITED
        assert ev.json()["ExitType"] == "ForcedExit"
        assert await read_some(old_stdout) == b""  # the earlier process died with it
        c.notify(Op.CLOSE_SYSTEM, handle=h)
        await wait_removed(c, sid)
        await c.close()
        assert_nothing_left(runtime, base)
    finally:
        os.close(old_stdin)
        os.close(old_stdout)
        stop_service(svc2)
        assert svc2.proc.returncode == 0, svc2.log_text()[-2000:]
    assert_nothing_left(runtime, base)
    shutil.rmtree(base, ignore_errors=True)


async def test_dead_or_corrupt_leftovers_are_cleaned(
    tmp_path: Path, busybox_rootfs: Path, init_binary: Path, runtime: str
) -> None:
    base = tmp_path / "svc"
    dead, corrupt, kept = unique_id("dead"), unique_id("corrupt"), unique_id("kept")
    selfexit = unique_id("selfexit")
    svc = start(base, runtime, "first")
    try:
        c = await WireClient.connect(svc.socket)
        for sid in (dead, corrupt, kept, selfexit):
            h = await c.create_system(sid, overlay_doc(busybox_rootfs, tmp_path / sid))
            await c.call(Op.START, handle=h)
        await c.call(Op.PAUSE, handle=h)  # selfexit is re-adopted Paused
        await c.create_system(unique_id("created"), overlay_doc(busybox_rootfs, tmp_path / "c"))
        await c.close()
    finally:
        crash(svc)
    systems = base / "state" / "systems"
    init_pid = json.loads((systems / dead / "state.json").read_text())["init_pid"]
    os.kill(init_pid, signal.SIGKILL)  # the init dies while no service runs
    for _ in range(100):
        if runtime_status(runtime, base / "state", dead) == "stopped":
            break
        time.sleep(0.1)
    (systems / corrupt / "state.json").write_text("{ not json")

    svc2 = start(base, runtime, "second")
    try:
        text = svc2.log_text()
        assert f"system {dead} (Running) is not running any more; cleaning it up" in text
        assert f"state of {systems / corrupt} is unusable" in text
        assert f"re-adopted system {kept} (Running" in text
        assert f"re-adopted system {selfexit} (Paused" in text
        assert sorted(p.name for p in systems.iterdir()) == sorted([kept, selfexit])
        listed = sorted(e["id"] for e in runtime_containers(runtime, base / "state"))
        assert listed == sorted([kept, selfexit])
        mounts = Path("/proc/mounts").read_text()
        assert str(systems / dead) not in mounts and str(systems / corrupt) not in mounts
        c = await WireClient.connect(svc2.socket)
        ids = {s["Id"] for s in (await c.call(Op.ENUMERATE, "")).json()}
        assert ids == {kept, selfexit}
        # The init of an adopted system dies by itself: its status is unknown.
        h = c.new_handle()
        await c.call(Op.OPEN_SYSTEM, selfexit, new_handle=h)
        assert (await properties(c, h))["State"] == "Paused"
        await c.call(Op.RESUME, handle=h)
        init_pid = json.loads((systems / selfexit / "state.json").read_text())["init_pid"]
        os.kill(init_pid, signal.SIGKILL)
        ev = await c.next_event(h)
        assert ev.header.op == EventType.SYSTEM_EXITED
        assert ev.json() == {
            "Status": hresults.to_signed(hresults.HCS_E_UNEXPECTED_EXIT),
            "ExitType": "Unknown",
        }
        c.notify(Op.CLOSE_SYSTEM, handle=h)
        await wait_removed(c, selfexit)
        assert not (systems / selfexit).exists()
        await c.close()
    finally:
        stop_service(svc2)  # without --keep-systems: the adopted one is terminated
        assert svc2.proc.returncode == 0, svc2.log_text()[-2000:]
    assert_nothing_left(runtime, base)
    shutil.rmtree(base, ignore_errors=True)


async def test_terminate_on_last_handle_closed_is_not_kept(
    tmp_path: Path, busybox_rootfs: Path, init_binary: Path, runtime: str
) -> None:
    base = tmp_path / "svc"
    sid = unique_id("tolhc")
    svc = start(base, runtime, "first")
    try:
        c = await WireClient.connect(svc.socket)
        doc = overlay_doc(busybox_rootfs, tmp_path / "s")
        h = await c.create_system(sid, {**doc, "ShouldTerminateOnLastHandleClosed": True})
        await c.call(Op.START, handle=h)
        # crash with the client still connected: its handle dies with the service
    finally:
        crash(svc)
    await c.close()
    svc2 = start(base, runtime, "second")
    try:
        for _ in range(100):
            if f"system {sid} removed" in svc2.log_text():
                break
            await asyncio.sleep(0.1)
        assert f"system {sid}: no handles after the restart, terminating" in svc2.log_text()
        assert f"system {sid} removed" in svc2.log_text()
        assert_nothing_left(runtime, base)
    finally:
        stop_service(svc2)
    shutil.rmtree(base, ignore_errors=True)


def test_keep_systems_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohcs.host.__main__ import parse_args

    monkeypatch.delenv("AIOHCS_KEEP_SYSTEMS", raising=False)
    assert parse_args([]).keep_systems is False
    assert parse_args(["--keep-systems"]).keep_systems is True
    monkeypatch.setenv("AIOHCS_KEEP_SYSTEMS", "1")
    assert parse_args([]).keep_systems is True
    monkeypatch.setenv("AIOHCS_KEEP_SYSTEMS", "0")
    assert parse_args([]).keep_systems is False
