"""Helpers for the integration tests: build the rootfs, run a host service, start a container.

Kept out of conftest.py so test modules can import them by a plain name.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

import aiohcs

ROOT = pathlib.Path(__file__).resolve().parents[1]
NATIVE = ROOT / "aiohcs" / "_native"


def ensure_callbacks_module() -> None:
    """Build aiohcs._hcs_callbacks in place when the checkout was not pip-installed."""
    try:
        import aiohcs._hcs_callbacks  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        subprocess.run(
            [sys.executable, str(ROOT / "aiohcs" / "_ffi" / "build_callbacks.py")],
            check=True,
            cwd=ROOT,
        )


@dataclass
class HcsService:
    socket: str
    state_dir: str
    rootfs: str
    log: pathlib.Path
    process: subprocess.Popen[bytes]

    def container_config(self, **extra: Any) -> dict[str, Any]:
        """A ComputeSystem document for a busybox container on an overlay of the rootfs."""
        doc: dict[str, Any] = {
            "Owner": "aiohcs-tests",
            "SchemaVersion": {"Major": 2, "Minor": 1},
            "Container": {"Storage": {"Layers": [{"Id": str(uuid.uuid4()), "Path": self.rootfs}]}},
            "ShouldTerminateOnLastHandleClosed": True,
        }
        doc.update(extra)
        return doc

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root (namespaces, overlayfs, runc)"
    if not (shutil.which("runc") or shutil.which("crun")):
        return "no OCI runtime (runc or crun) installed"
    if not (shutil.which("busybox") or pathlib.Path("/bin/busybox").exists()):
        return "busybox-static is not installed"
    if not (ROOT / "aiohcs" / "host" / "__main__.py").exists():
        return "the host service (aiohcs/host) is not there yet"
    if not (NATIVE / "Makefile").exists():
        return "the native library (aiohcs/_native) is not there yet"
    return None


def build_rootfs(target: pathlib.Path) -> None:
    script = ROOT / "scripts" / "build-rootfs.sh"
    if script.exists():
        subprocess.run(["sh", str(script), str(target)], check=True, capture_output=True)
        return
    # Fallback until the service engineer's script exists: busybox + applet links.
    busybox = shutil.which("busybox") or "/bin/busybox"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (target / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, target / "bin" / "busybox")
    applets = subprocess.run(
        [busybox, "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = target / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (target / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (target / "etc" / "group").write_text("root:x:0:\n")


def _wait_for_socket(path: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"host service exited with {proc.returncode}")
        if os.path.exists(path):
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        time.sleep(0.05)
    raise RuntimeError(f"host service did not listen on {path} within {timeout}s")


def spawn_service(
    sock: str,
    state: str | pathlib.Path,
    log: pathlib.Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``python -m aiohcs.host --socket SOCK --state-dir STATE *args``, its output in
    ``log``; ``env`` defaults to ours with this checkout first on PYTHONPATH."""
    if env is None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "aiohcs.host", "--socket", sock, "--state-dir", str(state)]
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            [*argv, *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )


def launch_service(base: pathlib.Path, rootfs: pathlib.Path) -> HcsService:
    """Start a host service with its socket and state under ``base``; wait until it listens."""
    sock = str(base / "hcs.sock")
    state = base / "state"
    state.mkdir(exist_ok=True)
    log = base / "service.log"
    proc = spawn_service(sock, state, log, "--shutdown-grace", "2", "--log-level", "DEBUG")
    service = HcsService(sock, str(state), str(rootfs), log, proc)
    try:
        _wait_for_socket(sock, proc, 30)
    except RuntimeError as exc:
        proc.kill()
        proc.wait()
        pytest.fail(f"{exc}\n--- service log ---\n{service.log_tail()}")
    return service


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    if proc.poll() is None:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_service(service: HcsService, timeout: float = 30) -> None:
    stop_process(service.process, timeout)


@contextlib.asynccontextmanager
async def running_system(service: HcsService, system_id: str) -> AsyncIterator[aiohcs.System]:
    """A started busybox container (``service.container_config()``); terminated if it
    still runs, and closed, at exit."""
    system = await aiohcs.create_system(system_id, service.container_config())
    try:
        await system.start()
        yield system
    finally:
        if system.exit_status is None:
            with contextlib.suppress(aiohcs.HcsError):
                await system.terminate()
        await system.close()


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))
