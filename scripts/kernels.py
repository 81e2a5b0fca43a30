"""The course's kernel and pooling demos: ``python scripts/kernels.py [image=PATH] [stride=1] [padding=0]``.

Applies the classic kernels (edges, Sobel, Laplacian, emboss, sharpen, blur) with a conv
layer, then ReLU and 2x2 max / average pooling, and compares max / average / min pooling.
Without image=, uses a Fashion-MNIST test image (or a synthetic one if none is installed).
Writes ``out_dir``/kernels.png and pooling.png (default: docs/).
"""

import sys
from pathlib import Path

import torch

from cnnlab.cli import EXIT_USER_ERROR, parse_key_values
from cnnlab.config import PROJECT_ROOT
from cnnlab.data.sources import ensure_dataset
from cnnlab.errors import CnnlabError
from cnnlab.viz.figures import save
from cnnlab.viz.kernels import kernel_figure, load_gray, pooling_figure, sample_image


def default_image() -> torch.Tensor:
    try:
        ensure_dataset("fashion_mnist", PROJECT_ROOT / "data", download=False)
        return sample_image(PROJECT_ROOT / "data", "fashion_mnist", index=0)
    except CnnlabError:  # no dataset: a bright square with a diagonal edge
        img = torch.zeros(28, 28)
        img[6:22, 6:22] = 200
        return torch.triu(img)


def main(argv: list[str]) -> int:
    try:
        args = parse_key_values(
            argv,
            optional={
                "image": "",
                "stride": "1",
                "padding": "0",
                "size": "64",
                "out_dir": str(PROJECT_ROOT / "docs"),
            },
            positive_ints=("stride", "size"),
            ints=("padding",),
        )
        image = load_gray(args["image"], int(args["size"])) if args["image"] else default_image()
    except CnnlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    out = Path(args["out_dir"])
    print(
        f"Saved {save(kernel_figure(image, stride=int(args['stride']), padding=int(args['padding'])), out / 'kernels.png')}"
    )
    # a small map, so the pooled values can be printed on the figure
    small = torch.nn.functional.adaptive_avg_pool2d(image[None, None], 8)[0, 0].round()
    print(f"Saved {save(pooling_figure(small), out / 'pooling.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
