"""Learning-rate range test: ``python scripts/lr_find.py model=lenet data=fashion_mnist [train.py overrides]``.

Options: ``min_lr=1e-7``, ``max_lr=1``, ``steps=100`` (one batch per learning rate tried),
``out_dir=DIR`` (default outputs/lr_find/<time>/). Prints the suggested learning rate and the
override to paste (``optimizer.lr=...``); writes lr_find.png (loss against learning rate, log
axis, suggestion marked) and lr_find.json into out_dir. Never changes a config file.
"""

from datetime import datetime
from pathlib import Path

from omegaconf import open_dict

from cnnlab.cli import script, split_key_values
from cnnlab.config import compose_config
from cnnlab.lr_find import find_lr


def main(argv: list[str]) -> int:
    own, overrides = split_key_values(
        argv, {"min_lr": "1e-7", "max_lr": "1", "steps": "100", "out_dir": ""}
    )
    cfg = compose_config("train", overrides)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    out_dir = Path(own["out_dir"] or Path(cfg.paths.log_dir) / "lr_find" / stamp)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)  # what trainer.default_root_dir etc. refer to
    finding = find_lr(cfg, own["min_lr"], own["max_lr"], own["steps"])
    print(
        f"Suggested learning rate: {finding.suggestion:.3g} (steepest fall of the loss over "
        f"{len(finding.lrs)} steps from {finding.min_lr:g} to {finding.max_lr:g})"
    )
    print(f"Override: {finding.override}")
    kept = [o for o in overrides if not o.startswith("optimizer.lr=")]
    print("Train with it: " + " ".join(["python train.py", *kept, finding.override]))
    print(f"Plot: {out_dir / 'lr_find.png'}")
    return 0


if __name__ == "__main__":
    script(main)
