"""`python -m aiohcs.host` / `aiohcs-host`: run the host service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from aiohcs.host.container.cgroups import (
    CgroupPrepareError,
    prepare_cgroups_for_crun,
    read_cgroup_layout,
)
from aiohcs.host.container.runtime import RuntimeUnavailable, choose_runtime
from aiohcs.host.service import Service, Settings

DEFAULT_SOCKET = "/run/aiohcs/hcs.sock"
DEFAULT_STATE_DIR = "/var/lib/aiohcs"

log = logging.getLogger("aiohcs.host")


def default_init_path() -> Path:
    # aiohcs/_native/build/aiohcs-init next to this package.
    return Path(__file__).resolve().parent.parent / "_native" / "build" / "aiohcs-init"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="aiohcs-host", description="aiohcs host compute service")
    p.add_argument(
        "--socket",
        default=os.environ.get("AIOHCS_SOCKET", DEFAULT_SOCKET),
        help="unix socket path (env AIOHCS_SOCKET; default %(default)s)",
    )
    p.add_argument(
        "--state-dir",
        default=os.environ.get("AIOHCS_STATE_DIR", DEFAULT_STATE_DIR),
        help="state directory (env AIOHCS_STATE_DIR; default %(default)s)",
    )
    p.add_argument("--runtime", choices=("auto", "runc", "crun"), default="auto")
    p.add_argument(
        "--prepare-cgroups",
        action="store_true",
        help="if crun is to be used on a hybrid cgroup host with controllers on cgroup v2, "
        "bind those controllers to cgroup v1 hierarchies first (changes the host's cgroup "
        "layout until reboot; never done without this flag)",
    )
    p.add_argument(
        "--init",
        default=os.environ.get("AIOHCS_INIT", str(default_init_path())),
        help="static container init binary (env AIOHCS_INIT; default %(default)s)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        help="seconds HcsShutDownComputeSystem waits between SIGTERM and SIGKILL of a"
        " container (default %(default)s; stopping the service itself kills at once)",
    )
    p.add_argument(
        "--keep-systems",
        action="store_true",
        default=os.environ.get("AIOHCS_KEEP_SYSTEMS", "") == "1",
        help="on SIGTERM/SIGINT leave running containers running; the next start re-adopts "
        "them (env AIOHCS_KEEP_SYSTEMS=1; default: terminate every system)",
    )
    p.add_argument(
        "--accel",
        choices=("auto", "kvm", "tcg"),
        default=os.environ.get("AIOHCS_ACCEL", "auto"),
        help="QEMU accelerator for VMs: auto uses KVM only if a probe guest runs fast "
        "(env AIOHCS_ACCEL; default %(default)s)",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
    )
    return p.parse_args(argv)


def dump_tasks() -> None:
    """SIGUSR1: log where every task is waiting (for diagnosing hangs)."""
    for task in asyncio.all_tasks():
        frames = task.get_stack()
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        log.warning("task %s: %s", task.get_name(), where or "(no frame)")


async def serve(settings: Settings) -> None:
    service = Service(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await service.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if os.geteuid() != 0:
        log.error("the host service must run as root (containers need namespaces and mounts)")
        return 1
    uses_crun = shutil.which("crun") is not None and (
        args.runtime == "crun" or (args.runtime == "auto" and shutil.which("runc") is None)
    )
    if args.prepare_cgroups and uses_crun:
        try:
            for command in prepare_cgroups_for_crun():
                log.warning("--prepare-cgroups: changed the host's cgroup layout: %s", command)
        except CgroupPrepareError as e:
            log.error("--prepare-cgroups: %s", e)
            return 1
    elif args.prepare_cgroups:
        log.info("--prepare-cgroups: nothing to do, crun is not used")
    try:
        name, path = choose_runtime(args.runtime)
    except RuntimeUnavailable as e:
        log.error("no usable OCI runtime: %s", e)
        return 1
    if args.runtime == "auto" and name == "runc":
        blocker = read_cgroup_layout().crun_blocker()
        if blocker:
            log.info("using runc; crun would not work here: %s", blocker)
    init_path = Path(args.init)
    if not init_path.is_file():
        log.warning(
            "container init %s is missing; containers cannot start until it is built "
            "(make -C aiohcs/_native build/aiohcs-init)",
            init_path,
        )
    settings = Settings(
        socket_path=Path(args.socket),
        state_dir=Path(args.state_dir),
        runtime_name=name,
        runtime_path=path,
        init_path=init_path,
        shutdown_grace=args.shutdown_grace,
        vm_accel=args.accel,
        keep_systems=args.keep_systems,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
