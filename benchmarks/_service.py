"""A private host service for one benchmark run (shared by the bench_*.py scripts).

Started on a socket and state directory below a temporary ``base`` directory,
waited for until it answers, stopped with SIGTERM (it terminates and cleans up
what is left) when the ``with`` block ends. The caller owns ``base``.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Service:
    socket: str
    pid: int
    state: Path
    log: Path


def answers(path: str) -> bool:
    """Whether something accepts connections on the unix socket ``path``."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        return True
    return False


@contextlib.contextmanager
def private_service(base: Path, *extra_args: str) -> Iterator[Service]:
    """A host service on ``base``/hcs.sock with state in ``base``/state and its output
    in ``base``/service.log (``extra_args``: more ``python -m aiohcs.host`` options);
    stopped (SIGTERM) at exit."""
    sock = str(base / "hcs.sock")
    state = base / "state"
    state.mkdir()
    log_path = base / "service.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "aiohcs.host", "--socket", sock),
                *("--state-dir", str(state), *extra_args),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,  # Ctrl-C reaches us; we stop it after our cleanup
        )
    try:
        deadline = time.monotonic() + 30
        while not answers(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"host service did not start:\n{tail}")
            time.sleep(0.05)
        yield Service(sock, proc.pid, state, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it terminates and cleans up what is left
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
