"""Learning-rate schedules torch does not have as one class.

One class with plain arguments, so a checkpoint's stored scheduler config names it alone
(``cnnlab.allowlist`` refuses nested ``_target_``s, which SequentialLR of LinearLR and
CosineAnnealingLR would need).
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from cnnlab.config import check_warmup


class WarmupCosine(LRScheduler):
    """Linear warmup to the optimizer's learning rate, then cosine decay towards 0, per step.

    Step ``s`` of ``total_steps`` with ``w`` warmup steps (``warmup_epochs`` of ``epochs``,
    rounded) trains at ``lr * (s + 1) / w`` while ``s < w``, then at ``lr * (1 + cos(pi * (s -
    w) / (total_steps - w))) / 2``: the first step already learns, the last is close to 0.
    ``total_steps`` and ``epochs`` are filled in from the trainer (``conf/scheduler/
    warmup_cosine.yaml``).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        epochs: int,
        warmup_epochs: float = 1.0,
        last_epoch: int = -1,
    ):
        check_warmup(warmup_epochs, epochs)
        self.total_steps = int(total_steps)
        self.warmup_steps = round(warmup_epochs / epochs * total_steps)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The share of the base learning rate used at (0-based) optimizer step ``step``."""
        w = self.warmup_steps
        if step < w:
            return (step + 1) / w
        progress = min(1.0, (step - w) / max(1, self.total_steps - w))
        return 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
