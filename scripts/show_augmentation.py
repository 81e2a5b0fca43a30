"""Save a grid of augmented training images: ``python scripts/show_augmentation.py aug=light data=fashion_mnist``.

Takes train.py's overrides, plus ``out=PATH`` (default augmentation.png). First row: images
as stored; each further row: a new random draw of the augmentation.
"""

from cnnlab.cli import script, split_key_values
from cnnlab.config import compose_config
from cnnlab.run import build
from cnnlab.viz.grids import augmentation_preview, save_png


def main(argv: list[str]) -> int:
    own, overrides = split_key_values(argv, {"out": "augmentation.png"})
    datamodule, _ = build(compose_config("train", overrides, output_dir="."))
    datamodule.prepare_data()
    datamodule.setup("fit")
    print(f"Saved {save_png(augmentation_preview(datamodule, n=10, repeats=4), own['out'])}")
    return 0


if __name__ == "__main__":
    script(main)
