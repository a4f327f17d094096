"""Build the default utility VM from Debian packages and the guest agent.

Inputs (downloaded once with `apt-get download` into `<cache>/debs/`):

- the generic Debian kernel (the versioned package `linux-image-amd64`
  depends on). It has 9p, which the cloud kernel lacks; its compressed bzImage
  is XZ, slow to decompress under TCG, so we extract the uncompressed `vmlinux`
  (an ELF with a PVH entry note) for direct boot.
- `busybox-static`: the shell and tools inside the VM.
- `aiohcs/_native/build/aiohcs-agent` (built with make): `/init`.

Output: `<cache>/<key>/vmlinux` and `<cache>/<key>/initrd.img` (cpio newc,
uncompressed: compression gains nothing at boot, measured). The key hashes the
package versions, the agent binary and this builder's recipe, so a changed
agent gives a new build. Progress goes to stderr.

Staleness is decided by content, not mtimes: `sources_fingerprint()` hashes
the agent's inputs (`agent/*.c`, `agent/*.h`, the Makefile, `$CC`) with the
recipe. It is recorded next to the agent binary
(`build/aiohcs-agent.sources`: make runs, with `-B`, only when it differs) and
in each build's manifest (`sources_sha256`). `ensure()` (`python -m aiohcs.uvm
path`) returns the newest cached build with the current fingerprint without
running make or apt-cache; only a miss goes through `build()`, which resolves
the packages with apt. So a newer Debian kernel/busybox is picked up by
`build --force` or the next agent change, not by `path`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("AIOHCS_UVM_CACHE", "/var/cache/aiohcs/uvm"))
NATIVE = Path(__file__).resolve().parent.parent / "_native"
AGENT_PORT = "org.aiohcs.agent"
KERNEL_META = "linux-image-amd64"
BUSYBOX = "busybox-static"
RECIPE = "3"  # bump when the image layout changes

# Module groups the agent loads (docs/guest-agent.md): "boot" before the
# channel opens, "late" in the background after the first hello, "9p" on the
# first MOUNT9P. Dependencies are added from each module's modinfo.
MODULE_GROUPS: dict[str, list[str]] = {
    "boot": ["virtio_pci", "virtio_console"],
    "late": [
        "button",
        "evdev",
        "virtio_blk",
        "virtio_scsi",
        # crc providers first: t10-pi (sd_mod) asks the crypto API for them
        "crct10dif_generic",
        "crc64_rocksoft_generic",
        "sd_mod",
        "virtio_balloon",
    ],
    "9p": ["9pnet_virtio", "9p"],
}
# Everything the groups above may pull in (kept while streaming the package).
MODULE_CANDIDATES = {m for ms in MODULE_GROUPS.values() for m in ms} | {
    "virtio",
    "virtio_ring",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "scsi_mod",
    "scsi_common",
    "netfs",
    "fscache",
    "9pnet",
    "t10-pi",
    "crc-t10dif",
    "crc64-rocksoft",
    "crc64",
    "crct10dif_common",
}


class UvmError(Exception):
    pass


@dataclass(frozen=True)
class UvmPaths:
    kernel: Path
    initrd: Path
    directory: Path


_T0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[uvm {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _run(*args: str, cwd: Path | None = None) -> str:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise UvmError(f"{' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


# ------------------------------------------------------------------ boot command line


def tsc_khz() -> int | None:
    """Host TSC in kHz from /proc/cpuinfo "cpu MHz" (TCG boots hang without it)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    m = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.M)
    return int(float(m.group(1)) * 1000) if m else None


def boot_cmdline(extra: str = "") -> str:
    """The measured fast kernel command line (vm-recipes.md) for this utility VM."""
    parts = [
        "console=ttyS0",
        "panic=-1",
        "quiet",
        "no-timer-check",
        "tsc=reliable",
        "mitigations=off",
        "i8042.noaux",
        "i8042.nokbd",
        "cryptomgr.notests",
    ]
    khz = tsc_khz()
    if khz:
        parts.append(f"tsc_early_khz={khz}")
    if extra:
        parts.append(extra)
    return " ".join(parts)


# ------------------------------------------------------------------ packages


