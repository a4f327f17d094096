"""The tree stays ruff- and mypy --strict-clean: CI enforces what the style guide asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["aiohcs", "tests", "benchmarks", "examples"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.timeout(300)
def test_ruff_check() -> None:
    r = run("ruff", "check", *TARGETS)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.timeout(300)
def test_ruff_format() -> None:
    r = run("ruff", "format", "--check", *TARGETS)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.timeout(300)
def test_mypy_strict() -> None:
    r = run("mypy", *TARGETS)
    assert r.returncode == 0, r.stdout + r.stderr
