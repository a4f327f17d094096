"""The utility VM build (aiohcs.uvm): pure parts, and the cached real build."""

from __future__ import annotations

import json
import lzma
import os
import shutil
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
    # The fixture's ensure() recorded the fingerprint: no make (nor apt-cache) now.
    assert "building the guest agent" not in r.stderr


# ------------------------------------------------------------------ staleness by content


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A copy of the agent sources as b.NATIVE, a fake cache, and every _run recorded.

    _run (make, apt-cache, dpkg-deb) only records and fails, so a test sees whether
    the builder wanted a subprocess at all.
    """
    native = tmp_path / "native"
    (native / "agent").mkdir(parents=True)
    for src in sorted((b.NATIVE / "agent").glob("*.[ch]")):
        shutil.copy(src, native / "agent" / src.name)
    shutil.copy(b.NATIVE / "Makefile", native / "Makefile")
    monkeypatch.setattr(b, "NATIVE", native)
    calls: list[tuple[str, ...]] = []

    def no_subprocess(*args: str, cwd: Path | None = None) -> str:
        calls.append(args)
        raise b.UvmError(f"test: no subprocess ({args[0]})")

    monkeypatch.setattr(b, "_run", no_subprocess)
    return {"native": native, "cache": tmp_path / "cache", "calls": calls}


def fake_build(cache: Path, key: str, manifest: dict[str, Any], mtime: float = 0) -> Path:
    d = cache / key
    d.mkdir(parents=True)
    (d / "vmlinux").write_bytes(b"\x7fELF")
    (d / "initrd.img").write_bytes(b"070701")
    (d / "manifest.json").write_text(json.dumps(manifest))
    if mtime:
        os.utime(d, (mtime, mtime))
    return d


def test_unchanged_sources_use_the_cache_without_make(tree: dict[str, Any]) -> None:
    cache, calls = tree["cache"], tree["calls"]
    d = fake_build(cache, "k1", {"sources_sha256": b.sources_fingerprint()})
    assert b.ensure(cache).directory == d
    # mtimes alone change nothing: staleness is by content
    later = os.stat(tree["native"] / "agent" / "main.c").st_mtime + 100
    for f in (tree["native"] / "agent").iterdir():
        os.utime(f, (later, later))
    assert b.ensure(cache).directory == d
    assert calls == []


@pytest.mark.parametrize(
    "change",
    [
        lambda n: (n / "agent" / "main.c").write_text((n / "agent" / "main.c").read_text() + "\n"),
        lambda n: (n / "agent" / "agent.h").write_text("/* changed */\n"),
        lambda n: (n / "agent" / "extra.c").write_text("int extra;\n"),
        lambda n: (n / "Makefile").write_text((n / "Makefile").read_text() + "# x\n"),
    ],
    ids=["edit-c", "edit-h", "new-c", "makefile"],
)
def test_changed_sources_rebuild(tree: dict[str, Any], change: Any) -> None:
    cache, calls = tree["cache"], tree["calls"]
    fake_build(cache, "k1", {"sources_sha256": b.sources_fingerprint()})
    change(tree["native"])
    assert b.cached(cache) is None
    with pytest.raises(b.UvmError, match="no subprocess"):
        b.ensure(cache)
    assert calls and calls[0][0] == "make" and "-B" in calls[0]


def test_agent_make_follows_the_stamp(
    tree: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    native, calls = tree["native"], tree["calls"]
    binary = native / "build" / "aiohcs-agent"

    def fake_make(*args: str, cwd: Path | None = None) -> str:
        calls.append(args)
        binary.parent.mkdir(exist_ok=True)
        binary.write_bytes(b"agent")
        return ""

    monkeypatch.setattr(b, "_run", fake_make)
    h = b.agent_sources_hash()
    assert b._agent_binary(h) == binary and len(calls) == 1  # no stamp yet
    assert b._agent_binary(h) == binary and len(calls) == 1  # stamp matches: no make
    (native / "agent" / "main.c").write_text("int main(void) { return 0; }\n")
    h2 = b.agent_sources_hash()
    assert h2 != h
    b._agent_binary(h2)
    assert len(calls) == 2 and "-B" in calls[1]
    assert (native / "build" / "aiohcs-agent.sources").read_text().strip() == h2


def test_build_records_the_fingerprint_of_an_older_manifest(
    tree: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build cached before fingerprints existed: build() adds it, then ensure() is fast."""
    cache, calls = tree["cache"], tree["calls"]
    agent = tree["native"] / "build" / "aiohcs-agent"
    agent.parent.mkdir()
    agent.write_bytes(b"agent")
    kernel, busybox = ("linux-image-x", "1"), ("busybox-static", "2")
    monkeypatch.setattr(b, "_agent_binary", lambda h: agent)
    monkeypatch.setattr(
        b, "resolve_package",
        lambda debs, pkg: (*(kernel if pkg == b.KERNEL_META else busybox), debs / "x.deb"),
    )  # fmt: skip
    d = fake_build(cache, b._key(kernel, busybox, b"agent"), {"agent_sha256": "old"})
    assert b.cached(cache) is None
    assert b.build(cache=cache).directory == d
    monkeypatch.setattr(b, "_agent_binary", lambda h: pytest.fail("ensure() ran make"))
    monkeypatch.setattr(b, "resolve_package", lambda *a: pytest.fail("ensure() asked apt"))
    assert b.ensure(cache).directory == d
    assert json.loads((d / "manifest.json").read_text())["agent_sha256"] == "old"
    assert calls == []


def test_prune_keeps_the_two_newest(tmp_path: Path) -> None:
    (tmp_path / "debs").mkdir()
    (tmp_path / "debs" / "x.deb").write_bytes(b"")
    dirs = [fake_build(tmp_path, f"k{i}", {}, mtime=1_000_000 + i) for i in range(4)]
    b._prune(tmp_path, keep=dirs[3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debs", "k2", "k3"]
