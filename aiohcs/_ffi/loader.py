"""Find and load the HCS library in ABI mode (``ffi.dlopen``).

Windows: ``computecore.dll`` for the core functions, ``computestorage.dll`` for
the layer functions (API.md §1.1), ``kernel32`` for ``LocalFree``.
Linux: one library exports everything, including ``LocalFree``; it is
``$AIOHCS_LIBRARY`` if set, else ``aiohcs/_native/build/libcomputecore.so`` in the
package, else whatever ``ctypes.util.find_library("computecore")`` finds.

Exports are resolved one by one on first use, like hcsshim does: a missing
export (an older Windows build, a partial implementation) raises
:class:`~aiohcs.errors.ExportNotFound` naming the function instead of failing
the whole load.
"""

from __future__ import annotations

import ctypes.util
import os
import pathlib
import re
import sys
import threading
from typing import Any

from cffi import FFI

from ..errors import ExportNotFound
from .cdef import CDEF, CDEF_STORAGE_FUNCTIONS

ENV_LIBRARY = "AIOHCS_LIBRARY"

STORAGE_FUNCTIONS: frozenset[str] = frozenset(
    re.findall(r"WINAPI\s+(Hcs\w+)\s*\(", CDEF_STORAGE_FUNCTIONS)
)


class LibraryNotFound(OSError):
    """No HCS library could be found or loaded."""


def bundled_library_path() -> pathlib.Path:
    """Where ``make -C aiohcs/_native`` puts the Linux library."""
    return pathlib.Path(__file__).resolve().parents[1] / "_native" / "build" / "libcomputecore.so"


def linux_library_candidates() -> list[str]:
    """Candidate paths in the order they are tried (first existing one wins)."""
    env = os.environ.get(ENV_LIBRARY)
    if env:
        # An explicit setting is final: falling back silently would hide a typo.
        return [env]
    found: list[str] = []
    bundled = bundled_library_path()
    if bundled.exists():
        found.append(str(bundled))
    system = ctypes.util.find_library("computecore")
    if system:
        found.append(system)
    return found


class HcsLibrary:
    """The loaded HCS exports, looked up lazily by attribute name.

    ``lib.HcsStartComputeSystem(...)`` works as with a plain cffi lib object; the
    first access of each name resolves it and caches the function.
    """

    def __init__(self, ffi: FFI, core: Any, storage: Any | None, allocator: Any, path: str) -> None:
        self._ffi = ffi
        self._core = core
        self._storage = storage if storage is not None else core
        self._allocator = allocator
        self.path = path
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._cache[name]
        except KeyError:
            pass
        if name == "LocalFree":
            source = self._allocator
        elif name in STORAGE_FUNCTIONS:
            source = self._storage
        else:
            source = self._core
        try:
            func = getattr(source, name)
        except (AttributeError, NotImplementedError) as exc:
            raise ExportNotFound(f"{name} is not exported by {self.path}: {exc}") from None
        with self._lock:
            self._cache[name] = func
        return func

    def has(self, name: str) -> bool:
        """True when the export exists (resolves it as a side effect)."""
        try:
            getattr(self, name)
        except ExportNotFound:
            return False
        return True


def make_ffi() -> FFI:
    ffi = FFI()
    ffi.cdef(CDEF)
    return ffi


def load(ffi: FFI) -> HcsLibrary:
    """Load the platform's HCS library; raises :class:`LibraryNotFound` with the paths tried."""
    if sys.platform == "win32":
        try:
            core = ffi.dlopen("computecore.dll")
        except OSError as exc:
            raise LibraryNotFound(
                f"computecore.dll could not be loaded ({exc}); HCS needs Windows 10 1809 "
                "or later with the Containers or Hyper-V feature"
            ) from exc
        try:
            storage = ffi.dlopen("computestorage.dll")
        except OSError:
            storage = None  # layer functions then raise ExportNotFound when used
        kernel32 = ffi.dlopen("kernel32.dll")
        return HcsLibrary(ffi, core, storage, kernel32, "computecore.dll")

    candidates = linux_library_candidates()
    errors: list[str] = []
    for path in candidates:
        try:
            lib = ffi.dlopen(path)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        return HcsLibrary(ffi, lib, None, lib, path)
    tried = "; ".join(errors) or "no candidate found"
    raise LibraryNotFound(
        f"libcomputecore could not be loaded ({tried}). Build it with "
        f"`make -C aiohcs/_native` or set ${ENV_LIBRARY} to its path."
    )
