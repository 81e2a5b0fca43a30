"""Print a model's layer table without training: ``python scripts/summary.py model=vgg11 data=cifar10``.

Takes the same overrides as train.py; no data is read (shapes come from the dataset's spec).
"""

from cnnlab.build import build
from cnnlab.cli import script
from cnnlab.config import compose_config
from cnnlab.models import layer_table, model_title


def main(argv: list[str]) -> int:
    datamodule, model = build(compose_config("train", argv, output_dir="."))
    title = f"{model_title(model.net)} on {datamodule.spec.title}"
    print(layer_table(model.net, datamodule.input_shape, title))
    return 0


if __name__ == "__main__":
    script(main)
