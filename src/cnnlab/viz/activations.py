"""The activation functions of deck 002 and their derivatives, computed by autograd."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.viz.figures import subplots
from cnnlab.viz.labels import label, term


class Step(nn.Module):
    """The perceptron's threshold: 1 if x > 0 else 0. Its derivative is 0 wherever it exists."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the x * 0 keeps the graph: autograd then reports the true derivative, 0
        return (x > 0).float() + x * 0


ACTIVATION_CURVES: dict[str, nn.Module] = {
    "step": Step(),
    "sigmoid": nn.Sigmoid(),
    "tanh": nn.Tanh(),
    "ReLU": nn.ReLU(),
    "leaky ReLU (0.1)": nn.LeakyReLU(0.1),
    "GELU": nn.GELU(),
}


def curves(x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For each activation: its values at ``x`` and its derivative there (autograd)."""
    out = {}
    for name, fn in ACTIVATION_CURVES.items():
        xs = x.detach().clone().requires_grad_(True)
        y = fn(xs)
        (grad,) = torch.autograd.grad(y.sum(), xs)
        out[name] = (y.detach(), grad)
    return out


def activations_figure(lo: float = -4.0, hi: float = 4.0, lang: str = "en") -> Figure:
    """Each activation (top row, y = f(x)) above its derivative (bottom row, y = f'(x))."""
    x = torch.linspace(lo, hi, 801)
    data = curves(x)
    fig, axes = subplots(2, len(data), figsize=(2.6 * len(data), 5.6), sharex=True)
    for c, (key, (y, dy)) in enumerate(data.items()):
        name = term(key, lang)
        for r, (values, title) in enumerate(
            ((y, name), (dy, label("derivative", lang, name=name)))
        ):
            ax = axes[r, c]
            ax.axhline(0, color="0.8", lw=0.8)
            ax.axvline(0, color="0.8", lw=0.8)
            ax.plot(x, values, color="C0" if r == 0 else "C3")
            ax.set_title(title, fontsize=9)
            ax.set_ylim(min(-1.3, float(values.min()) - 0.2), max(1.3, float(values.max()) + 0.2))
            ax.set_ylabel(label("f" if r == 0 else "df", lang), fontsize=8, labelpad=1)
            ax.tick_params(labelsize=7)
        axes[1, c].set_xlabel(label("x", lang), fontsize=8)
    axes[1, 0].text(
        0.5,
        0.55,
        label("no_gradient", lang),
        ha="center",
        fontsize=8,
        transform=axes[1, 0].transAxes,
        color="C3",
    )
    fig.suptitle(
        label("activations_title", lang),
        fontsize=8,
        wrap=True,
    )
    fig.tight_layout()
    return fig
