"""Classify an image file: ``python scripts/predict.py ckpt_path=<run>/checkpoints/best.ckpt image=shoe.jpg``.

Options: ``topk=5``; ``chart=scores.png`` (a bar chart of the top classes); ``invert=auto``
(MNIST-like datasets: a light background is inverted; ``true`` / ``false`` to force);
``show=seen.png`` (the prepared input, what the net saw); ``cam=true`` (a Grad-CAM overlay
of the top class, saliency for a net without convolutions, written to ``cam_out=``, default
``outputs/predict/<image>_cam.png``), ``cam_class=NAME`` (another class), ``cam_layer=NAME``
(another conv layer than the last; either implies ``cam=true``); ``lang=en|es``: the words
on the chart and the overlay (English or the course's Spanish). A photo or drawing is prepared the
way the checkpoint's dataset was made: any size and colour mode; for MNIST and
Fashion-MNIST also inverted, cropped to the object and centred.
"""

from pathlib import Path

from cnnlab.cli import heavy_imports, parse_key_values, script
from cnnlab.config import PROJECT_ROOT
from cnnlab.errors import CnnlabError

with heavy_imports():
    from cnnlab.predict import predict
    from cnnlab.viz.figures import bar_figure, input_and_cam_figure, save
    from cnnlab.viz.grids import image_grid, save_png
    from cnnlab.viz.labels import check_lang, label


def main(argv: list[str]) -> int:
    args = parse_key_values(
        argv,
        required=("ckpt_path", "image"),
        optional={"topk": "5", "chart": "", "invert": "auto", "show": "", "cam": "false",
                  "cam_class": "", "cam_layer": "", "cam_out": "", "lang": "en"},
        positive_ints=("topk",),
    )  # fmt: skip
    if args["cam"] not in ("true", "false"):
        raise CnnlabError(f"cam={args['cam']!r}: use cam=true or cam=false.")
    lang = check_lang(args["lang"])
    cam = args["cam"] == "true" or bool(args["cam_class"] or args["cam_layer"])
    prediction = predict(
        args["ckpt_path"], args["image"], args["invert"], cam, args["cam_class"], args["cam_layer"]
    )
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
        title = label("top_title", lang, k=len(top), image=args["image"])
        fig = bar_figure(
            list(names), list(probs), title, label("probability", lang), label("class", lang)
        )
        chart = save(fig, args["chart"])
        print(f"Chart: {chart}")
    if cam:
        ex = prediction.explanation
        name = prediction.classes[int(ex.targets[0])]
        p = float(prediction.probs[int(ex.targets[0])])
        where = f" at {ex.layer}" if ex.layer else ""
        out = (
            args["cam_out"]
            or PROJECT_ROOT / "outputs" / "predict" / f"{Path(args['image']).stem}_cam.png"
        )
        fig = input_and_cam_figure(
            prediction.seen[0], ex.maps[0], f"{name} {p:.0%}", f"{ex.method}{where}: {name}", lang
        )
        print(f"{ex.method}{where} of {name}: {save(fig, out)}")
    return 0


if __name__ == "__main__":
    script(main)
