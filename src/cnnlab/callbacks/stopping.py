"""Early stopping, off until ``callbacks.early_stopping.patience`` is set."""

from __future__ import annotations

from pytorch_lightning import callbacks

from cnnlab.errors import ConfigError


def early_stopping(
    patience: int | None = None, monitor: str = "val/acc", mode: str = "max", min_delta: float = 0.0
) -> callbacks.EarlyStopping | None:
    """Lightning's EarlyStopping once ``patience`` is set (``callbacks.early_stopping.patience=5``);
    None, no callback, while it is null (the default), so one override turns it on."""
    if patience is None:
        return None
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ConfigError(
            f"callbacks.early_stopping.patience={patience!r} must be an integer >= 1: the "
            f"validations without improvement before training stops (e.g. 5; null never stops)."
        )
    return callbacks.EarlyStopping(
        monitor=monitor, mode=mode, patience=patience, min_delta=min_delta
    )
