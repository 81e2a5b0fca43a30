"""Look inside a trained net: ``python scripts/inspect_checkpoint.py ckpt_path=... image=PATH [out_dir=DIR]``.

Writes the learned filters of every conv layer and the feature maps of the image after each
conv block as PNGs (default out_dir: next to the checkpoint, in figures/). The image is
prepared as ``scripts/predict.py`` prepares it (``invert=auto|true|false``).
"""

from pathlib import Path

from cnnlab.checkpoint import load_classifier
from cnnlab.cli import parse_key_values, script
from cnnlab.data.specs import normalize
from cnnlab.predict import input_normalization, open_image, prepare_input
from cnnlab.viz.network import save_network_figures


def main(argv: list[str]) -> int:
    args = parse_key_values(
        argv, required=("ckpt_path", "image"), optional={"out_dir": "", "invert": "auto"}
    )
    model, info = load_classifier(args["ckpt_path"])
    prepared = prepare_input(open_image(args["image"]), info, args["invert"])
    print(f"Prepared: {'; '.join(prepared.steps)}")
    x = prepared.image
    out = Path(args["out_dir"] or Path(args["ckpt_path"]).parent.parent / "figures")
    x = normalize(x, *input_normalization(info))
    for path in save_network_figures(model.net, x, out):
        print(f"Saved {path}")
    return 0


if __name__ == "__main__":
    script(main)
