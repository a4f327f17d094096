"""Shared fixtures.

Unit tests need nothing.  Integration tests use the session fixture
``hcs_service``: it builds the native code (``make -C aiohcs/_native``), a
busybox root filesystem, and starts the real host service on a temporary
socket and state directory, with ``AIOHCS_SOCKET`` pointing at it for the
library.  It is stopped at the end of the session.

Integration tests are skipped (with the reason) when the machine cannot run
containers at all: not root, no runc/crun, no busybox.  A build or service that
*fails* is an error, not a skip.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from support import (
    NATIVE,
    HcsService,
    build_rootfs,
    ensure_callbacks_module,
    launch_service,
    skip_reason,
    stop_service,
)

ensure_callbacks_module()


@pytest.fixture(scope="session")
def hcs_service() -> Iterator[HcsService]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    subprocess.run(["make", "-s", "-C", str(NATIVE)], check=True)
    os.environ.pop("AIOHCS_LIBRARY", None)  # use the library just built
    # Short base path: unix socket paths are limited to 108 bytes.
    base = pathlib.Path(tempfile.mkdtemp(prefix="aiohcs-t-", dir="/tmp"))
    rootfs = base / "rootfs"
    build_rootfs(rootfs)
    service = launch_service(base, rootfs)
    os.environ["AIOHCS_SOCKET"] = service.socket
    os.environ["AIOHCS_TEST_ROOTFS"] = str(rootfs)
    try:
        yield service
    finally:
        stop_service(service)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def system_id() -> str:
    """A fresh, unique compute-system id."""
    return f"t-{uuid.uuid4().hex[:12]}"
