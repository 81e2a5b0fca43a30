"""The learning-rate range test (Smith 2017, fast.ai's ``lr_find``), on a composed train config.

Lightning's ``Tuner.lr_find`` trains one batch per step while the learning rate grows
exponentially from ``min_lr`` to ``max_lr``; the suggestion is the rate where the smoothed
training loss falls fastest per decade of learning rate (``steepest_fall``: Lightning's rule,
with two of its slips corrected). It runs on exactly what ``train.py`` would build from the same
overrides (data, model, optimizer, batch size, trainer settings), from the same seeded initial
weights. It writes only into its output folder: the suggestion is printed as an override to
paste, never written into ``conf/``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.tuner import Tuner

from cnnlab.build import build
from cnnlab.config import create, validate
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.lit import ImageClassifier
from cnnlab.models import model_title
from cnnlab.process_settings import configure_torch

# the suggestion skips the first 10 and the last point and needs 2 more to compare
MIN_STEPS = 20


@dataclass
class LRFinding:
    suggestion: float
    override: str  # what to paste on the command line: optimizer.lr=...
    lrs: list[float]  # one learning rate per step
    losses: list[float]  # the training loss of that step's batch (nan: not finite)
    smoothed: list[float]  # their moving average, which the suggestion reads
    best: int  # index of the suggestion in lrs
    min_lr: float
    max_lr: float
    steps: int


class _RangeTest(ImageClassifier):
    """The classifier for a range test: it keeps each step's loss, and a non-finite loss ends
    the test instead of failing it (a rate too high to train is what the test looks for)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.step_losses: list[float] = []

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        loss, _, _ = self._shared_step(batch)
        finite = bool(torch.isfinite(loss))
        self.step_losses.append(loss.item() if finite else math.nan)
        if not finite:
            self.trainer.should_stop = True
            return None  # no step is taken
        return loss


def smooth(losses: list[float], beta: float = 0.98) -> list[float]:
    """Bias-corrected exponential moving average (Lightning's beta); nan stays nan.

    Lightning's own curve divides by 1 - beta**(step + 1) after its step counter has already
    moved on, so its first points read about half the loss and rise for no reason; this one
    reads the loss itself from the first step.
    """
    avg, seen, out = 0.0, 0, []
    for value in losses:
        if not math.isfinite(value):
            out.append(math.nan)
            continue
        avg, seen = beta * avg + (1 - beta) * value, seen + 1
        out.append(avg / (1 - beta**seen))
    return out


def steepest_fall(
    lrs: list[float], smoothed: list[float], skip_begin: int = 10, skip_end: int = 1
) -> int | None:
    """Index of the steepest fall of the smoothed loss per decade of learning rate.

    Lightning's rule (the most negative gradient, the first 10 and the last point skipped,
    non-finite points ignored), but differentiated against log10(lr): the rates are spaced
    evenly on a log scale, and Lightning's gradient against the rate itself (its issue 21141)
    lets a wobble between two tiny rates outweigh the real descent (on a correctly smoothed
    curve of LeNet-5 on Fashion-MNIST it picked 1.8e-6). None when fewer than two points remain.
    """
    index = [i for i in range(skip_begin, len(lrs) - skip_end) if math.isfinite(smoothed[i])]
    if len(index) < 2:
        return None
    loss = torch.tensor([smoothed[i] for i in index], dtype=torch.float64)
    log_lr = torch.tensor([lrs[i] for i in index], dtype=torch.float64).log10()
    return index[int(torch.gradient(loss, spacing=[log_lr])[0].argmin())]


