"""Pure translation: HCS Container document -> OCI runtime bundle plan.

Nothing here touches processes or mounts; the only outside input is an
`is_dir` predicate for path validation, so everything is unit-testable.

Decisions (see docs/host.md):

* ``Storage.Layers`` are listed by HCS topmost first, base last -- the same
  order overlayfs wants in ``lowerdir``. The writable layer lives in the scratch
  directory ``Storage.Path`` (``upper/`` and ``work/``); without
  ``Storage.Path`` the scratch is the system's state directory.
* No layers: ``Storage.Path`` *is* the root filesystem (used in place).
* A missing directory is ``ERROR_PATH_NOT_FOUND`` (0x80070003) naming the
  field and the path; a relative path is ``HCS_E_INVALID_JSON``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohcs import hresults, schema
from aiohcs.host.documents import ContainerSettings, ProcessParameters, command_args
from aiohcs.host.errors import HcsFault

INIT_PATH_IN_CONTAINER = "/.aiohcs/init"
# The fd on which the console exec wrapper reports a failed exec (the service
# passes it with `exec --preserve-fds 1`, so it is the first after stdio).
EXEC_STATUS_FD = 3
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000

# The capability set container engines commonly grant to unprivileged
# containers: enough for a root shell to manage its own files and users,
# nothing that reaches the host.
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]


@dataclass(frozen=True, slots=True)
class OverlayRootfs:
    """An overlay mount the driver must make at `target` before `create`."""

    lower: tuple[str, ...]  # topmost first
    upper: str
    work: str
    target: str

    def mount_options(self) -> str:
        return f"lowerdir={':'.join(self.lower)},upperdir={self.upper},workdir={self.work}"


@dataclass(frozen=True, slots=True)
class BundlePlan:
    config: dict[str, Any]
    rootfs: str  # absolute path the runtime uses as root
    overlay: OverlayRootfs | None


def safe_name(system_id: str) -> str:
    """A name usable as runtime container id and directory name.

    runc accepts ``[\\w+.-]+``; anything else (or a very long id) is replaced by
    a hash so that distinct ids never collide.
    """
    if re.fullmatch(r"[A-Za-z0-9_.+-]{1,100}", system_id) and system_id not in (".", ".."):
        return system_id
    return "h-" + hashlib.sha256(system_id.encode("utf-8")).hexdigest()[:40]


def hostname_for(system_id: str) -> str:
    """The system id as a valid hostname label: [a-z0-9-], at most 63 chars."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", system_id).strip("-")[:63].strip("-")
    return label or "container"


def _require_abs(path: str, field: str) -> None:
    if not os.path.isabs(path):
        raise HcsFault(hresults.HCS_E_INVALID_JSON, f"{field}: {path!r} is not an absolute path")


# The document was checked by documents.check_container (Storage, every layer
# Path and mapped directory HostPath/ContainerPath are present); these read it.


def _storage(container: ContainerSettings) -> schema.Storage:
    if container.storage is None:
        raise HcsFault(hresults.HCS_E_INVALID_JSON, "Container.Storage: required")
    return container.storage


def _layer_paths(storage: schema.Storage) -> list[str]:
    return [layer.path or "" for layer in storage.layers or []]


def _mapped_directories(container: ContainerSettings) -> list[tuple[str, str, bool]]:
    """(HostPath, ContainerPath, ReadOnly) of each mapped directory."""
    return [
        (md.host_path or "", md.container_path or "", bool(md.read_only))
        for md in container.mapped_directories or []
    ]


def _refuse_host_root(path: str, field: str) -> None:
    # The runtime would mount the container's init (and, for a rootfs used in
    # place, the container's writes) onto the host's own root directory.
    if os.path.realpath(path) == "/":  # also "//", "/.." and symlinks to it
        raise HcsFault(
            hresults.E_INVALIDARG,
            f"{field}: the host's root directory cannot be a container's root filesystem",
        )


