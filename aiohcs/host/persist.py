"""Per-system state that outlives the service: `<state>/systems/<name>/state.json`.

Written atomically (temporary file + rename) on every state change of a
container system, read at startup to re-adopt containers that are still
running (see Service._recover and docs/host.md, "Restart survival").
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
FORMAT = 1
STATES = ("Created", "Running", "Paused")


@dataclass(frozen=True, slots=True)
class SavedSystem:
    id: str
    document: dict[str, Any]  # the ComputeSystem document as received (it was validated)
    owner: str
    runtime_container: str
    state: str  # Created, Running or Paused
    start_time: float | None
    init_pid: int | None  # host pid of the container's init
    runtime_id: str


def save(directory: Path, saved: SavedSystem) -> None:
    """Write `directory/state.json` atomically (the directory must exist)."""
    data = json.dumps({"Format": FORMAT, **asdict(saved)}, indent=1).encode()
    tmp = directory / (STATE_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / STATE_FILE)


def load(directory: Path) -> SavedSystem:
    """Read `directory/state.json`; OSError if unreadable, ValueError if malformed."""
    value = json.loads((directory / STATE_FILE).read_text())
    if not isinstance(value, dict) or value.get("Format") != FORMAT:
        raise ValueError("not a state file of this format")

    def field(name: str, kind: type | tuple[type, ...]) -> Any:
        v = value.get(name)
        if not isinstance(v, kind) or isinstance(v, bool):
            raise ValueError(f"{name}: expected {kind}, got {v!r}")
        return v

    state = field("state", str)
    if state not in STATES:
        raise ValueError(f"state: {state!r} is not one of {', '.join(STATES)}")
    start_time = value.get("start_time")
    if start_time is not None:
        start_time = float(field("start_time", (int, float)))
    init_pid = value.get("init_pid")
    if init_pid is not None:
        init_pid = field("init_pid", int)
        if init_pid <= 0:
            raise ValueError(f"init_pid: {init_pid} is not a pid")
    return SavedSystem(
        id=field("id", str),
        document=field("document", dict),
        owner=field("owner", str),
        runtime_container=field("runtime_container", str),
        state=state,
        start_time=start_time,
        init_pid=init_pid,
        runtime_id=field("runtime_id", str),
    )
