"""Fine-tuning as a switch: ``finetune.freeze_epochs``, ``finetune.backbone_lr``, ``finetune.unfreeze``.

The head is the set of parameters whose shape depends on the class count
(``cnnlab.weights.head_keys``); everything else is the backbone. Every parameter is in the
optimizer from the first step, in two groups: the head at ``optimizer.lr``, the backbone at
``backbone_lr`` times that. A scheduler made at the start therefore scales both groups alike
(warmup included; OneCycleLR gets one peak per group), so the ratio holds at every step.
Freezing only switches gradients off (every optimizer skips a parameter without one, its
moments and weight decay included) and puts the frozen batch norms in eval mode, so which
layers train is a function of the epoch alone and a resumed run continues in its phase.

Lightning's ``BackboneFinetuning`` is not used: it adds the backbone's group to the optimizer
when it unfreezes, so a scheduler built at the start never sees that group and its rate
follows the callback's own rule, and a resumed run's optimizer state would have to match the
group count of that moment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cnnlab.errors import ConfigError

UNFREEZE = ("all", "last_k")
OFF = {"freeze_epochs": 0, "backbone_lr": 1.0, "unfreeze": "all", "k": 1}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def finetune_settings(node: Mapping[str, Any] | None, max_epochs: int) -> dict[str, Any] | None:
    """The checked ``finetune`` block, or None when it changes nothing (the default)."""
    ft = {**OFF, **(node or {})}
    n, lr, how, k = ft["freeze_epochs"], ft["backbone_lr"], ft["unfreeze"], ft["k"]
    if not _count(n) or n < 0:
        raise ConfigError(
            f"finetune.freeze_epochs={n!r} must be an integer >= 0 (epochs that train only the head)."
        )
    if n > max_epochs:
        raise ConfigError(
            f"finetune.freeze_epochs={n} is beyond trainer.max_epochs={max_epochs}: the backbone "
            f"would never unfreeze. Use at most {max_epochs} (= {max_epochs}: train the head only)."
        )
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
        raise ConfigError(
            f"finetune.backbone_lr={lr!r} must be a positive number: the backbone's learning "
            f"rate as a multiple of the head's (e.g. 0.1)."
        )
    if how not in UNFREEZE:
        raise ConfigError(
            f"finetune.unfreeze={how!r} must be all (every layer after freeze_epochs) or last_k "
            f"(only the last finetune.k layers with weights)."
        )
    if not _count(k) or k < 1:
        raise ConfigError(f"finetune.k={k!r} must be an integer >= 1 (layers to unfreeze).")
    ft["backbone_lr"] = float(lr)
    return None if ft == OFF else ft


def head_params(net: nn.Module, head: set[str]) -> list[str]:
    """The names of the net's head parameters; ConfigError when it has none to fine-tune."""
    names = [name for name, _ in net.named_parameters() if name in head]
    if not names:
        raise ConfigError(
            "finetune.* needs a head, the parameters whose shape depends on the class count, "
            "and this net has none; set finetune.freeze_epochs=0 and finetune.backbone_lr=1."
        )
    return names


def param_groups(net: nn.Module, head: Sequence[str], backbone_lr: float, lr: float) -> list:
    """The head's parameters at the optimizer's rate, the backbone's at ``backbone_lr`` x it."""
    named = dict(net.named_parameters())
    backbone = [p for name, p in named.items() if name not in set(head)]
    return [{"params": [named[n] for n in head]}, {"params": backbone, "lr": lr * backbone_lr}]


def scaled_scheduler(cfg: dict[str, Any], backbone_lr: float) -> dict[str, Any]:
    """A scheduler config that sets absolute rates (OneCycleLR's ``max_lr``) per group."""
    if isinstance(cfg.get("max_lr"), (int, float)):
        cfg["max_lr"] = [cfg["max_lr"], cfg["max_lr"] * backbone_lr]
    return cfg


def layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules holding weights or statistics of their own, in the order the net registers them."""
    return [
        (name, m)
        for name, m in net.named_modules()
        if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(False))
    ]


class Finetune(pl.Callback):
    """Freezes the backbone (no gradients, batch norms in eval mode) for ``freeze_epochs``,
    then unfreezes all of it or its last ``k`` layers. Which layers are frozen depends on the
    epoch alone, so a resumed run lands in its phase."""

    def __init__(self, head: Sequence[str], freeze_epochs: int, unfreeze: str, k: int):
        self.head, self.freeze_epochs, self.unfreeze, self.k = set(head), freeze_epochs, unfreeze, k
        self.frozen_norms: list[nn.Module] = []
        self.epoch: int | None = None  # the epoch whose phase is set

    def backbone(self, net: nn.Module) -> list[tuple[str, nn.Module]]:
        def in_head(name: str, m: nn.Module) -> bool:
            own = [f"{name}.{n}" if name else n for n, _ in m.named_parameters(recurse=False)]
            return bool(own) and all(n in self.head for n in own)

        return [(name, m) for name, m in layers(net) if not in_head(name, m)]

    def frozen(self, net: nn.Module, epoch: int) -> list[nn.Module]:
        """The backbone layers frozen during ``epoch``."""
        backbone = [m for _, m in self.backbone(net)]
        if epoch < self.freeze_epochs:
            return backbone
        return backbone[: -self.k] if self.unfreeze == "last_k" else []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # per batch, not per epoch: a run resumed mid-epoch gets no on_train_epoch_start, and
        # validation within an epoch ends with Lightning's model.train()
        if self.epoch != trainer.current_epoch:
            self.epoch = trainer.current_epoch
            self.set_phase(pl_module, self.frozen(pl_module.net, self.epoch))
        for m in self.frozen_norms:
            m.eval()

    def set_phase(self, pl_module: pl.LightningModule, frozen_layers: list[nn.Module]) -> None:
        frozen = {id(m) for m in frozen_layers}
        self.frozen_norms = []
        for _, m in self.backbone(pl_module.net):
            is_frozen = id(m) in frozen
            for p in m.parameters(recurse=False):
                p.requires_grad_(not is_frozen)
            if isinstance(m, _BatchNorm):
                m.train(pl_module.training and not is_frozen)
                if is_frozen:
                    self.frozen_norms.append(m)
