"""The default utility VM: a Debian kernel + a busybox/agent initramfs.

`python -m aiohcs.uvm path` prints `{"kernel": ..., "initrd": ...}` (building
first if needed); `python -m aiohcs.uvm build [--force]` builds. See builder.py.
"""

from aiohcs.uvm.builder import (
    AGENT_PORT,
    CACHE_ROOT,
    UvmPaths,
    boot_cmdline,
    build,
    ensure,
    tsc_khz,
)

__all__ = ["AGENT_PORT", "CACHE_ROOT", "UvmPaths", "boot_cmdline", "build", "ensure", "tsc_khz"]