def validate_container(
    container: ContainerSettings, is_dir: Callable[[str], bool] = os.path.isdir
) -> None:
    """Check paths before anything is created; errors name the field."""
    storage = _storage(container)
    if not storage.layers and not storage.path:
        raise HcsFault(
            hresults.HCS_E_INVALID_JSON,
            "Container.Storage: either Layers or Path (the root filesystem) is required",
        )
    for i, path in enumerate(_layer_paths(storage)):
        field = f"Container.Storage.Layers[{i}].Path"
        _require_abs(path, field)
        _refuse_host_root(path, field)
        if not is_dir(path):
            raise HcsFault(hresults.E_PATH_NOT_FOUND, f"{field}: directory {path} does not exist")
        if ":" in path or "," in path:
            raise HcsFault(
                hresults.HCS_E_INVALID_JSON,
                f"{field}: {path!r} contains ':' or ',' which overlayfs cannot take",
            )
    if storage.path is not None:
        _require_abs(storage.path, "Container.Storage.Path")
        _refuse_host_root(storage.path, "Container.Storage.Path")
        if not is_dir(storage.path):
            raise HcsFault(
                hresults.E_PATH_NOT_FOUND,
                f"Container.Storage.Path: directory {storage.path} does not exist",
            )
    for i, (host, inside, _ro) in enumerate(_mapped_directories(container)):
        field = f"Container.MappedDirectories[{i}]"
        _require_abs(host, f"{field}.HostPath")
        _require_abs(inside, f"{field}.ContainerPath")
        if not is_dir(host):
            raise HcsFault(
                hresults.E_PATH_NOT_FOUND,
                f"{field}.HostPath: directory {host} does not exist",
            )


def _rootfs_plan(
    container: ContainerSettings, bundle_dir: str, scratch_dir: str
) -> tuple[str, OverlayRootfs | None]:
    storage = _storage(container)
    if not storage.layers:
        assert storage.path is not None  # validate_container guarantees it
        return storage.path, None
    scratch = storage.path or scratch_dir
    target = os.path.join(bundle_dir, "rootfs")
    overlay = OverlayRootfs(
        lower=tuple(_layer_paths(storage)),
        upper=os.path.join(scratch, "upper"),
        work=os.path.join(scratch, "work"),
        target=target,
    )
    return target, overlay


def _mounts(container: ContainerSettings, init_host_path: str) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": INIT_PATH_IN_CONTAINER,
            "type": "bind",
            "source": init_host_path,
            "options": ["bind", "ro", "nosuid", "nodev"],
        },
    ]
    for host, inside, read_only in _mapped_directories(container):
        options = ["rbind", "rprivate"]
        if read_only:
            options.append("ro")
        mounts.append(
            {
                "destination": inside,
                "type": "bind",
                "source": host,
                "options": options,
            }
        )
    return mounts


def _resources(container: ContainerSettings) -> dict[str, Any]:
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if container.memory is not None and container.memory.size_in_mb:
        resources["memory"] = {"limit": container.memory.size_in_mb * 1024 * 1024}
    cpu: dict[str, Any] = {}
    proc = container.processor
    if proc is not None:
        if proc.count:
            # Count processors' worth of CPU time per period (a quota, so it
            # works whatever cpus the host has).
            cpu["period"] = CPU_PERIOD_US
            cpu["quota"] = proc.count * CPU_PERIOD_US
        if proc.weight:
            # HCS weight 100 is the default share, as 1024 is for cgroup v1.
            cpu["shares"] = max(2, min(262144, round(proc.weight * 1024 / 100)))
    if cpu:
        resources["cpu"] = cpu
    return resources


def container_bundle(
    system_id: str,
    container: ContainerSettings,
    *,
    bundle_dir: str,
    scratch_dir: str,
    init_host_path: str,
) -> BundlePlan:
    """The OCI config.json (as a dict) and rootfs plan for one container."""
    rootfs, overlay = _rootfs_plan(container, bundle_dir, scratch_dir)
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [INIT_PATH_IN_CONTAINER],
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": _capabilities(),
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname_for(system_id),
        "mounts": _mounts(container, init_host_path),
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},  # loopback only; the runtime brings lo up
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "resources": _resources(container),
            # Relative: nested under the cgroup of the service (and runtime).
            "cgroupsPath": f"aiohcs/{safe_name(system_id)}",
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    return BundlePlan(config=config, rootfs=rootfs, overlay=overlay)


