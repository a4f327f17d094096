"""Our cdef against the Windows SDK declarations, as shipped by mingw-w64.

The headers are read at test time from the Debian package mingw-w64-common;
they are not copied into this repository.  Every prototype they declare must
appear in our cdef with the same return and parameter types (after mapping
Windows typedef names to what they mean), and the struct layouts must match
the layout Windows x64 (LLP64) gives them.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from aiohcs._ffi import cdef, ffi

INCLUDE = pathlib.Path("/usr/share/mingw-w64/include")
HEADERS = ("computecore.h", "computestorage.h")

# Windows typedef name -> canonical C type text (what the SDK defines it as,
# with wchar_t written as the 16-bit char16_t).  Enum types are 32-bit in
# MSVC; their exact signedness is not part of the ABI for passing by value,
# so they normalise to "enum32".
WINDOWS_TYPES: dict[str, str] = {
    "HRESULT": "int32_t",
    "DWORD": "uint32_t",
    "UINT64": "uint64_t",
    "WCHAR": "char16_t",
    "PCWSTR": "const char16_t *",
    "PWSTR": "char16_t *",
    "HANDLE": "void *",
    "HCS_SYSTEM": "void *",  # DECLARE_HANDLE: pointer to a dummy struct
    "HCS_PROCESS": "void *",
    "HCS_OPERATION": "void *",
    "HCS_CALLBACK": "void *",
    "HCS_OPERATION_TYPE": "enum32",
    "HCS_EVENT_TYPE": "enum32",
    "HCS_EVENT_OPTIONS": "enum32",
    "HCS_CREATE_OPTIONS": "enum32",
    "HCS_OPERATION_OPTIONS": "enum32",
    "HCS_RESOURCE_TYPE": "enum32",
    "HCS_OPERATION_COMPLETION": "fnptr(void; void *, void *)",
    "HCS_EVENT_CALLBACK": "fnptr(void; HCS_EVENT *, void *)",
    "SECURITY_DESCRIPTOR": "SECURITY_DESCRIPTOR",
    "HCS_PROCESS_INFORMATION": "HCS_PROCESS_INFORMATION",
    "HCS_EVENT": "HCS_EVENT",
}

# (size, alignment) on Windows x64 of the canonical types above.
LLP64 = {
    "int32_t": (4, 4),
    "uint32_t": (4, 4),
    "uint64_t": (8, 8),
    "enum32": (4, 4),
    "pointer": (8, 8),
}

PROTO = re.compile(r"([A-Za-z_][\w\s\*]*?)\s*\bWINAPI\s+(\w+)\s*\(([^)]*)\)\s*;", re.S)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    # Preprocessor lines (#endif, #include, ...) are not declarations.
    return re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)


def normalise(type_text: str) -> str:
    """``const HCS_CREATE_OPTIONS *`` -> ``const enum32 *``, etc."""
    tokens = re.findall(r"\w+|\*", type_text)
    out: list[str] = []
    for tok in tokens:
        out.append(WINDOWS_TYPES.get(tok, tok))
    text = " ".join(out)
    text = re.sub(r"\s+\*", " *", text)
    return re.sub(r"\s+", " ", text).strip()


def split_param(param: str) -> tuple[str, str]:
    """``const void *context`` -> (``const void *``, ``context``)."""
    param = param.strip()
    m = re.match(r"(.*?)(\w+)\s*$", param, re.S)
    assert m, param
    type_part, name = m.group(1), m.group(2)
    if not type_part.strip():  # an unnamed parameter, e.g. "HANDLE"
        return normalise(param), ""
    return normalise(type_part), name


def prototypes(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (normalised return type, [normalised parameter types])."""
    found: dict[str, tuple[str, list[str]]] = {}
    for ret, name, params in PROTO.findall(_strip_comments(text)):
        ret = re.sub(r"^\s*(HCSAPI|extern)\s+", "", ret)
        plist = [p for p in params.split(",") if p.strip() and p.strip() != "void"]
        found[name] = (normalise(ret), [split_param(p)[0] for p in plist])
    return found


def _header(name: str) -> str:
    path = INCLUDE / name
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian package mingw-w64-common)")
    return path.read_text()


@pytest.fixture(scope="module")
def windows_prototypes() -> dict[str, tuple[str, list[str]]]:
    protos: dict[str, tuple[str, list[str]]] = {}
    for header in HEADERS:
        protos.update(prototypes(_header(header)))
    return protos


@pytest.fixture(scope="module")
def our_prototypes() -> dict[str, tuple[str, list[str]]]:
    return prototypes(cdef.CDEF_CORE_FUNCTIONS + cdef.CDEF_STORAGE_FUNCTIONS)


def test_header_parsed(windows_prototypes: dict[str, tuple[str, list[str]]]) -> None:
    # 57 in mingw's computecore.h + 13 in computestorage.h at the time of writing;
    # a parser that silently found nothing must not pass.
    assert len(windows_prototypes) >= 60
    assert "HcsCreateComputeSystem" in windows_prototypes


