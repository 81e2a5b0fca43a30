"""Test a checkpoint: ``python eval.py ckpt_path=outputs/.../checkpoints/best.ckpt``, the same as
``cnnlab eval`` (options: conf/eval.yaml; ``--help`` lists them)."""

import sys

import hydra
from omegaconf import DictConfig

from cnnlab.cli import run_app
from cnnlab.commands import before_app
from cnnlab.startup import heavy_imports


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with heavy_imports():
        from cnnlab.run import evaluate

    run_app(evaluate, cfg)


if __name__ == "__main__":
    before_app("eval", sys.argv[1:])  # --help, and a typo'd key named with its fix
    main()
