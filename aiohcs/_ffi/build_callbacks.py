"""cffi build script for ``aiohcs._hcs_callbacks``: the two callback trampolines.

Why a compiled module at all: ``extern "Python"`` callbacks need an out-of-line
API-mode module, and unlike ``ffi.callback`` they need no writable+executable
memory (which SELinux ``deny_execmem``, hardened runtimes and systemd's
``MemoryDenyWriteExecute=`` forbid).  Everything else (the 74 HCS functions) is
loaded in ABI mode with ``ffi.dlopen`` so the same wheel runs against Windows'
computecore.dll and our Linux library without compiling against either.

The module declares nothing but ``HCS_EVENT`` and the two trampolines.  Their
addresses are handed to the ABI-mode functions through ``uintptr_t``.

This file is executed by cffi's setuptools hook (``cffi_modules`` in setup.py),
outside the package, so it must not import ``aiohcs``.
"""

from __future__ import annotations

from cffi import FFI

MODULE_NAME = "aiohcs._hcs_callbacks"

# Kept in step with aiohcs/_ffi/cdef.py (tests compare the two layouts).
CALLBACKS_CDEF = r"""
typedef struct HCS_EVENT {
    uint32_t        Type;
    const char16_t *EventData;
    void           *Operation;
} HCS_EVENT;

extern "Python" void WINAPI _aiohcs_on_operation_complete(void *operation, void *context);
extern "Python" void WINAPI _aiohcs_on_event(HCS_EVENT *event, void *context);
"""

CALLBACKS_SOURCE = r"""
#include <stdint.h>
#include <uchar.h>
#ifndef WINAPI
# ifdef _WIN32
#  define WINAPI __stdcall
# else
#  define WINAPI
# endif
#endif
typedef struct HCS_EVENT {
    uint32_t        Type;
    const char16_t *EventData;
    void           *Operation;
} HCS_EVENT;
"""

ffibuilder = FFI()
ffibuilder.cdef(CALLBACKS_CDEF)
ffibuilder.set_source(MODULE_NAME, CALLBACKS_SOURCE)

if __name__ == "__main__":
    # `python aiohcs/_ffi/build_callbacks.py` builds the module next to the package
    # (handy for a source checkout without `pip install -e .`).
    # Only the shared object is copied; the generated .c/.o stay in a temp dir.
    import pathlib
    import shutil
    import tempfile

    package = pathlib.Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        built = pathlib.Path(ffibuilder.compile(tmpdir=tmp, verbose=False))
        shutil.copy2(built, package / built.name)
