"""Fixtures: a busybox rootfs, the container init, and a real host service."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import spawn_service, stop_process

REPO = Path(__file__).resolve().parents[2]
INIT = REPO / "aiohcs" / "_native" / "build" / "aiohcs-init"


def _integration_possible() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("runc") is None and shutil.which("crun") is None:
        return "needs runc or crun"
    if not any(Path(p).exists() for p in ("/bin/busybox", "/usr/bin/busybox")):
        return "needs busybox-static"
    return None


@pytest.fixture(scope="session")
def init_binary() -> Path:
    subprocess.run(
        ["make", "-s", "-C", str(REPO / "aiohcs" / "_native"), "build/aiohcs-init"], check=True
    )
    return INIT


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _integration_possible()
    if reason:
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("rootfs") / "busybox"
    subprocess.run([str(REPO / "scripts" / "build-rootfs.sh"), str(d)], check=True)
    return d


@dataclass
class RunningService:
    socket: str
    state_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_service(base: Path, *extra: str, path_prefix: Path | None = None) -> RunningService:
    """`path_prefix` goes first in the service's PATH (a wrapper runtime, say)."""
    base.mkdir(parents=True, exist_ok=True)
    sock = base / "run" / "hcs.sock"
    state = base / "state"
    log = base / "service.log"
    sock.unlink(missing_ok=True)  # a stale socket of a killed service must not fool the wait
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', os.defpath)}"
    args = ("--log-level", "DEBUG", "--shutdown-grace", "5", *extra)
    proc = spawn_service(str(sock), state, log, *args, env=env)
    deadline = time.monotonic() + 20
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("service did not start:\n" + log.read_text(errors="replace"))
        time.sleep(0.05)
    return RunningService(str(sock), state, log, proc)


def stop_service(svc: RunningService) -> None:
    stop_process(svc.proc)


RUNTIMES = ("runc", "crun")


def runtime_args(runtime: str) -> tuple[str, ...]:
    """Service flags for one runtime. crun needs the cgroup layout fixed on a hybrid
    host; the tests ask for that explicitly (the service never does it by itself)."""
    if runtime == "crun":
        return ("--runtime", "crun", "--prepare-cgroups")
    return ("--runtime", runtime)


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    """Each integration test runs once per OCI runtime; a missing one is skipped."""
    name: str = request.param
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return name


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, init_binary: Path, busybox_rootfs: Path, runtime: str
) -> Iterator[RunningService]:
    svc = start_service(tmp_path_factory.mktemp(f"svc-{runtime}"), *runtime_args(runtime))
    yield svc
    stop_service(svc)
    sys.stderr.write("---- service log (tail) ----\n" + svc.log_text()[-4000:])
