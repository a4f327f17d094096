"""Boot the default utility VM through HCS, run a counter in it, pause, resume, save, restore.

    python examples/vm_demo.py                  # needs a running host service (Linux)
    python examples/vm_demo.py --show-document  # also print the VM document sent

The VM is a ``VirtualMachine`` document: the kernel and initramfs that
``python -m aiohcs.uvm path`` prints (built and cached on first use), booted
with ``Chipset.LinuxKernelDirect``, and a ``GuestConnection`` so that processes
run inside it through the guest agent. Only the public API is used:

1. ``create_system`` + ``start`` (start returns once the guest agent answered);
2. ``create_process`` of a shell loop that counts, streaming its stdout; the
   time from ``create_system`` to the first line of output is the boot time
   to the first process;
3. ``pause`` (no tick arrives), ``resume`` (ticks again);
4. ``pause`` + ``save`` to a file: the saved VM lives in the file and the system
   exits (``GracefulExit``);
5. a second system whose document has ``RestoreState`` continues from the file:
   the counter the first system started keeps counting;
6. ``shutdown``; every event seen, with the time it arrived.

Needs a running host service (``bash scripts/dev.sh demo`` starts one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

from anyio.abc import ByteReceiveStream

import aiohcs
from aiohcs import schema
from aiohcs.uvm import boot_cmdline

T = TypeVar("T")

# The counter: one line per tick on stdout, and the current value in /tmp/count
# (a process's stdio does not survive its guest being saved; the process does).
COUNTER = (
    'echo "kernel $(uname -r), guest uptime $(cut -d" " -f1 /proc/uptime) s"; '
    "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; echo tick $i; sleep 0.25; done"
)
STEP_TIMEOUT = 120.0  # seconds for any one step (TCG boots take 1-3 s; a loaded host more)


class Demo:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[float, str, aiohcs.Event]] = []
        self.ticks: list[tuple[float, int]] = []  # (arrival time, tick number)
        self.first_output: float | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        print(f"[{self.now():7.3f}s] {text}", flush=True)

    async def step(self, what: str, aw: Awaitable[T], timeout: float = STEP_TIMEOUT) -> T:
        try:
            async with asyncio.timeout(timeout):
                return await aw
        except TimeoutError:
            raise RuntimeError(f"{what}: no result within {timeout:.0f} s") from None

    async def collect(self, label: str, stream: aiohcs.EventStream) -> None:
        async for event in stream:
            self.events.append((self.now(), label, event))

    async def pump(self, stream: ByteReceiveStream) -> None:
        """Print the counter's output as it comes; remember each tick's arrival."""
        buffered = b""
        with contextlib.suppress(Exception):  # the stream breaks when the VM is saved
            async for chunk in stream:
                if self.first_output is None:
                    self.first_output = self.now()
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    self.say(f"stdout: {line}")
                    if line.startswith("tick "):
                        self.ticks.append((self.now(), int(line.split()[1])))

    async def wait_ticks(self, count: int, timeout: float = 30.0) -> int:
        """Wait until ``count`` more ticks arrived; the last tick number."""
        target = len(self.ticks) + count
        deadline = time.monotonic() + timeout
        while len(self.ticks) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no tick for {timeout:.0f} s")
            await asyncio.sleep(0.02)
        return self.ticks[-1][1]


async def uvm_paths() -> dict[str, str]:
    """``python -m aiohcs.uvm path``: builds the utility VM first if it is not cached."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiohcs.uvm",
        "path",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"python -m aiohcs.uvm path failed:\n{err.decode(errors='replace')}")
    paths: dict[str, str] = json.loads(out)
    return paths


def vm_document(uvm: dict[str, str], restore_from: Path | None = None) -> schema.ComputeSystem:
    doc = schema.linux_vm(
        uvm["kernel"], initrd=uvm["initrd"], cmdline=boot_cmdline(), memory_mb=256, cpu_count=1
    )
    assert doc.virtual_machine is not None
    doc.owner = "aiohcs-vm-demo"
    doc.virtual_machine.stop_on_reset = True
    doc.virtual_machine.guest_connection = schema.GuestConnection()
    if restore_from is not None:
        doc.virtual_machine.restore_state = schema.RestoreState(
            save_state_file_path=str(restore_from)
        )
    return doc


@contextlib.asynccontextmanager
async def vm(demo: Demo, system_id: str, doc: schema.ComputeSystem) -> AsyncIterator[aiohcs.System]:
    """A system whose events are collected; terminated (if still running) and closed at exit."""
    system = await demo.step("create_system", aiohcs.create_system(system_id, doc))
    collector = asyncio.create_task(demo.collect(system_id, system.events()))
    try:
        yield system
    finally:
        if system.exit_status is None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(15):
                    await system.terminate()
                    await system.wait()
        await system.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await collector
        collector.cancel()


