"""Paths of the shared HCS material used by the schema tests."""

from __future__ import annotations

from pathlib import Path

from shared_material import REALDOCS, SAMPLES, SHARED

__all__ = ["DATA", "REALDOCS", "SAMPLES", "SHARED"]
DATA = Path(__file__).resolve().parents[2] / "aiohcs" / "schema" / "data"

if not SAMPLES.is_dir():  # the shared HCS material lives next to the checkout
    import pytest

    pytest.skip(f"{SHARED} is not there", allow_module_level=True)
