"""Only here for cffi: the metadata lives in pyproject.toml.

``cffi_modules`` compiles the small ``aiohcs._hcs_callbacks`` module (the two
``extern "Python"`` trampolines); the HCS functions themselves are loaded at run
time in ABI mode, so no HCS header or library is needed to build.
"""

from setuptools import setup

setup(cffi_modules=["aiohcs/_ffi/build_callbacks.py:ffibuilder"])
