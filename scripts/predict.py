"""Classify an image file: ``python scripts/predict.py ckpt_path=<run>/checkpoints/best.ckpt image=shoe.jpg``.

Options: ``topk=5``, ``chart=scores.png`` (a bar chart of the top classes). Any size and
colour mode is converted the way the checkpoint's training data was prepared.
"""

import sys

from cnnlab.cli import EXIT_USER_ERROR, parse_key_values
from cnnlab.errors import CnnlabError
from cnnlab.predict import predict
from cnnlab.viz.figures import bar_figure, save


def main(argv: list[str]) -> int:
    try:
        args = parse_key_values(
            argv,
            required=("ckpt_path", "image"),
            optional={"topk": "5", "chart": ""},
            positive_ints=("topk",),
        )
        prediction = predict(args["ckpt_path"], args["image"])
    except CnnlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    top = prediction.top(int(args["topk"]))
    width = max(len(name) for name, _ in top)
    for name, p in top:
        print(f"{name:<{width}}  {p:7.2%}  {'#' * round(40 * p)}")
    if args["chart"]:
        names, probs = zip(*top, strict=True)
        chart = save(
            bar_figure(list(names), list(probs), f"Top {len(top)}: {args['image']}"), args["chart"]
        )
        print(f"Chart: {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
