"""What the tests share with the development tools (tools/): writers of tiny datasets in the
real on-disk formats, the bad-input cases, and the environment for a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a script run in a subprocess: this checkout's src/ comes first (its
    cnnlab, not an installed one), then the checkout itself (tests.support and tools)."""
    ours = os.pathsep.join([str(CHECKOUT / "src"), str(CHECKOUT)])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ours}{os.pathsep}{path}" if path else ours, **extra}
