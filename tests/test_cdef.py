"""The cdef parses, declares all 74 functions and has the x64 struct layouts."""

from __future__ import annotations

import re

import cffi
import pytest

from aiohcs._ffi import cdef, ffi
from aiohcs._ffi.build_callbacks import CALLBACKS_CDEF
from aiohcs._ffi.loader import STORAGE_FUNCTIONS

PROTO = re.compile(r"WINAPI\s+(Hcs\w+)\s*\(")


def test_function_count() -> None:
    core = PROTO.findall(cdef.CDEF_CORE_FUNCTIONS)
    storage = PROTO.findall(cdef.CDEF_STORAGE_FUNCTIONS)
    assert len(core) == 60
    assert len(storage) == 14
    assert len(set(core + storage)) == 74
    assert set(storage) == STORAGE_FUNCTIONS


@pytest.mark.skipif(ffi.sizeof("void *") != 8, reason="layouts below are for 64-bit targets")
def test_struct_sizes() -> None:
    assert ffi.sizeof("HCS_EVENT") == 24
    assert ffi.sizeof("HCS_PROCESS_INFORMATION") == 32
    assert ffi.sizeof("HCS_CREATE_OPTIONS_1") == 48
    assert ffi.offsetof("HCS_EVENT", "EventData") == 8
    assert ffi.offsetof("HCS_EVENT", "Operation") == 16
    assert ffi.offsetof("HCS_PROCESS_INFORMATION", "StdInput") == 8
    assert ffi.offsetof("HCS_PROCESS_INFORMATION", "StdError") == 24
    assert ffi.offsetof("HCS_CREATE_OPTIONS_1", "CallbackOptions") == 24
    assert ffi.offsetof("HCS_CREATE_OPTIONS_1", "Callback") == 40


def test_callbacks_module_event_layout_matches() -> None:
    """The compiled trampoline module declares HCS_EVENT on its own: same layout."""
    other = cffi.FFI()
    other.cdef(CALLBACKS_CDEF.replace('extern "Python"', ""))
    assert other.sizeof("HCS_EVENT") == ffi.sizeof("HCS_EVENT")
    for name in ("Type", "EventData", "Operation"):
        assert other.offsetof("HCS_EVENT", name) == ffi.offsetof("HCS_EVENT", name)


def test_wide_strings_are_utf16() -> None:
    assert ffi.sizeof("WCHAR") == 2
    text = "caf\u00e9 \U0001f600"
    buf = ffi.new("char16_t[]", text)
    assert len(buf) == len(text.encode("utf-16-le")) // 2 + 1
    assert ffi.string(buf) == text
