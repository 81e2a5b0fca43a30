"""Print a model's layer table without training: ``python scripts/summary.py model=vgg11 data=cifar10``.

Takes the same overrides as train.py; no data is read (shapes come from the dataset's spec).
"""

import sys

from cnnlab.cli import EXIT_USER_ERROR
from cnnlab.config import compose_config
from cnnlab.errors import CnnlabError
from cnnlab.models import layer_table, model_title
from cnnlab.run import build


def main(argv: list[str]) -> int:
    try:
        datamodule, model = build(compose_config("train", argv, output_dir="."))
    except CnnlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(
        layer_table(
            model.net,
            datamodule.input_shape,
            f"{model_title(model.net)} on {datamodule.spec.title}",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
