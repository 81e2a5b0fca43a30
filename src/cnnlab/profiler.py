"""The Trainer's profiler: Lightning's on request, written into the run directory; else none."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.profilers import Profiler

from cnnlab.config import PROFILERS, check_profiler


def make_profiler(name: str | None, output_dir: Path) -> Profiler | None:
    """The profiler ``trainer.profiler`` names (None: Lightning's pass-through default); its
    report lands in ``output_dir`` as ``fit-profile.txt`` (train.py) or ``test-profile.txt``
    (eval.py)."""
    check_profiler(name)
    if name is None:
        return None
    # imported here: the pytorch profiler pulls in torch.profiler, which a plain run never needs
    from pytorch_lightning import profilers

    kind = getattr(profilers, PROFILERS[name])  # a checked name: one of the table's classes
    return kind(dirpath=output_dir, filename="profile")
