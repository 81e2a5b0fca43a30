"""Test a checkpoint: ``python eval.py ckpt_path=outputs/.../checkpoints/best.ckpt`` (conf/eval.yaml)."""

import hydra
from omegaconf import DictConfig

from cnnlab.cli import run_app
from cnnlab.run import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_app(evaluate, cfg)


if __name__ == "__main__":
    main()
