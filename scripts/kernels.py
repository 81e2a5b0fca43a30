"""The course's convolution demos: ``python scripts/kernels.py [image=PATH] [kernels=course|classic] [rgb=true]``.

Applies 3x3 kernels (``kernels=course``: the decks' sign convention, vertical edge
[1, 0, -1]; ``kernels=classic``: the classic set, edges, Sobel, Laplacian, emboss, sharpen,
blur) with a conv layer, then ReLU and 2x2 max / average pooling, and compares max /
average / min pooling. ``rgb=true`` adds rgb.png: one filter on a colour image, one kernel
per channel, summed, plus bias. Without image=, uses a Fashion-MNIST test image (or a
synthetic one if none is installed). Options: stride=1, padding=0, size=64, out_dir
(default outputs/course), lang=en|es (the figures' words: English or the course's Spanish).
"""

from pathlib import Path

import torch

from cnnlab.cli import parse_key_values, script
from cnnlab.config import PROJECT_ROOT
from cnnlab.data.sources import ensure_dataset
from cnnlab.errors import CnnlabError
from cnnlab.predict import open_image
from cnnlab.viz.figures import save
from cnnlab.viz.kernels import (
    COURSE_KERNELS,
    KERNELS,
    kernel_figure,
    load_gray,
    pooling_figure,
    rgb_figure,
    sample_image,
)
from cnnlab.viz.labels import check_lang

SETS = {"course": COURSE_KERNELS, "classic": KERNELS}


def default_image() -> torch.Tensor:
    try:
        ensure_dataset("fashion_mnist", PROJECT_ROOT / "data", download=False)
        return sample_image(PROJECT_ROOT / "data", "fashion_mnist", index=0)
    except CnnlabError:  # no dataset: a bright square with a diagonal edge
        img = torch.zeros(28, 28)
        img[6:22, 6:22] = 200
        return torch.triu(img)


def rgb_image(path: str, size: int) -> torch.Tensor:
    """(3, H, W) floats in [0, 255]: the image given, else a small synthetic colour scene."""
    if path:
        img = open_image(path).convert("RGB")
        img.thumbnail((size, size))
        return torch.tensor(list(img.getdata()), dtype=torch.float32).T.reshape(
            3, img.height, img.width
        )
    x = torch.zeros(3, 8, 8)
    x[0, :, :4] = 10  # red on the left
    x[1, :4, :] = 5  # green on top
    x[2] = torch.arange(8.0)  # blue growing to the right
    return x


def main(argv: list[str]) -> int:
    args = parse_key_values(
        argv,
        optional={
            "image": "",
            "kernels": "course",
            "rgb": "false",
            "stride": "1",
            "padding": "0",
            "size": "64",
            "out_dir": str(PROJECT_ROOT / "outputs" / "course"),
            "lang": "en",
        },
        positive_ints=("stride", "size"),
        ints=("padding",),
    )
    if args["kernels"] not in SETS:
        raise CnnlabError(f"kernels={args['kernels']!r}: choose one of {', '.join(SETS)}.")
    if args["rgb"] not in ("true", "false"):
        raise CnnlabError(f"rgb={args['rgb']!r}: use rgb=true or rgb=false.")
    lang = check_lang(args["lang"])
    image = load_gray(args["image"], int(args["size"])) if args["image"] else default_image()
    if min(image.shape) < 3:
        h, w = image.shape
        raise CnnlabError(
            f"image={args['image']!r} is {w}x{h} pixels; the 3x3 kernels need 3x3 or more."
        )
    out = Path(args["out_dir"])
    figure = kernel_figure(
        image,
        SETS[args["kernels"]],
        stride=int(args["stride"]),
        padding=int(args["padding"]),
        lang=lang,
    )
    print(f"Saved {save(figure, out / 'kernels.png')}")
    # a small map, so the pooled values can be printed on the figure
    small = torch.nn.functional.adaptive_avg_pool2d(image[None, None], 8)[0, 0].round()
    print(f"Saved {save(pooling_figure(small, lang=lang), out / 'pooling.png')}")
    if args["rgb"] == "true":
        edges = [
            COURSE_KERNELS["vertical edge (course)"],
            COURSE_KERNELS["horizontal edge (course)"],
            [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
        ]
        rgb = rgb_image(args["image"], min(int(args["size"]), 16))
        print(f"Saved {save(rgb_figure(rgb, edges, bias=1.0), out / 'rgb.png')}")
    return 0


if __name__ == "__main__":
    script(main)
