"""Classify an image file: ``python scripts/predict.py ckpt_path=<run>/checkpoints/best.ckpt image=shoe.jpg``.

Options: ``topk=5``; ``chart=scores.png`` (a bar chart of the top classes); ``invert=auto``
(MNIST-like datasets: a light background is inverted; ``true`` / ``false`` to force);
``show=seen.png`` (the prepared input, what the net saw). A photo or drawing is prepared the
way the checkpoint's dataset was made: any size and colour mode; for MNIST and
Fashion-MNIST also inverted, cropped to the object and centred.
"""

from cnnlab.cli import parse_key_values, script
from cnnlab.predict import predict
from cnnlab.viz.figures import bar_figure, save
from cnnlab.viz.grids import image_grid, save_png


def main(argv: list[str]) -> int:
    args = parse_key_values(
        argv,
        required=("ckpt_path", "image"),
        optional={"topk": "5", "chart": "", "invert": "auto", "show": ""},
        positive_ints=("topk",),
    )
    prediction = predict(args["ckpt_path"], args["image"], invert=args["invert"])
    print("Prepared: " + "; ".join(prediction.prepared.steps))
    top = prediction.top(int(args["topk"]))
    width = max(len(name) for name, _ in top)
    for name, p in top:
        print(f"{name:<{width}}  {p:7.2%}  {'#' * round(40 * p)}")
    if args["show"]:
        seen = save_png(image_grid(prediction.prepared.image, nrow=1, upscale=8), args["show"])
        print(f"Input as the net saw it: {seen}")
    if args["chart"]:
        names, probs = zip(*top, strict=True)
        chart = save(
            bar_figure(list(names), list(probs), f"Top {len(top)}: {args['image']}"), args["chart"]
        )
        print(f"Chart: {chart}")
    return 0


if __name__ == "__main__":
    script(main)
