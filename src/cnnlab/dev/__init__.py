"""Development tools, not used by a run: the benchmark (``make bench``), the README's
generated tables (``scripts/update_readme.py``) and what the tests share with them."""

from __future__ import annotations

import os

from cnnlab.config import PROJECT_ROOT


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a script run in a subprocess: this checkout's src/ comes first."""
    src = str(PROJECT_ROOT / "src")
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else src, **extra}
