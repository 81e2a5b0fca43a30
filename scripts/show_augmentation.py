"""Save a grid of augmented training images: ``python scripts/show_augmentation.py aug=light data=fashion_mnist``.

Takes train.py's overrides, plus ``out=PATH`` (default augmentation.png). First row
(labelled ``original``): images as stored; each further row (``draw 1``, ``draw 2``...): a new
random draw of the augmentation.
"""

from hydra.core.hydra_config import HydraConfig

from cnnlab.build import build
from cnnlab.cli import script, split_key_values
from cnnlab.config import compose_config
from cnnlab.viz.figures import augmentation_figure, save
from cnnlab.viz.grids import augmentation_rows


def main(argv: list[str]) -> int:
    own, overrides = split_key_values(argv, {"out": "augmentation.png"})
    cfg = compose_config("train", overrides, output_dir=".")
    datamodule, _ = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    rows = augmentation_rows(datamodule, n=10, repeats=4)
    title = f"aug={HydraConfig.get().runtime.choices.get('aug')} on {datamodule.spec.title}"
    print(f"Saved {save(augmentation_figure(rows, title), own['out'])}")
    return 0


if __name__ == "__main__":
    script(main)
