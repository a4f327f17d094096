"""cffi bindings: one cdef of the HCS C API, the loaded library, the trampolines.

``ffi`` parses the declarations at import (cheap, no I/O).  The library itself
is loaded on first use of :func:`get_lib`, so importing aiohcs never fails on a
machine without HCS; the first call does, with a message saying what to build
or install.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

from .cdef import GENERIC_ALL, HCS_CREATE_OPTIONS_1_VERSION, INFINITE
from .loader import HcsLibrary, LibraryNotFound, load, make_ffi

ffi = make_ffi()

_lib: HcsLibrary | None = None
_lib_lock = threading.Lock()


def get_lib() -> HcsLibrary:
    """The loaded HCS library (loaded once, thread-safe)."""
    global _lib
    lib = _lib
    if lib is None:
        with _lib_lock:
            if _lib is None:
                _lib = load(ffi)
            lib = _lib
    return lib


def get_callbacks() -> ModuleType:
    """The compiled ``aiohcs._hcs_callbacks`` module (the two trampolines)."""
    try:
        # By name: the module is compiled at install time and may be absent
        # when type checkers or linters look at a fresh checkout.
        module = importlib.import_module("aiohcs._hcs_callbacks")
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "aiohcs._hcs_callbacks is not built: run `pip install -e .` or "
            "`python aiohcs/_ffi/build_callbacks.py`"
        ) from exc
    return module


__all__ = [
    "GENERIC_ALL",
    "HCS_CREATE_OPTIONS_1_VERSION",
    "INFINITE",
    "HcsLibrary",
    "LibraryNotFound",
    "ffi",
    "get_callbacks",
    "get_lib",
]
