"""Train a classifier: ``python train.py model=lenet data=mnist``, the same as ``cnnlab train``
(options: conf/train.yaml; ``--help`` lists them)."""

import sys

import hydra
from omegaconf import DictConfig

from cnnlab.cli import run_app
from cnnlab.commands import before_app
from cnnlab.config import PROJECT_ROOT, validate  # noqa: F401  (PROJECT_ROOT anchors outputs/, data/)
from cnnlab.startup import heavy_imports


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    # a bad plain value (optimizer.lr=-1, seed=-3) fails here, before torch is even imported
    run_app(validate, cfg)
    # imported here, not above: the launcher process of a parallel sweep never loads torch
    with heavy_imports():
        from cnnlab.run import train

    run_app(train, cfg)


if __name__ == "__main__":
    before_app("train", sys.argv[1:])  # --help, and a typo'd key named with its fix
    main()