def _capabilities() -> dict[str, list[str]]:
    caps = list(DEFAULT_CAPABILITIES)
    return {
        "bounding": caps,
        "effective": list(caps),
        "permitted": list(caps),
    }


# ---------------------------------------------------------------- processes


@dataclass(frozen=True, slots=True)
class User:
    uid: int
    gid: int


def parse_passwd(text: str) -> dict[str, User]:
    users: dict[str, User] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 4 or line.startswith("#"):
            continue
        try:
            users.setdefault(parts[0], User(int(parts[2]), int(parts[3])))
        except ValueError:
            continue
    return users


def resolve_user(spec: str | None, passwd_text: str | None) -> User:
    """`User` of ProcessParameters: a name from /etc/passwd, or ``uid[:gid]``."""
    if spec is None or spec == "":
        return User(0, 0)
    name, _, group = spec.partition(":")
    users = parse_passwd(passwd_text or "")
    if name.isdigit():
        uid = int(name)
        gid = next((u.gid for u in users.values() if u.uid == uid), uid)
    elif name in users:
        uid, gid = users[name].uid, users[name].gid
    else:
        raise HcsFault(
            hresults.E_INVALIDARG,
            f"User: no user {name!r} in the container's /etc/passwd (use a name or uid[:gid])",
        )
    if group:
        if not group.isdigit():
            raise HcsFault(hresults.E_INVALIDARG, f"User: group {group!r} must be a numeric gid")
        gid = int(group)
    return User(uid, gid)


def awaits_console_size(params: ProcessParameters) -> bool:
    """Whether the process runs under the console exec wrapper.

    A console process with a ConsoleSize must not start before its pty has that
    size, but the service can only set the size once the runtime has sent it
    the pty, and crun starts the process without waiting. So such a process
    runs as ``/.aiohcs/init --await-winsize ROWS COLS --status-fd 3 -- ARGS``:
    the init binary waits for the size, then execs ARGS (PATH lookup in the
    process's environment), and reports a failed exec on fd 3 for the service
    to turn into the HcsCreateProcess error. See docs/host.md.
    """
    # The schema bounds both numbers to 0..65535, as struct winsize does.
    return bool(params.emulate_console and params.console_size)


def console_wrapper_args(height: int, width: int, args: list[str]) -> list[str]:
    return [
        INIT_PATH_IN_CONTAINER,
        "--await-winsize",
        str(height),
        str(width),
        "--status-fd",
        str(EXEC_STATUS_FD),
        "--",
        *args,
    ]


def process_spec(params: ProcessParameters, user: User) -> dict[str, Any]:
    """The OCI `process` object for `runc exec --process`.

    With `awaits_console_size(params)` the args run under the console exec
    wrapper, and the runtime must be given `--preserve-fds 1` with the write
    end of a close-on-exec status pipe as fd `EXEC_STATUS_FD`.
    """
    if params.working_directory:
        _require_abs(params.working_directory, "WorkingDirectory")
    env: Mapping[str, str] = params.environment or {}
    env_list = [f"{k}={v}" for k, v in env.items()]
    if "PATH" not in env:
        env_list.insert(0, f"PATH={DEFAULT_PATH}")
    if params.emulate_console and "TERM" not in env:
        env_list.append("TERM=xterm")
    spec: dict[str, Any] = {
        "terminal": bool(params.emulate_console),
        "user": {"uid": user.uid, "gid": user.gid},
        "args": command_args(params),
        "env": env_list,
        "cwd": params.working_directory or "/",
        "capabilities": _capabilities(),
        "noNewPrivileges": True,
    }
    if awaits_console_size(params):
        assert params.console_size is not None
        height, width = params.console_size
        # runc applies consoleSize itself before the exec, crun does not; the
        # wrapper makes both wait for the size the service sets on the pty.
        spec["consoleSize"] = {"height": height, "width": width}
        spec["args"] = console_wrapper_args(height, width, spec["args"])
    if user.uid != 0:
        # Non-root users get no capabilities, as with a normal login.
        spec["capabilities"] = {"bounding": _capabilities()["bounding"]}
    return spec