def _positive(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0 < number < math.inf:
        raise ConfigError(f"{key}={value!r} must be a positive number (e.g. {key}=1e-7).")
    return number


def lr_find_figure(finding: LRFinding, title: str):
    """Loss per batch and its moving average against the learning rate (log axis), the
    suggestion marked."""
    from matplotlib.figure import Figure  # no pyplot: nothing global to leak or close

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    lrs, best = finding.lrs, finding.best
    ax.plot(lrs, finding.losses, color="C0", alpha=0.3, linewidth=1, label="loss per batch")
    ax.plot(lrs, finding.smoothed, color="C0", label="moving average")
    ax.set_xscale("log")
    ax.axvline(lrs[best], color="C3", linestyle="--", linewidth=1)
    ax.plot(
        [lrs[best]],
        [finding.smoothed[best]],
        "o",
        color="C3",
        label=f"suggested: {finding.override}",
    )
    finite = [v for v in finding.smoothed if math.isfinite(v)]
    if finite:  # the diverging tail must not squash the part worth reading
        low, high = min(finite), min(max(finite), 1.5 * finite[0])
        ax.set_ylim(max(0.0, low - 0.1 * (high - low)), high + 0.1 * (high - low) + 1e-9)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def check_range(min_lr: Any, max_lr: Any, steps: Any) -> tuple[float, float, int]:
    """The range test's settings as numbers; ConfigError naming a bad one and the fix."""
    low, high = _positive("min_lr", min_lr), _positive("max_lr", max_lr)
    if low >= high:
        raise ConfigError(
            f"min_lr={min_lr} must be smaller than max_lr={max_lr} (e.g. min_lr=1e-7 max_lr=1)."
        )
    count = int(steps) if str(steps).isdigit() else 0
    if count < MIN_STEPS:
        raise ConfigError(
            f"steps={steps!r} must be an integer >= {MIN_STEPS}: the suggestion compares the "
            f"losses after the first 10 steps (e.g. steps=100)."
        )
    return low, high, count


def find_lr(cfg: DictConfig, min_lr: Any = 1e-7, max_lr: Any = 1.0, steps: Any = 100) -> LRFinding:
    """Run the range test on ``cfg``; write ``lr_find.png`` and ``lr_find.json`` into
    ``cfg.paths.output_dir`` and return the finding."""
    from cnnlab.viz.figures import save  # matplotlib only when it runs

    low, high, count = check_range(min_lr, max_lr, steps)
    validate(cfg)
    configure_torch()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg)
    model = _RangeTest(model.net, **model.hparams)
    datamodule.prepare_data()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer: pl.Trainer = create(
        cfg.trainer,
        default_root_dir=str(output_dir),  # Lightning's temporary checkpoint goes here
        callbacks=[],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,  # the range test draws its own
        num_sanity_val_steps=0,
        max_epochs=-1,  # the test ends after `steps` batches, however short an epoch is
    )
    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=low,
        max_lr=high,
        num_training=count,
        update_attr=False,  # nothing to update: the suggestion is printed, not applied
    )
    lrs = [float(v) for v in finder.results["lr"]] if finder is not None else []
    smoothed = smooth(model.step_losses)
    best = steepest_fall(lrs, smoothed) if len(smoothed) == len(lrs) else None
    if best is None:
        done = len(lrs)
        raise CnnlabError(
            f"The learning-rate range test ran {done} of {count} steps, too few to suggest a "
            f"rate (the loss diverged at once, or trainer.fast_dev_run is set). Try a lower "
            f"max_lr= or min_lr=."
        )
    finding = LRFinding(
        suggestion=lrs[best],
        override=f"optimizer.lr={lrs[best]:.3g}",
        lrs=lrs,
        losses=model.step_losses,
        smoothed=smoothed,
        best=best,
        min_lr=low,
        max_lr=high,
        steps=count,
    )
    optimizer = str(cfg.optimizer.get("_target_", "")).rsplit(".", 1)[-1]
    title = (
        f"LR range test: {model_title(model.net)} on {datamodule.spec.title}, "
        f"batch {datamodule.batch_size}, {optimizer}"
    )
    save(lr_find_figure(finding, title), output_dir / "lr_find.png")
    (output_dir / "lr_find.json").write_text(json.dumps(asdict(finding), indent=2) + "\n")
    return finding
