"""Choose QEMU's accelerator: KVM when it really runs guests fast here, else TCG.

/dev/kvm existing, and even KVM_GET_API_VERSION answering, says nothing about
speed: under nested virtualisation every guest exit can cost milliseconds,
and a Linux boot then takes longer than under TCG. So the probe runs a real
guest: a 16-bit `hlt` at address 0, entered KVM_RUN_ROUNDS times. That is one
full guest entry and exit per round, the cost that dominates a boot. It runs in
a child process (a hung KVM_RUN must not hang the service) with a deadline;
the verdict is cached for the life of the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import mmap
import os
import struct
import sys
import time

from aiohcs.host.reaper import Reaper, run

log = logging.getLogger(__name__)

KVM_RUN_ROUNDS = 200
# A round trip to user space costs 1-3 us on bare-metal KVM. The nested KVM of
# the development hosts measured ~20 us per round, and a Linux boot there is
# slower than under TCG (notes/vm-recipes.md), so the bar sits between.
MAX_SECONDS_PER_ROUND = 0.000005
PROBE_TIMEOUT = 10.0

# ioctl numbers from linux/kvm.h (x86-64).
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_RUN = 0xAE80
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_GET_REGS = 0x8090AE81
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84
KVM_EXIT_HLT = 5
REGS_SIZE = 144
SREGS_SIZE = 312

_cached: str | None = None


def _probe_in_this_process() -> float:
    """Seconds per KVM_RUN round of a one-instruction guest (raises OSError)."""
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        if fcntl.ioctl(kvm, KVM_GET_API_VERSION) != 12:
            raise OSError("unexpected KVM API version")
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
        mem = mmap.mmap(-1, 0x1000)
        mem.write(b"\xf4")  # hlt
        addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        region = struct.pack("IIQQQ", 0, 0, 0, 0x1000, addr)
        fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region)
        vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
        run_size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE)
        run_area = mmap.mmap(vcpu, run_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        sregs = bytearray(SREGS_SIZE)
        fcntl.ioctl(vcpu, KVM_GET_SREGS, sregs, True)
        struct.pack_into("Q", sregs, 0, 0)  # cs.base
        struct.pack_into("H", sregs, 12, 0)  # cs.selector
        fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
        start = time.monotonic()
        for _ in range(KVM_RUN_ROUNDS):
            regs = bytearray(REGS_SIZE)
            struct.pack_into("Q", regs, 16 * 8, 0)  # rip
            struct.pack_into("Q", regs, 17 * 8, 2)  # rflags (bit 1 is always set)
            fcntl.ioctl(vcpu, KVM_SET_REGS, bytes(regs))
            fcntl.ioctl(vcpu, KVM_RUN, 0)
            (reason,) = struct.unpack_from("I", run_area, 8)
            if reason != KVM_EXIT_HLT:
                raise OSError(f"guest exit reason {reason}, expected HLT")
        return (time.monotonic() - start) / KVM_RUN_ROUNDS
    finally:
        os.close(kvm)


async def detect(reaper: Reaper) -> str:
    """ "kvm" if a KVM guest runs fast enough here, else "tcg" (cached)."""
    global _cached
    if _cached is not None:
        return _cached
    verdict = "tcg"
    if os.path.exists("/dev/kvm"):
        try:
            done = await asyncio.wait_for(
                run(reaper, [sys.executable, "-m", "aiohcs.host.vm.accel"]), PROBE_TIMEOUT
            )
            text = done.stdout.decode(errors="replace").strip()
            if done.code == 0:
                per_round = float(text)
                fast = per_round <= MAX_SECONDS_PER_ROUND
                log.info(
                    "KVM probe: %.1f us per guest entry; using %s",
                    per_round * 1e6,
                    "kvm" if fast else "tcg (KVM too slow here, nested?)",
                )
                verdict = "kvm" if fast else "tcg"
            else:
                log.info(
                    "KVM probe failed (%s); using tcg", done.stderr.decode(errors="replace")[-300:]
                )
        except TimeoutError:
            log.info("KVM probe did not finish in %.0fs; using tcg", PROBE_TIMEOUT)
        except (OSError, ValueError) as e:
            log.info("KVM probe failed (%s); using tcg", e)
    else:
        log.info("no /dev/kvm; using tcg")
    _cached = verdict
    return verdict


async def choose(setting: str, reaper: Reaper) -> str:
    """The accelerator for a setting "auto", "kvm" or "tcg"."""
    if setting in ("kvm", "tcg"):
        return setting
    return await detect(reaper)


def main() -> int:
    try:
        per_round = _probe_in_this_process()
    except OSError as e:
        print(f"KVM probe: {e}", file=sys.stderr)
        return 1
    print(f"{per_round:.9f}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
