"""Test a checkpoint: ``python eval.py ckpt_path=outputs/.../checkpoints/best.ckpt`` (conf/eval.yaml)."""

import hydra
from omegaconf import DictConfig

from cnnlab.cli import heavy_imports, run_app


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with heavy_imports():
        from cnnlab.run import evaluate

    run_app(evaluate, cfg)


if __name__ == "__main__":
    main()
