"""The Hydra apps of ``cnnlab train`` and ``cnnlab eval`` (``python train.py`` and ``python
eval.py`` in a checkout are other names for them): their configs are the package's conf/, so
an installed cnnlab runs them from any folder."""

from __future__ import annotations

import sys
from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from cnnlab.cli import run_app
from cnnlab.config import validate
from cnnlab.startup import heavy_imports


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def train(cfg: DictConfig) -> None:
    # a bad plain value (optimizer.lr=-1, seed=-3) fails here, before torch is even imported
    run_app(validate, cfg)
    # imported here, not above: the launcher process of a parallel sweep never loads torch
    with heavy_imports():
        from cnnlab.run import train as run_training

    run_app(run_training, cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def evaluate(cfg: DictConfig) -> None:
    with heavy_imports():
        from cnnlab.run import evaluate as run_evaluation

    run_app(run_evaluation, cfg)


APPS: dict[str, Callable[[], None]] = {"train": train, "eval": evaluate}


def start(name: str, argv: list[str]) -> None:
    """Run the app ``name`` on the command line ``argv``: ``--help`` and a typo'd key are
    answered first (``cnnlab.commands.before_app``), then Hydra reads ``sys.argv``."""
    from cnnlab.commands import before_app

    before_app(name, argv)
    sys.argv = [sys.argv[0], *argv]
    APPS[name]()
