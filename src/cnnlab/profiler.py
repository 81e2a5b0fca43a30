"""The Trainer's profiler: Lightning's on request, written into the run directory; else none.

Lightning wraps every hook it calls in ``trainer.profiler.profile(name)``, profiling or not:
about 60 times per training step, counting each callback's hooks. Its default
``PassThroughProfiler`` does nothing inside a generator-based context manager, which still
costs a generator and two resumptions each time; ``NoProfiler`` hands out one shared
``nullcontext`` instead (measured with a tiny MLP, where a step is nearly all framework:
~130 us less per step).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from pytorch_lightning.profilers import PassThroughProfiler, Profiler

from cnnlab.config import PROFILERS, check_profiler

_NOTHING = nullcontext()  # re-entrant and stateless: one instance serves every call


class NoProfiler(PassThroughProfiler):
    """Lightning's pass-through profiler without its per-call context-manager cost."""

    def profile(self, action_name: str) -> AbstractContextManager:
        return _NOTHING


def make_profiler(name: str | None, output_dir: Path) -> Profiler:
    """The profiler ``trainer.profiler`` names; its report lands in ``output_dir`` as
    ``fit-profile.txt`` (train.py) or ``test-profile.txt`` (eval.py)."""
    check_profiler(name)
    if name is None:
        return NoProfiler()
    # imported here: the pytorch profiler pulls in torch.profiler, which a plain run never needs
    from pytorch_lightning import profilers

    kind = getattr(profilers, PROFILERS[name])  # a checked name: one of the table's classes
    return kind(dirpath=output_dir, filename="profile")