def _installed_candidate(pkg: str) -> tuple[str, str]:
    """(package, version) apt would fetch; for the kernel the versioned image package."""
    if pkg == KERNEL_META:
        out = _run("apt-cache", "depends", KERNEL_META)
        m = re.search(r"Depends: (linux-image-[0-9][^\s]*)", out)
        if not m:
            raise UvmError(f"apt-cache depends {KERNEL_META}: no linux-image-<version> found")
        pkg = m.group(1)
    out = _run("apt-cache", "show", "--no-all-versions", pkg)
    m = re.search(r"^Version: (\S+)", out, re.M)
    if not m:
        raise UvmError(f"apt-cache show {pkg}: no Version")
    return pkg, m.group(1)


def _cached_deb(debs: Path, pkg: str, version: str | None) -> Path | None:
    for f in sorted(debs.glob(f"{pkg}_*.deb")):
        if version is None:
            return f
        with contextlib.suppress(UvmError):
            if _run("dpkg-deb", "-f", str(f), "Version").strip() == version:
                return f
    return None


def resolve_package(debs: Path, pkg: str) -> tuple[str, str, Path]:
    """(package, version, .deb path), downloading with apt-get when not cached."""
    try:
        name, version = _installed_candidate(pkg)
    except (UvmError, FileNotFoundError) as e:
        # Offline/apt unusable: take any cached deb of the package.
        prefix = "linux-image-[0-9]" if pkg == KERNEL_META else pkg
        hits = sorted(debs.glob(f"{prefix}*.deb"))
        if not hits:
            raise UvmError(f"{pkg}: {e}; and nothing cached in {debs}") from e
        found = hits[-1]
        name = _run("dpkg-deb", "-f", str(found), "Package").strip()
        return name, _run("dpkg-deb", "-f", str(found), "Version").strip(), found
    deb = _cached_deb(debs, name, version)
    if deb is None:
        progress(f"downloading {name} {version} (apt-get download)")
        _run("apt-get", "download", f"{name}={version}", cwd=debs)
        deb = _cached_deb(debs, name, version)
        if deb is None:
            raise UvmError(f"apt-get download {name}={version}: no .deb appeared in {debs}")
    return name, version, deb


def _deb_members(deb: Path) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """Stream the data tar of a .deb (no full extraction: the kernel has 400 MB of modules)."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for info in tar:
                yield info, tar
    finally:
        proc.stdout.close()
        if proc.wait() not in (0, -13):  # -13: we stopped reading early (SIGPIPE)
            raise UvmError(f"dpkg-deb --fsys-tarfile {deb} failed")


# ------------------------------------------------------------------ kernel


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF kernel inside a bzImage (XZ or gzip payload)."""

    def unxz(d: bytes) -> bytes:
        return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(d)

    def gunzip(d: bytes) -> bytes:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(d)

    for magic, decomp in ((b"\xfd7zXZ\x00", unxz), (b"\x1f\x8b\x08", gunzip)):
        start = 0
        while (off := bzimage.find(magic, start)) >= 0:
            start = off + 1
            try:
                out = decomp(bzimage[off:])
            except (lzma.LZMAError, zlib.error):
                continue
            if out[:4] == b"\x7fELF":
                return out
    raise UvmError("no XZ or gzip compressed ELF kernel found in the bzImage")


def modinfo_depends(ko: bytes) -> list[str]:
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)", ko)
    if not m or not m.group(1):
        return []
    return [d.decode() for d in m.group(1).split(b",") if d]


def module_plan(available: dict[str, bytes]) -> list[tuple[str, str]]:
    """(group, module) in load order: dependencies first, each module once."""
    plan: list[tuple[str, str]] = []
    placed: set[str] = set()

    def visit(group: str, name: str, stack: tuple[str, ...]) -> None:
        if name in placed:
            return
        if name in stack:
            raise UvmError(f"module dependency cycle: {' -> '.join((*stack, name))}")
        ko = available.get(name)
        if ko is None:
            raise UvmError(f"module {name} (needed by {stack[-1] if stack else group}) missing")
        for dep in modinfo_depends(ko):
            visit(group, dep, (*stack, name))
        placed.add(name)
        plan.append((group, name))

    for group, names in MODULE_GROUPS.items():
        for name in names:
            if name in available:
                visit(group, name, ())
            # else: built into this kernel (nothing to load)
    return plan


# ------------------------------------------------------------------ initramfs


