"""Train a classifier: ``python train.py model=lenet data=mnist`` (options: conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from cnnlab.cli import run_app
from cnnlab.config import PROJECT_ROOT  # noqa: F401  (anchors outputs/ and data/ at the project)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    # imported here, not above: the launcher process of a parallel sweep never loads torch
    from cnnlab.run import train

    run_app(train, cfg)


if __name__ == "__main__":
    main()
