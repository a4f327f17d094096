"""Host side of Plan9 shares added at run time (blocking: call from a thread).

A VM whose document has a `Devices.Plan9` section exports its staging
directory `<state>/systems/<id>/plan9-hot/` through one extra 9p device
(qemu.plan9_hot_args). Adding a share bind-mounts the share's host directory
onto a new subdirectory of it (read-only when the share is); the guest agent
then mounts the staging export once and binds the subdirectory where the
share belongs in the guest. These helpers do the host mounts, and find and
remove them when a VM ends or the service starts after a crash: a bind mount
left in a system directory would let `rmtree` delete the shared files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re

_libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def subdir_name(index: int, tag: str) -> str:
    """Staging subdirectory of a share: unique per add, readable in listings."""
    return f"{index}-{_SAFE.sub('_', tag)[:60]}"


def _mount(src: str | None, target: str, flags: int) -> None:
    rc = _libc.mount(
        None if src is None else src.encode(),
        target.encode(),
        None,
        ctypes.c_ulong(flags),
        None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src or ''} on {target}: {os.strerror(err)}")


def bind(src: str, target: str, *, read_only: bool) -> None:
    """Bind-mount directory `src` on `target` (created), read-only if asked.

    The new mount is private: nothing mounted under it later propagates to
    other mount namespaces, and its removal stays local too.
    """
    os.makedirs(target, mode=0o700, exist_ok=True)
    _mount(src, target, MS_BIND)
    try:
        _mount(None, target, MS_PRIVATE)
        if read_only:
            # A bind mount takes its flags only on a remount.
            _mount(None, target, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    except OSError:
        unmount(target)
        raise


def unmount(target: str) -> None:
    """Lazy unmount; a target that is not mounted is fine."""
    rc = _libc.umount2(target.encode(), MNT_DETACH)
    if rc != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(directory: str) -> list[str]:
    """Mount points strictly inside `directory`, deepest first."""
    root = os.path.realpath(directory).rstrip("/") + "/"
    out: list[str] = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4:
                    point = _unescape(fields[4])
                    if point.startswith(root):
                        out.append(point)
    except OSError:
        return []
    return sorted(set(out), key=lambda p: (-p.count("/"), p))


def unmount_all_under(directory: str) -> list[str]:
    """Unmount everything mounted inside `directory`; returns what stays mounted."""
    for _ in range(8):  # stacked mounts come off one layer per pass
        points = mounts_under(directory)
        if not points:
            return []
        for point in points:
            with contextlib.suppress(OSError):
                unmount(point)
    return mounts_under(directory)