def test_every_windows_prototype_matches(
    windows_prototypes: dict[str, tuple[str, list[str]]],
    our_prototypes: dict[str, tuple[str, list[str]]],
) -> None:
    problems = []
    for name, (ret, params) in sorted(windows_prototypes.items()):
        if name not in our_prototypes:
            problems.append(f"{name}: missing from our cdef")
            continue
        our_ret, our_params = our_prototypes[name]
        if our_ret != ret:
            problems.append(f"{name}: returns {our_ret!r}, Windows {ret!r}")
        if our_params != params:
            problems.append(f"{name}: parameters {our_params}, Windows {params}")
    assert not problems, "\n".join(problems)


def test_typedef_table_agrees_with_cdef() -> None:
    """What our cdef calls PCWSTR, DWORD, ... has the Windows meaning."""
    for name, canonical in WINDOWS_TYPES.items():
        if canonical == "enum32":
            assert ffi.sizeof(name) == 4, name
        elif canonical.endswith("*"):
            assert ffi.typeof(name).kind == "pointer", name
            if "char16_t" in canonical:
                assert ffi.typeof(name).item is ffi.typeof("char16_t"), name
        elif canonical in ("int32_t", "uint32_t", "uint64_t", "char16_t"):
            assert ffi.typeof(name) is ffi.typeof(canonical), name
    # const-ness is invisible to cffi's type objects: check the text instead.
    assert re.search(r"typedef\s+const\s+WCHAR\s*\*\s*PCWSTR;", cdef.CDEF_TYPES)
    assert re.search(r"typedef\s+WCHAR\s*\*\s*PWSTR;", cdef.CDEF_TYPES)


def test_callback_typedefs_match() -> None:
    text = _strip_comments(_header("computedefs.h"))
    for name in ("HCS_OPERATION_COMPLETION", "HCS_EVENT_CALLBACK"):
        m = re.search(rf"typedef\s+void\s*\(\s*CALLBACK\s*\*\s*{name}\s*\)\s*\(([^)]*)\)", text)
        assert m, name
        win = [split_param(p)[0] for p in m.group(1).split(",")]
        ours = ffi.typeof(name)
        assert ours.kind == "function" or ours.kind == "pointer"
        fn = ours.item if ours.kind == "pointer" else ours
        assert fn.result is ffi.typeof("void")
        assert len(fn.args) == len(win)
        for arg, w in zip(fn.args, win, strict=True):
            assert arg.kind == "pointer", (name, w)


def _struct_fields(text: str, name: str) -> list[tuple[str, str]]:
    """Fields of ``typedef struct [tag] {...} name;`` as (type, field) pairs."""
    m = re.search(r"typedef\s+struct\s*\w*\s*\{([^}]*)\}\s*" + name + r"\s*;", text)
    assert m, name
    fields = []
    for decl in m.group(1).split(";"):
        decl = decl.strip()
        if decl:
            fields.append(split_param(decl))
    return fields


def _llp64(canonical: str) -> tuple[int, int]:
    if canonical.endswith("*") or canonical.startswith("fnptr"):
        return LLP64["pointer"]
    return LLP64[canonical]


@pytest.mark.parametrize("struct", ["HCS_EVENT", "HCS_PROCESS_INFORMATION", "HCS_CREATE_OPTIONS_1"])
def test_struct_layout_matches_windows_x64(struct: str) -> None:
    if ffi.sizeof("void *") != 8:
        pytest.skip("compares against the x64 layout")
    fields = _struct_fields(_strip_comments(_header("computedefs.h")), struct)
    offset = 0
    max_align = 1
    ours = ffi.typeof(struct)
    our_fields = [name for name, _ in ours.fields]
    assert our_fields == [name for _, name in fields]
    for canonical, name in fields:
        size, align = _llp64(canonical)
        offset = (offset + align - 1) // align * align
        assert ffi.offsetof(struct, name) == offset, (struct, name)
        assert ffi.sizeof(ours.fields[our_fields.index(name)][1].type) == size, (struct, name)
        offset += size
        max_align = max(max_align, align)
    total = (offset + max_align - 1) // max_align * max_align
    assert ffi.sizeof(struct) == total


def test_our_c_header_matches_the_cdef(
    our_prototypes: dict[str, tuple[str, list[str]]],
) -> None:
    """aiohcs/_native/computecore.h and the cdef are two spellings of one ABI:
    every function must be in both, with the same types, so they cannot drift."""
    header = pathlib.Path(__file__).resolve().parents[1] / "aiohcs/_native/computecore.h"
    ours_c = prototypes(header.read_text())
    assert len(ours_c) == len(our_prototypes) == 74, (len(ours_c), len(our_prototypes))
    problems = [
        f"{name}: header {ours_c.get(name)} vs cdef {our_prototypes.get(name)}"
        for name in sorted(set(ours_c) | set(our_prototypes))
        if ours_c.get(name) != our_prototypes.get(name)
    ]
    assert not problems, "\n".join(problems)
