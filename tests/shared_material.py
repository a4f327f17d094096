"""Where the shared HCS material (official samples, real documents) is.

It lives beside the checkout (``../shared/hcs``), as on developer machines and in
CI; ``AIOHCS_SHARED`` points elsewhere. Tests that need it skip when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]

SHARED = Path(os.environ.get("AIOHCS_SHARED") or _REPO.parent / "shared") / "hcs"
SAMPLES = SHARED / "samples"
REALDOCS = SHARED / "realdocs"
