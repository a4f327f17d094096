"""The utility VM build (aiohcs.uvm): pure parts, and the cached real build."""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiohcs.uvm import builder as b


def test_extract_vmlinux_finds_the_xz_elf() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 100
    fake = b"MZ" + b"\0" * 500 + b"\xfd7zXZ\x00 decoy" + lzma.compress(elf) + b"trailer"
    assert b.extract_vmlinux(fake) == elf
    with pytest.raises(b.UvmError):
        b.extract_vmlinux(b"no kernel here")


def fake_ko(deps: str) -> bytes:
    return b"\0license=GPL\0depends=" + deps.encode() + b"\0name=x\0"


def test_module_plan_orders_dependencies_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(b, "MODULE_GROUPS", {"boot": ["c"], "9p": ["d", "builtin"]})
    mods = {"a": fake_ko(""), "b": fake_ko("a"), "c": fake_ko("b,a"), "d": fake_ko("a,e"),
            "e": fake_ko("")}  # fmt: skip
    assert b.module_plan(mods) == [("boot", "a"), ("boot", "b"), ("boot", "c"), ("9p", "e"),
                                   ("9p", "d")]  # fmt: skip
    del mods["e"]
    with pytest.raises(b.UvmError, match="module e"):
        b.module_plan(mods)


def test_cmdline_is_the_fast_one() -> None:
    line = b.boot_cmdline("x=1")
    assert "cryptomgr.notests" in line and line.endswith("x=1")
    if b.tsc_khz():
        assert f"tsc_early_khz={b.tsc_khz()}" in line


def test_cache_key_follows_the_agent() -> None:
    k, bb = ("linux-image-x", "1"), ("busybox-static", "2")
    assert b._key(k, bb, b"agent1") != b._key(k, bb, b"agent2")
    assert b._key(k, bb, b"agent1") == b._key(k, bb, b"agent1")


def test_built_image(uvm: dict[str, Any]) -> None:
    kernel, initrd = Path(uvm["kernel"]), Path(uvm["initrd"])
    assert kernel.read_bytes()[:4] == b"\x7fELF"
    listing = subprocess.run(
        ["cpio", "-t", "--quiet"], stdin=initrd.open("rb"), capture_output=True, check=True
    ).stdout.decode()
    names = set(listing.split())
    assert {"init", "bin/busybox", "bin/sh", "dev/console", "etc/aiohcs/modules"} <= names
    assert "lib/modules/aiohcs/virtio_console.ko" in names
    assert "lib/modules/aiohcs/9p.ko" in names
    manifest = json.loads((kernel.parent / "manifest.json").read_text())
    assert manifest["kernel_package"].startswith("linux-image-")


def test_cli_path_prints_json(uvm: dict[str, Any]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "aiohcs.uvm", "path"], capture_output=True, text=True, check=True
    )
    out = json.loads(r.stdout)
    assert out == {"kernel": str(uvm["kernel"]), "initrd": str(uvm["initrd"])}
    assert "cached" in r.stderr
