"""Export a checkpoint for deployment: ``python scripts/export.py ckpt_path=<run>/checkpoints/best.ckpt format=onnx|torchscript``.

The model file takes uint8 images (N, C, H, W) at the checkpoint's input size and returns
class probabilities; normalisation and class names are inside it (see cnnlab.export).
Option ``out=PATH`` (default <run>/export/<checkpoint name>.onnx or .pt); an existing file is
kept unless ``overwrite=true``, and the checkpoint itself is never written over. ONNX needs the
``export`` extra: pip install -e ".[export]".
"""

from cnnlab.cli import parse_key_values, script
from cnnlab.errors import CnnlabError
from cnnlab.export import export


def main(argv: list[str]) -> int:
    args = parse_key_values(
        argv, required=("ckpt_path", "format"), optional={"out": "", "overwrite": "false"}
    )
    if args["overwrite"] not in ("true", "false"):
        raise CnnlabError(f"overwrite={args['overwrite']!r} must be true or false.")
    overwrite = args["overwrite"] == "true"
    path = export(args["ckpt_path"], args["format"], args["out"] or None, overwrite)
    print(f"Saved {path} ({args['format']}): uint8 images -> class probabilities")
    if args["format"] == "torchscript":
        print("Load: m = torch.jit.load(path); m(images) are probabilities, m.classes their names")
    else:
        print(
            "Load: s = onnxruntime.InferenceSession(path); class names: "
            "json.loads(s.get_modelmeta().custom_metadata_map['classes'])"
        )
    return 0


if __name__ == "__main__":
    script(main)
