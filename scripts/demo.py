"""A demo page in the browser: ``python scripts/demo.py ckpt_path=<run>/checkpoints/best.ckpt``.

Draw a digit or a garment, or drop a photo, and see the image as the net sees it (inverted,
cropped and centred like the dataset), the top-5 probabilities, the Grad-CAM of any class
and the feature maps of any conv layer. Options: ``port=7860``; ``host=127.0.0.1`` (only
this machine; ``host=0.0.0.0`` serves every network the machine is on). Needs Gradio:
``pip install "cnnlab[demo]"``.
"""

from cnnlab.cli import heavy_imports, parse_key_values, script
from cnnlab.errors import CnnlabError

with heavy_imports():
    from cnnlab.demo import serve


def main(argv: list[str]) -> int:
    args = parse_key_values(
        argv,
        required=("ckpt_path",),
        optional={"host": "127.0.0.1", "port": "7860"},
        positive_ints=("port",),
    )
    if int(args["port"]) > 65535:
        raise CnnlabError(f"port={args['port']} must be an integer in [1, 65535].")
    blocks = serve(args["ckpt_path"], args["host"], int(args["port"]))
    print(f"The demo page: {blocks.local_url} (Ctrl-C stops it)", flush=True)
    blocks.block_thread()
    return 0


if __name__ == "__main__":
    script(main)