async def run_text(system: aiohcs.System, *argv: str) -> str:
    """Run a command in the VM and return its stdout."""
    async with await system.create_process(
        {"CommandArgs": list(argv), "CreateStdOutPipe": True}
    ) as process:
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        await asyncio.wait_for(process.wait(), 30)
    return out.decode(errors="replace").strip()


async def main(show_document: bool) -> int:
    demo = Demo()
    tag = uuid.uuid4().hex[:8]
    uvm = await demo.step("python -m aiohcs.uvm path", uvm_paths(), timeout=1800)
    print(f"utility VM: kernel {uvm['kernel']}, initrd {uvm['initrd']}", flush=True)
    doc = vm_document(uvm)
    if show_document:
        print(json.dumps(doc.to_dict(), indent=2))

    fd, save_name = tempfile.mkstemp(prefix="aiohcs-vm-demo-", suffix=".state", dir="/var/tmp")
    os.close(fd)
    save_file = Path(save_name)
    try:
        # ---------------------------------------------------------- boot, run, pause, save
        demo.t0 = time.monotonic()
        first_id = f"aiohcs-vm-demo-{tag}"
        async with vm(demo, first_id, doc) as system:
            demo.say(f"created {first_id}")
            await demo.step("start", system.start())
            demo.say("started: the guest agent answered")
            counter = await demo.step(
                "create_process",
                system.create_process(
                    {"CommandArgs": ["/bin/sh", "-c", COUNTER], "CreateStdOutPipe": True}
                ),
            )
            process_events = asyncio.create_task(demo.collect("counter", counter.events()))
            assert counter.stdout is not None
            pump = asyncio.create_task(demo.pump(counter.stdout))
            try:
                await demo.wait_ticks(3)
                assert demo.first_output is not None
                demo.say(
                    f"boot to first process output: {demo.first_output:.3f} s "
                    "(create_system -> start -> create_process -> first stdout line)"
                )

                await demo.step("pause", system.pause())
                state = (await system.properties("State")).state
                paused_at = demo.ticks[-1][1]
                demo.say(f"paused (State {state}) at tick {paused_at}; waiting 1.5 s")
                await asyncio.sleep(1.5)
                late = [n for _, n in demo.ticks if n > paused_at]
                demo.say(f"ticks while paused: {len(late)}")

                await demo.step("resume", system.resume())
                demo.say("resumed")
                await demo.wait_ticks(3)

                await demo.step("pause", system.pause())
                last_tick = demo.ticks[-1][1]
                t = time.monotonic()
                await demo.step(
                    "save",
                    system.save(
                        schema.SaveOptions(
                            save_type=schema.SaveType.ToFile, save_state_file_path=str(save_file)
                        )
                    ),
                )
                took = time.monotonic() - t
                size = save_file.stat().st_size / 2**20
                demo.say(f"saved at tick {last_tick} in {took:.2f} s: {save_file} ({size:.1f} MiB)")
                status = await demo.step("wait", system.wait(), timeout=30)
                demo.say(f"{first_id} exited: {status.exit_type} (the saved VM lives in the file)")
                code = await demo.step("counter wait", counter.wait(), timeout=30)
                demo.say(
                    f"the counter's handle reports exit {code} (its guest went away); "
                    "inside the saved guest it keeps running"
                )
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await process_events
                process_events.cancel()
                await counter.close()

        # ---------------------------------------------------------- restore, continue, shut down
        second_id = f"aiohcs-vm-demo-{tag}-restored"
        async with vm(demo, second_id, vm_document(uvm, restore_from=save_file)) as restored:
            demo.say(f"created {second_id} with RestoreState {save_file.name}")
            t = time.monotonic()
            await demo.step("start (restore)", restored.start())
            demo.say(f"restored and running in {time.monotonic() - t:.2f} s")
            values = []
            for _ in range(3):
                values.append(int(await run_text(restored, "cat", "/tmp/count") or 0))
                demo.say(f"the counter started before the save is at {values[-1]}")
                await asyncio.sleep(0.6)
            if not last_tick <= values[0] < values[1] < values[2]:
                raise RuntimeError(f"the counter did not continue: {last_tick} -> {values}")
            demo.say(f"counter continued: {last_tick} (saved) -> {' -> '.join(map(str, values))}")
            await demo.step("shutdown", restored.shutdown())
            status = await demo.step("wait", restored.wait(), timeout=60)
            demo.say(f"{second_id} exited: {status.exit_type}")
    finally:
        save_file.unlink(missing_ok=True)

    print("events:")
    for at, label, event in demo.events:
        print(f"  [{at:7.3f}s] {label}: {event.type.name} {event.raw or ''}".rstrip())
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--show-document", action="store_true", help="print the VM document")
    args = ap.parse_args()
    try:
        sys.exit(asyncio.run(main(args.show_document)))
    except (RuntimeError, aiohcs.HcsError) as e:
        print(f"vm_demo: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
