"""ServiceDisconnect: when the host service goes away, pending waits raise
ServiceDisconnected and event streams end with the ServiceDisconnect event.

Runs the client in a child process against a private service, so the
session's service and the library's shared connection stay untouched.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest
from support import ROOT, HcsService, launch_service, stop_service

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import aiohcs
    from aiohcs.events import EventType

    async def main(rootfs):
        config = {"Container": {"Storage": {"Layers": [{"Path": rootfs}]}},
                  "ShouldTerminateOnLastHandleClosed": True}
        system = await aiohcs.create_system("disc", config)
        await system.start()
        proc = await system.create_process({"CommandArgs": ["sleep", "1000"]})
        sys_wait = asyncio.create_task(system.wait())
        proc_wait = asyncio.create_task(proc.wait())
        stream = system.events()
        collected = asyncio.create_task(asyncio.wait_for(
            _collect(stream), 60))
        print("READY", flush=True)
        for task, what in ((sys_wait, "system"), (proc_wait, "process")):
            try:
                await asyncio.wait_for(task, 60)
            except aiohcs.ServiceDisconnected:
                pass
            else:
                raise SystemExit(f"{what}.wait() did not raise ServiceDisconnected")
        events = await collected
        assert events and events[-1] == EventType.ServiceDisconnect, events
        try:
            await system.properties()
        except aiohcs.HcsError as exc:
            print("after disconnect:", type(exc).__name__, flush=True)
        else:
            raise SystemExit("a call on a handle of the broken connection succeeded")
        await proc.close()
        await system.close()
        print("OK", flush=True)

    async def _collect(stream):
        return [e.type async for e in stream]

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.timeout(120)
def test_service_disconnect_fails_waits_and_ends_streams(hcs_service: HcsService) -> None:
    base = pathlib.Path(tempfile.mkdtemp(prefix="aiohcs-d-", dir="/tmp"))
    service: HcsService | None = None
    try:
        service = launch_service(base, pathlib.Path(hcs_service.rootfs))
        env = dict(os.environ)
        env["AIOHCS_SOCKET"] = service.socket
        env["PYTHONPATH"] = str(ROOT)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, hcs_service.rootfs],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.strip() == "READY", line + (child.stderr.read() if child.stderr else "")
            # SIGTERM: the service closes every connection, then stops its systems.
            service.process.send_signal(signal.SIGTERM)
            out, err = child.communicate(timeout=90)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}\n{service.log_tail()}"
        assert out.strip().endswith("OK"), out
    finally:
        if service is not None:
            stop_service(service, timeout=10)
        shutil.rmtree(base, ignore_errors=True)
