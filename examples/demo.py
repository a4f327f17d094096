"""Create a busybox container through HCS, run a shell command in it, stream its output.

    python examples/demo.py examples/busybox-container.json

Needs a running host service on Linux (``scripts/dev.sh demo`` starts one), or
Windows with a container document that suits it.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

from anyio.abc import ByteReceiveStream

import aiohcs

COMMAND = (
    "echo kernel: $(uname -sr); echo hostname: $(hostname); "
    "for i in 1 2 3; do echo tick $i; sleep 0.3; done; "
    "echo 'to stderr' >&2; exit 3"
)


async def collect(events: aiohcs.EventStream, seen: list[aiohcs.Event]) -> None:
    async for event in events:
        seen.append(event)


async def main(document_path: str) -> int:
    config = Path(document_path).read_text()
    system_id = f"aiohcs-demo-{uuid.uuid4().hex[:8]}"
    seen: list[aiohcs.Event] = []
    t0 = time.monotonic()

    def stamp() -> str:
        return f"[{time.monotonic() - t0:6.3f}s]"

    async with await aiohcs.create_system(system_id, config) as system:
        system_events = asyncio.create_task(collect(system.events(), seen))
        await system.start()
        print(stamp(), f"started container {system_id}")

        process = await system.create_process(
            {
                "CommandArgs": ["/bin/sh", "-c", COMMAND],
                "CreateStdOutPipe": True,
                "CreateStdErrPipe": True,
            }
        )
        process_events = asyncio.create_task(collect(process.events(), seen))
        print(stamp(), f"process {process.pid} running")
        assert process.stdout is not None and process.stderr is not None

        async def pump(stream: ByteReceiveStream, label: str) -> None:
            async for chunk in stream:
                for line in chunk.decode(errors="replace").splitlines():
                    print(stamp(), f"{label}: {line}", flush=True)

        await asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))
        code = await process.wait()
        print(stamp(), f"exit code {code}")
        await process_events
        await process.close()

        await system.shutdown()
        status = await system.wait()
        print(stamp(), f"system exited: {status.exit_type}")
        await system_events

    for event in seen:
        print(f"event {event.type.name}: {event.raw}")
    return 0


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "examples/busybox-container.json"
    sys.exit(asyncio.run(main(path)))
