"""How a training split is divided: a seeded hold-out (the validation split, a folder's carved
test split) or K stratified folds (``data.folds=K data.fold=i``, cross-validation).

Index arithmetic only, shared by every DataModule. Every split is drawn from
``data.split_seed`` alone, never from the run's ``seed``: the runs of a seed sweep validate on
the same images, and fold i is the same images whatever else a sweep varies.
"""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.errors import ConfigError


def split_count(key: str, value: Any, n: int, what: str) -> int:
    """``data.val_size``-style values: a count in [1, n), or a fraction in (0, 1) of ``n``."""
    if isinstance(value, float) and 0 < value < 1:
        count = max(1, round(value * n))
    elif isinstance(value, int) and not isinstance(value, bool):
        count = value
    else:
        count = 0
    if not 1 <= count < n:
        raise ConfigError(
            f"{key}={value!r} must be a count in [1, {n}) or a fraction in (0, 1): "
            f"{what} has {n} images and at least one must remain for training."
        )
    return count


def holdout(n: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out) positions of ``range(n)``: ``count`` of them drawn at random by ``seed``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[count:], perm[:count]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_folds(folds: Any, fold: Any, n: int | None, what: str) -> None:
    """ConfigError, naming the value and the fix, unless ``data.folds``/``data.fold`` make sense
    (both null, or 2 <= folds <= n and 0 <= fold < folds); ``what`` holds the ``n`` images
    (None: not known yet, only the values are checked)."""
    if folds is None:
        if fold is not None:
            raise ConfigError(
                f"data.fold={fold!r} needs data.folds=K, the number of folds "
                f"(e.g. data.folds=5 data.fold={fold!r})."
            )
        return
    if not _is_int(folds) or folds < 2:
        raise ConfigError(
            f"data.folds={folds!r} must be an integer >= 2 (e.g. data.folds=5), or null for one "
            f"validation split of data.val_size images."
        )
    if not _is_int(fold) or not 0 <= fold < folds:
        raise ConfigError(
            f"data.fold={fold!r} must be an integer in [0, {folds}): the fold that validates "
            f"(e.g. data.fold=0; sweep=kfold runs every fold)."
        )
    if n is not None and folds > n:
        raise ConfigError(
            f"data.folds={folds} is more folds than {what} has images ({n}): every fold needs "
            f"at least one. Use data.folds={max(2, min(5, n))}."
        )


def stratified_fold(
    labels: torch.Tensor, folds: int, fold: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) positions of fold ``fold`` of ``folds`` stratified folds of ``labels``.

    The images are shuffled by ``seed``, grouped by class (the shuffle kept within each class),
    and dealt out to the folds like cards: image j of that sequence goes to fold j mod K. So
    each class is spread as evenly as it can be (its counts in any two folds differ by at most
    one), fold sizes differ by at most one, the folds are disjoint and together are every
    image. Both index tensors are sorted.
    """
    labels = labels.cpu()
    n = len(labels)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    order = order[torch.sort(labels[order], stable=True).indices]
    assigned = torch.empty(n, dtype=torch.long)
    assigned[order] = torch.arange(n) % folds
    in_fold = assigned == fold
    return (~in_fold).nonzero().flatten(), in_fold.nonzero().flatten()
