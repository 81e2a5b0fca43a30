"""Train a classifier: ``python train.py model=lenet data=mnist`` (options: conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from cnnlab.cli import heavy_imports, run_app
from cnnlab.config import PROJECT_ROOT, validate  # noqa: F401  (PROJECT_ROOT anchors outputs/, data/)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    # a bad plain value (optimizer.lr=-1, seed=-3) fails here, before torch is even imported
    run_app(validate, cfg)
    # imported here, not above: the launcher process of a parallel sweep never loads torch
    with heavy_imports():
        from cnnlab.run import train

    run_app(train, cfg)


if __name__ == "__main__":
    main()
