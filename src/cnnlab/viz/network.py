"""Figures of a trained network: every conv layer's filters, feature maps of one image."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnlab.models.summary import find_convs
from cnnlab.viz.figures import (
    feature_map_figure,
    feature_maps,
    filters_figure,
    filters_title,
    save,
)


def save_network_figures(net: nn.Module, x: torch.Tensor, out_dir: str | Path) -> list[Path]:
    """filters_<layer>.png for every conv layer, features_<layer>.png for input ``x`` (1, C, H, W)."""
    out_dir = Path(out_dir)
    written = []
    for name, m in find_convs(net):
        written.append(
            save(filters_figure(m, filters_title(name, m)), out_dir / f"filters_{name}.png")
        )
    for name, fmap in feature_maps(net, x).items():
        written.append(
            save(feature_map_figure(fmap, f"after {name}"), out_dir / f"features_{name}.png")
        )
    return written
