"""Numbers derived from a confusion matrix (rows: true class, columns: predicted)."""

from __future__ import annotations

import torch


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Recall of each class: correct / all images of that class (0 for an absent class)."""
    return cm.diag().float() / cm.sum(dim=1).clamp_min(1)
