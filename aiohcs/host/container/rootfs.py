"""Host-side root filesystem work: overlay mounts and safe reads inside a rootfs."""

from __future__ import annotations

import ctypes
import errno
import os

from aiohcs.host.container.oci import OverlayRootfs

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


def mount_overlay(overlay: OverlayRootfs) -> None:
    """Mount the overlay (blocking syscall: call from a worker thread)."""
    for d in (overlay.upper, overlay.work, overlay.target):
        os.makedirs(d, exist_ok=True)
    rc = _libc.mount(
        b"overlay",
        overlay.target.encode(),
        b"overlay",
        ctypes.c_ulong(0),
        overlay.mount_options().encode(),
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount overlay on {overlay.target}: {os.strerror(err)}")


def unmount(target: str) -> None:
    """Lazy unmount; a target that is not mounted is fine."""
    rc = _libc.umount2(target.encode(), MNT_DETACH)
    if rc != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def is_mountpoint(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            return any(line.split()[4] == path for line in f if len(line.split()) > 4)
    except OSError:
        return False


def resolve_in_root(root: str, path: str, max_links: int = 40) -> str:
    """Resolve `path` as the container would see it, never leaving `root`.

    Symlinks in a container rootfs are the container's: an absolute link target
    is relative to `root`, and ".." stops at `root`. Reading a container file
    through the host path without this could follow a link out to the host.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            links += 1
            if links > max_links:
                raise OSError(errno.ELOOP, f"too many symlinks resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def read_in_root(root: str, path: str, limit: int = 1 << 20) -> str | None:
    """Text of a container file, or None if it does not exist."""
    try:
        # O_NOFOLLOW: the last component must not turn into a link after we
        # resolved it (intermediate components are checked only once; the
        # files read this way are informational, e.g. /etc/passwd).
        fd = os.open(resolve_in_root(root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")
