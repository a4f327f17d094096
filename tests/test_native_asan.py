"""(e) The C library's own tests, built with AddressSanitizer + UBSan, against the
running host service and the test rootfs (``make -C aiohcs/_native check``)."""

from __future__ import annotations

import os
import subprocess

import pytest
from support import NATIVE, HcsService


@pytest.mark.timeout(600)
def test_native_check_under_asan(hcs_service: HcsService) -> None:
    env = dict(os.environ)
    env["AIOHCS_SOCKET"] = hcs_service.socket
    env["AIOHCS_TEST_ROOTFS"] = hcs_service.rootfs
    # The sanitizer runtime must come first; a preloaded library from the
    # caller's environment would break that.
    env.pop("LD_PRELOAD", None)
    result = subprocess.run(
        ["make", "-C", str(NATIVE), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    output = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, (
        f"make check failed:\n{output}\n--- service ---\n{hcs_service.log_tail()}"
    )
    assert "ERROR: AddressSanitizer" not in result.stderr, output
    assert "runtime error:" not in result.stderr, output  # UBSan
    assert hcs_service.alive()
