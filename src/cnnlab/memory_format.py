"""Which memory layout a run's net computes in: ``channels_last=true|false|auto``."""

from __future__ import annotations

from typing import Any

import torch


def channels_last(value: Any, net: torch.nn.Module, accelerator: str) -> bool:
    """``channels_last``: true, false, or auto = on for a CPU run of a net with convolutions,
    unless it has a batch norm over image maps of a width that is slow in that layout.

    Measured on a 2-core CPU (README "Performance"): channels-last makes convolution backward
    and pooling about twice as fast (a LeNet-5 epoch 3.53 -> 2.71 s; a VGG-11-BN epoch about
    1.3x faster); PyTorch's CPU batch norm vectorises over the channels in that layout and is
    several times slower on narrow layers (LeNet-5's C1 has 6); a net without convolutions
    gains nothing. GPUs were not measured here, so auto leaves them as they were.
    """
    if value != "auto":
        return bool(value)
    on_cpu = accelerator == "cpu" or (
        accelerator == "auto"
        and not torch.cuda.is_available()
        and not torch.backends.mps.is_available()
    )
    layers = list(net.modules())
    return (
        on_cpu
        and any(isinstance(m, torch.nn.Conv2d) for m in layers)
        and not any(_slow_in_channels_last(m) for m in layers)
    )


def _slow_in_channels_last(layer: torch.nn.Module) -> bool:
    """A batch norm over image maps whose width PyTorch's CPU kernel handles slowly in
    channels-last. Measured (forward + backward, batches of 256): 6 channels 20 ms against
    2.5 ms in the standard layout, 12: 16 vs 7, 20: 4.2 vs 2.0; 16, 24, 32, 40, 64, 96: as fast
    or up to 2.7x faster."""
    if not isinstance(layer, torch.nn.BatchNorm2d):
        return False
    return layer.num_features < 16 or layer.num_features % 8 != 0
