"""(c) Processes in a real container: streaming stdio, stdin, exit codes, events."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
from support import HcsService, running_system

import aiohcs
from aiohcs import _bridge
from aiohcs.events import EventType

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def running(hcs_service: HcsService, system_id: str) -> AsyncIterator[aiohcs.System]:
    async with running_system(hcs_service, system_id) as system:
        yield system


def sh(
    script: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True
) -> dict[str, object]:
    return {
        "CommandArgs": ["sh", "-c", script],
        "CreateStdInPipe": stdin,
        "CreateStdOutPipe": stdout,
        "CreateStdErrPipe": stderr,
    }


async def test_stdout_and_stderr_stream_before_exit(running: aiohcs.System) -> None:
    # The process prints, then blocks until we answer: output must arrive first.
    proc = await running.create_process(
        sh("echo ready; echo warming >&2; read line; echo bye $line", stdin=True)
    )
    async with proc:
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
        first = await asyncio.wait_for(proc.stdout.receive(), 10)
        assert first == b"ready\n"
        err = await asyncio.wait_for(proc.stderr.receive(), 10)
        assert err == b"warming\n"
        assert proc.returncode is None  # still running: it waits for stdin
        await proc.stdin.send(b"now\n")
        rest = await asyncio.wait_for(proc.stdout.read_all(), 10)
        assert rest == b"bye now\n"
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_stdin_reaches_the_process_and_eof_ends_it(running: aiohcs.System) -> None:
    proc = await running.create_process(sh("wc -c; cat >&2", stdin=True))
    async with proc:
        data = b"x" * 100_000  # larger than a pipe buffer
        out, err = await asyncio.wait_for(proc.communicate(data), 30)
        assert out.strip() == b"100000"
        assert err == b""  # wc consumed everything; cat saw EOF at once
        assert proc.returncode == 0


@pytest.mark.parametrize("code", [0, 1, 7, 42, 255])
async def test_exact_exit_codes(running: aiohcs.System, code: int) -> None:
    proc = await running.create_process(sh(f"exit {code}", stdout=False, stderr=False))
    async with proc:
        assert proc.stdout is None and proc.stderr is None and proc.stdin is None
        assert await asyncio.wait_for(proc.wait(), 10) == code
        status = await proc.wait_status()
        assert status.exited is True and status.exit_code == code


async def test_signal_and_terminate(running: aiohcs.System) -> None:
    proc = await running.create_process(
        sh("trap 'exit 3' TERM; echo armed; while :; do sleep 0.1; done")
    )
    async with proc:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.receive(), 10) == b"armed\n"
        await proc.signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 3
    proc = await running.create_process(sh("sleep 1000", stdout=False, stderr=False))
    async with proc:
        await proc.terminate()
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code != 0


async def test_process_and_system_exit_events(running: aiohcs.System) -> None:
    system_events = running.events()
    proc = await running.create_process(sh("echo hi; exit 5", stderr=False))
    async with proc:
        events = [e async for e in proc.events()]  # ends after ProcessExited
        assert [e.type for e in events] == [EventType.ProcessExited]
        assert events[0].data["ExitCode"] == 5
        assert events[0].data["ProcessId"] == proc.pid
        assert proc.stdout is not None
        assert await proc.stdout.read_all() == b"hi\n"  # not lost by the exit
    await running.terminate()
    sys_events = [e async for e in system_events]
    assert sys_events[-1].type == EventType.SystemExited
    assert sys_events[-1].data["ExitType"] == "ForcedExit"
    status = await running.wait()
    assert status.exit_type == "ForcedExit"


async def test_open_process_and_properties(running: aiohcs.System) -> None:
    proc = await running.create_process(sh("echo started; sleep 1000", stderr=False))
    async with proc:
        assert proc.stdout is not None
        await proc.stdout.receive()
        props = await running.properties("ProcessList")
        assert props.state == "Running"
        other = await running.open_process(proc.pid)
        async with other:
            assert other.pid == proc.pid and other.stdout is None
            status = await other.properties()
            assert status.process_id == proc.pid and not status.exited
            await other.terminate()
            assert await asyncio.wait_for(other.wait(), 10) != 0
        assert await asyncio.wait_for(proc.wait(), 10) != 0  # both handles see the exit


async def test_close_stdin_sends_eof(running: aiohcs.System) -> None:
    proc = await running.create_process(sh("cat; echo done", stdin=True, stderr=False))
    async with proc:
        assert proc.stdin is not None and proc.stdout is not None
        await proc.stdin.send(b"abc")
        await proc.close_stdin()
        assert await asyncio.wait_for(proc.stdout.read_all(), 10) == b"abcdone\n"
        assert await proc.wait() == 0
        await proc.close_stdin()  # after exit: still fine


async def test_open_and_shutdown_second_handle(hcs_service: HcsService, system_id: str) -> None:
    config = hcs_service.container_config(ShouldTerminateOnLastHandleClosed=False)
    async with await aiohcs.create_system(system_id, config) as first:
        await first.start()
        async with await aiohcs.open_system(system_id) as second:
            assert second.id == system_id
            listing = await aiohcs.enumerate_systems({"Ids": [system_id]})
            assert [p.id for p in listing] == [system_id]
            await second.shutdown()
            status = await asyncio.wait_for(second.wait(), 30)
            assert status.exit_type == "GracefulExit"
            assert (await asyncio.wait_for(first.wait(), 5)).exit_type == "GracefulExit"
    assert _bridge.open_handles() == 0


async def test_closed_handle_raises(running: aiohcs.System, hcs_service: HcsService) -> None:
    other = await aiohcs.open_system(running.id)
    waiter = asyncio.create_task(other.wait())
    await asyncio.sleep(0)
    await other.close()
    with pytest.raises(aiohcs.HandleClosed):
        await waiter
    with pytest.raises(aiohcs.HandleClosed):
        await other.start()