class Cpio:
    """A cpio "newc" archive written in memory (no root needed for device nodes)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ino = 1

    def _entry(
        self, name: str, mode: int, body: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        nb = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(body), 0, 0, rdev[0], rdev[1], len(nb), 0]
        self.ino += 1
        self.data += b"070701" + b"".join(b"%08X" % f for f in fields) + nb
        self.data += b"\0" * (-len(self.data) % 4)
        self.data += body
        self.data += b"\0" * (-len(self.data) % 4)

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, body: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, body)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, 0o020000 | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self.data += b"\0" * (-len(self.data) % 512)
        return bytes(self.data)


def make_initramfs(
    agent: bytes,
    busybox: bytes,
    applets: list[str],
    modules: dict[str, bytes],
    plan: list[tuple[str, str]],
) -> bytes:
    c = Cpio()
    for d in (
        "bin",
        "dev",
        "etc",
        "etc/aiohcs",
        "lib",
        "lib/modules",
        "lib/modules/aiohcs",
        "mnt",
        "proc",
        "root",
        "run",
        "sys",
        "tmp",
        "usr",
        "var",
    ):
        c.dir(d)
    # The kernel opens /dev/console for init before devtmpfs is mounted.
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("init", agent, 0o755)
    c.file("bin/busybox", busybox, 0o755)
    for a in applets:
        if a != "busybox":
            c.symlink(f"bin/{a}", "busybox")
    c.symlink("sbin", "bin")
    c.symlink("usr/bin", "../bin")
    c.symlink("usr/sbin", "../bin")
    c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    c.file("etc/group", b"root:x:0:\n")
    c.file("etc/aiohcs/modules", "".join(f"{g} {m}\n" for g, m in plan).encode())
    for _, m in plan:
        c.file(f"lib/modules/aiohcs/{m}.ko", modules[m])
    return c.finish()


# ------------------------------------------------------------------ build


AGENT_INPUTS = ("agent/*.c", "agent/*.h", "Makefile")


def agent_sources_hash(native: Path | None = None) -> str:
    """sha256 of the agent's make inputs (file names and contents, and `$CC`)."""
    native = native or NATIVE
    h = hashlib.sha256(f"CC={os.environ.get('CC', '')}\0".encode())
    files = sorted({f for pat in AGENT_INPUTS for f in native.glob(pat) if f.is_file()})
    if not files:
        raise UvmError(f"no agent sources in {native}")
    for f in files:
        data = f.read_bytes()
        h.update(f"{f.relative_to(native).as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def sources_fingerprint(agent_hash: str | None = None) -> str:
    """What a cached build must have been made from: agent sources + this recipe."""
    h = hashlib.sha256(f"recipe={RECIPE}|agent={agent_hash or agent_sources_hash()}|".encode())
    h.update(json.dumps(MODULE_GROUPS, sort_keys=True).encode())
    return h.hexdigest()


def _agent_binary(agent_hash: str) -> Path:
    """build/aiohcs-agent for sources hashing to `agent_hash`; make only when the stamp differs."""
    binary = NATIVE / "build" / "aiohcs-agent"
    stamp = binary.with_name(binary.name + ".sources")
    with contextlib.suppress(OSError):
        if binary.is_file() and stamp.read_text().strip() == agent_hash:
            return binary
    progress("building the guest agent (make -B build/aiohcs-agent)")
    # -B: the stamp says the content changed, whatever the mtimes say.
    _run("make", "-s", "-B", "-C", str(NATIVE), "build/aiohcs-agent")
    stamp.write_text(agent_hash + "\n")
    return binary


def _key(kernel: tuple[str, str], busybox: tuple[str, str], agent: bytes) -> str:
    h = hashlib.sha256()
    h.update(f"recipe={RECIPE}|{kernel[0]}={kernel[1]}|{busybox[0]}={busybox[1]}|".encode())
    h.update(json.dumps(MODULE_GROUPS, sort_keys=True).encode())
    h.update(hashlib.sha256(agent).digest())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """One builder at a time (parallel test sessions share the cache)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def build(force: bool = False, cache: Path | None = None) -> UvmPaths:
    """Build (or find cached) kernel + initramfs; returns their paths."""
    root = cache or CACHE_ROOT
    debs = root / "debs"
    with _lock(root):
        debs.mkdir(parents=True, exist_ok=True)
        agent_hash = agent_sources_hash()
        fingerprint = sources_fingerprint(agent_hash)
        agent = _agent_binary(agent_hash).read_bytes()
        kpkg, kver, kdeb = resolve_package(debs, KERNEL_META)
        bpkg, bver, bdeb = resolve_package(debs, BUSYBOX)
        key = _key((kpkg, kver), (bpkg, bver), agent)
        out = root / key
        paths = UvmPaths(out / "vmlinux", out / "initrd.img", out)
        if not force and (out / "manifest.json").exists():
            _record_fingerprint(out / "manifest.json", fingerprint)
            progress(f"cached: {out}")
            return paths
        progress(f"building utility VM {key}: {kpkg} {kver}, {bpkg} {bver}")
        bzimage = b""
        modules: dict[str, bytes] = {}
        progress(f"reading {kdeb.name}")
        for info, tar in _deb_members(kdeb):
            base = os.path.basename(info.name)
            if re.fullmatch(r"\./boot/vmlinuz-.*", info.name):
                f = tar.extractfile(info)
                bzimage = f.read() if f else b""
            elif base.endswith(".ko") and base[:-3] in MODULE_CANDIDATES:
                f = tar.extractfile(info)
                if f:
                    modules[base[:-3]] = f.read()
        if not bzimage:
            raise UvmError(f"{kdeb}: no boot/vmlinuz")
        progress("extracting the uncompressed vmlinux (PVH boot)")
        vmlinux = extract_vmlinux(bzimage)
        plan = module_plan(modules)
        progress("modules: " + " ".join(f"{g}:{m}" for g, m in plan))
        busybox = b""
        for info, tar in _deb_members(bdeb):
            if info.name == "./bin/busybox":
                f = tar.extractfile(info)
                busybox = f.read() if f else b""
                break
        if not busybox:
            raise UvmError(f"{bdeb}: no bin/busybox")
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            bb = Path(tmp) / "busybox"
            bb.write_bytes(busybox)
            bb.chmod(0o755)
            applets = _run(str(bb), "--list").split()
            progress(f"initramfs: agent, busybox ({len(applets)} applets), {len(plan)} modules")
            initrd = make_initramfs(agent, busybox, applets, modules, plan)
            stage = Path(tmp) / "out"
            stage.mkdir()
            (stage / "vmlinux").write_bytes(vmlinux)
            (stage / "initrd.img").write_bytes(initrd)
            manifest = {
                "kernel_package": f"{kpkg}={kver}",
                "busybox_package": f"{bpkg}={bver}",
                "agent_sha256": hashlib.sha256(agent).hexdigest(),
                "sources_sha256": fingerprint,
                "modules": plan,
                "cmdline": boot_cmdline(),
            }
            (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if out.exists():
                shutil.rmtree(out)
            stage.rename(out)
        _prune(root, keep=out)
        progress(f"done: {out} (vmlinux {len(vmlinux) >> 20} MiB, initrd {len(initrd) >> 10} KiB)")
        return paths


def _prune(root: Path, keep: Path, count: int = 2) -> None:
    """Drop old builds (a new agent gives a new key); keep the newest `count`."""
    builds = sorted(
        (d for d in root.iterdir() if (d / "manifest.json").exists()),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    for d in builds[count:]:
        if d != keep:
            shutil.rmtree(d, ignore_errors=True)


def _manifest(d: Path) -> dict[str, object] | None:
    try:
        m = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def _record_fingerprint(manifest: Path, fingerprint: str) -> None:
    """Note in a cached build's manifest that the current sources give it (same agent key)."""
    m = _manifest(manifest.parent)
    if m is None or m.get("sources_sha256") == fingerprint:
        return
    m["sources_sha256"] = fingerprint
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(m, indent=2) + "\n")
    os.replace(tmp, manifest)


def cached(cache: Path | None = None, fingerprint: str | None = None) -> UvmPaths | None:
    """The newest complete build made from the current sources, or None (no make, no apt)."""
    root = cache or CACHE_ROOT
    fingerprint = fingerprint or sources_fingerprint()
    hits: list[tuple[float, Path]] = []
    try:
        dirs = list(root.iterdir())
    except OSError:
        return None
    for d in dirs:
        m = _manifest(d)
        if m is None or m.get("sources_sha256") != fingerprint:
            continue
        if (d / "vmlinux").is_file() and (d / "initrd.img").is_file():
            with contextlib.suppress(OSError):
                hits.append((d.stat().st_mtime, d))
    if not hits:
        return None
    d = max(hits)[1]
    return UvmPaths(d / "vmlinux", d / "initrd.img", d)


def ensure(cache: Path | None = None) -> UvmPaths:
    """The current utility VM, built first if missing or its agent sources changed."""
    hit = cached(cache)
    if hit is not None:
        progress(f"cached: {hit.directory}")
        return hit
    return build(force=False, cache=cache)
