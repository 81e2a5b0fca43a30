"""The demo page: draw a digit or a garment, or drop a photo, and see what the net makes of it.

``Demo`` is the logic, plain functions of a PIL image that tests call without a browser: the
image as the net sees it (``cnnlab.photo``'s inversion, cropping and centring, through
``cnnlab.predict.classify``), the top-5 probabilities, the Grad-CAM map of any class
(``cnnlab.cam``) and the feature maps of any conv layer (``cnnlab.viz.figures``). ``page``
lays them out with Gradio, the optional ``demo`` extra, imported only there.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.checkpoint import load_classifier
from cnnlab.data.specs import SPECS
from cnnlab.errors import CnnlabError
from cnnlab.models.summary import find_convs
from cnnlab.predict import Prediction, classify, open_image
from cnnlab.viz.figures import feature_map_figure, feature_maps, input_and_cam_figure, to_image
from cnnlab.viz.grids import image_grid

INSTALL = 'pip install "cnnlab[demo]"'
TOP = 5
SEEN_UPSCALE = 8  # a 28x28 input shown at 224x224, its pixels kept square
CANVAS = 280  # the sketchpad's side in pixels: ten canvas pixels per MNIST pixel
BRUSH = 18  # about a pen stroke of MNIST's, once the drawing is fitted into 20 of 28 pixels
# the pad opens with its pen in hand: a student draws at once, without first finding the
# brush among the tools (polled for: the pad's canvas is drawn after the page loads)
PEN_IN_HAND = """() => {
  const ready = () => document.querySelector("#sketchpad canvas");
  const pen = () => document.querySelector("#sketchpad button[aria-label=Brush]");
  const poll = setInterval(() => { if (ready() && pen()) { pen().click(); clearInterval(poll); } }, 100);
  setTimeout(() => clearInterval(poll), 30000);
}"""


@dataclass
class Look:
    """Everything the page shows for one image."""

    prediction: Prediction  # probabilities, the prepared input and its Grad-CAM
    layer: str | None  # the conv layer whose feature maps are shown (None: the net has none)
    maps: torch.Tensor | None  # (C, H, W) activations after that layer's block

    def top(self) -> dict[str, float]:
        """The ``TOP`` most likely classes and their probabilities, most likely first."""
        return dict(self.prediction.top(TOP))

    def seen(self) -> np.ndarray:
        """The prepared uint8 input, what the net saw, enlarged: (H, W, 3) uint8."""
        grid = image_grid(self.prediction.prepared.image, nrow=1, upscale=SEEN_UPSCALE)
        return grid.permute(1, 2, 0).numpy()

    def cam_picture(self) -> np.ndarray:
        """The input beside its Grad-CAM overlay (saliency for a net without convolutions)."""
        p, ex = self.prediction, self.prediction.explanation
        target = int(ex.targets[0])
        name, prob = p.classes[target], float(p.probs[target])
        where = f" at {ex.layer}" if ex.layer else ""
        fig = input_and_cam_figure(
            p.seen[0], ex.maps[0], f"{name} {prob:.0%}", f"{ex.method}{where}: {name}"
        )
        return to_image(fig)

    def maps_picture(self) -> np.ndarray | None:
        if self.maps is None:
            return None
        return to_image(feature_map_figure(self.maps, f"after {self.layer}"))


class Demo:
    """A checkpoint loaded once, looking at every image the page sends."""

    def __init__(self, ckpt_path: str | Path):
        self.model, self.info = load_classifier(ckpt_path)
        self.classes = list(self.info["classes"])
        self.layers = [name for name, _ in find_convs(self.model.net)]
        # the page serves each event in a thread; Grad-CAM and the feature maps put hooks on
        # the one shared net, so one look at a time
        self._lock = threading.Lock()

    @property
    def title(self) -> str:
        model = str(self.info["config"]["model"].get("_target_", "a model")).rsplit(".", 1)[-1]
        data = str(self.info["config"]["data"].get("name", "its dataset"))
        return f"{model} trained on {SPECS[data].title if data in SPECS else data}"

    def look(
        self,
        image: str | Path | Image.Image,
        invert: str = "auto",
        cam_class: str | None = None,
        layer: str | None = None,
    ) -> Look:
        """``image`` (a file or a picture) prepared and classified as ``cnnlab.predict`` does,
        with the Grad-CAM of ``cam_class`` (default: the top class) and the feature maps
        after ``layer`` (default: the first conv layer)."""
        img = image if isinstance(image, Image.Image) else open_image(image)
        if layer and layer not in self.layers:
            raise CnnlabError(
                f"layer={layer!r} is not a conv layer of this net; its conv layers: "
                f"{', '.join(self.layers) or 'none'}."
            )
        with self._lock:
            prediction = classify(self.model, self.info, img, invert, True, cam_class)
            if not self.layers:  # an MLP: no feature maps to show
                return Look(prediction, None, None)
            layer = layer or self.layers[0]
            maps = feature_maps(self.model.net, prediction.seen, max_layers=len(self.layers))
        return Look(prediction, layer, maps.get(layer))


def drawing(value: dict[str, Any] | None) -> Image.Image | None:
    """The sketchpad's picture on white paper, or None while nothing is drawn.

    Gradio's sketchpad sends its strokes on a transparent canvas; as a plain grey image the
    transparent paper would read as black, the same colour as the ink.
    """
    strokes = value and value.get("composite")
    if strokes is None:
        return None
    strokes = strokes.convert("RGBA")
    if strokes.getchannel("A").getextrema()[1] == 0:  # nothing drawn yet (or all erased)
        return None
    paper = Image.new("RGBA", strokes.size, "white")
    return Image.alpha_composite(paper, strokes).convert("RGB")


def page(demo: Demo):
    """The Gradio page (``gradio.Blocks``) for ``demo``; ``serve`` starts it."""
    import gradio as gr

    def show(image, invert, cam_class, layer):
        if image is None:
            return None, "", None, None, None
        try:
            look = demo.look(image, invert, cam_class or None, layer or None)
        except CnnlabError as e:  # shown on the page, as the command line prints it
            raise gr.Error(str(e)) from None
        steps = "**Prepared:** " + "; ".join(look.prediction.prepared.steps)
        return look.seen(), steps, look.top(), look.cam_picture(), look.maps_picture()

    shown = {"interactive": False, "format": "png"}  # lossless: the input exactly as the net saw it
    with gr.Blocks(title=f"cnnlab demo: {demo.title}", analytics_enabled=False) as blocks:
        gr.Markdown(f"## cnnlab demo: {demo.title}\nDraw on the pad, or drop a photo.")
        current = gr.State(None)  # the last image drawn or dropped
        with gr.Row():
            with gr.Column():
                with gr.Tab("Draw"):
                    pad = gr.Sketchpad(
                        type="pil",
                        canvas_size=(CANVAS, CANVAS),
                        fixed_canvas=True,
                        brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=BRUSH),
                        layers=False,
                        label="Draw",
                        elem_id="sketchpad",
                    )
                with gr.Tab("Upload"):
                    # the file's path, opened as predict.py opens an image file
                    upload = gr.Image(
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "clipboard"],
                        label="Photo",
                        elem_id="upload",
                    )
                invert = gr.Radio(["auto", "true", "false"], value="auto", label="invert")
            with gr.Column():
                seen = gr.Image(label="As the net sees it", elem_id="seen", **shown)
                steps = gr.Markdown(elem_id="steps")
                top = gr.Label(num_top_classes=TOP, label=f"Top {TOP}", elem_id="top")
        with gr.Row():
            with gr.Column():
                cam_class = gr.Dropdown(
                    [("the top class", ""), *((c, c) for c in demo.classes)],
                    value="",
                    label="Grad-CAM of class",
                    elem_id="cam-class",
                )
                cam = gr.Image(label="Grad-CAM", elem_id="cam", **shown)
            with gr.Column():
                layer = gr.Dropdown(
                    demo.layers,
                    value=demo.layers[0] if demo.layers else None,
                    label="Feature maps after conv layer",
                    visible=bool(demo.layers),
                    elem_id="layer",
                )
                maps = gr.Image(
                    label="Feature maps", visible=bool(demo.layers), elem_id="maps", **shown
                )
        outputs = [seen, steps, top, cam, maps]
        choices = [invert, cam_class, layer]

        def from_pad(value, *args):
            image = drawing(value)
            return image, *show(image, *args)

        def from_upload(path, *args):
            return path, *show(path, *args)

        pad.change(from_pad, [pad, *choices], [current, *outputs], api_name="drawing")
        upload.change(from_upload, [upload, *choices], [current, *outputs], api_name="upload")
        for choice in choices:
            choice.change(show, [current, *choices], outputs, api_visibility="private")
        blocks.load(None, js=PEN_IN_HAND)
    return blocks


def serve(ckpt_path: str | Path, host: str = "127.0.0.1", port: int = 7860):
    """Load the checkpoint, then serve its page on ``host``:``port`` in the background; the
    running ``gradio.Blocks`` (``block_thread()`` waits, ``close()`` stops it)."""
    demo = Demo(ckpt_path)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CnnlabError(f"the demo page needs Gradio: {INSTALL}") from None
    _check_address(host, port)
    blocks = page(demo)
    blocks.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        ssr_mode=False,
        footer_links=[],
        quiet=True,  # Gradio's banner offers share=True, which is no option here
    )
    return blocks


def _check_address(host: str, port: int) -> None:
    """Refuse a port that is taken or a host that is no address of this machine in one line,
    before the web server tries (its own failure is a log line and a longer error)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        why = (e.strerror or str(e)).split(" (while attempting")[0]  # the address follows
        raise CnnlabError(
            f"cannot serve on {host}:{port} ({why}); choose another port= or host=."
        ) from None
