"""The demo page (issue 36, part 1): what it shows for an image is what ``predict`` computes.

The logic (``cnnlab.demo.Demo``) is checked without a browser against ``cnnlab.predict``,
``cnnlab.photo`` and ``cnnlab.cam``; the served page through Gradio's own client; and, in
``make test-full``, the page in Debian's chromium driven by Playwright (``-m browser``).

The README's picture ``docs/demo.png`` is the browser test's screenshot, taken with a
LeNet-5 trained 2 epochs on Fashion-MNIST::

    python train.py experiment=lenet_fashion trainer.max_epochs=2 hydra.run.dir=/tmp/fashion
    CNNLAB_DEMO_CKPT=/tmp/fashion/checkpoints/best.ckpt CNNLAB_DEMO_SCREENSHOT=docs/demo.png \\
        python -m pytest tests/test_demo.py -m browser
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cam import explain
from cnnlab.checkpoint import load_classifier
from cnnlab.config import PROJECT_ROOT
from cnnlab.data.formats import read_idx
from cnnlab.data.specs import get_spec, normalize
from cnnlab.demo import INSTALL, SEEN_UPSCALE, TOP, Demo, drawing
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.photo import prepare
from cnnlab.predict import input_normalization, predict

from .conftest import one_line_error, subprocess_env, tiny_run

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A real 1-epoch LeNet-5 checkpoint on tiny MNIST-format data, and its test images."""
    tmp = tmp_path_factory.mktemp("demo")
    cfg, _ = tiny_run(tmp, "trainer.max_epochs=1", "logger=none")
    images = get_spec("mnist").target_dir(tmp / "data") / "t10k-images-idx3-ubyte"
    return Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt", images


@pytest.fixture(scope="module")
def demo(tiny) -> Demo:
    return Demo(tiny[0])


def on_paper(digit: np.ndarray, path: Path) -> Path:
    """A dataset image as a phone photo shows it: dark on light grey paper, off centre,
    larger than the dataset's images (so the page must invert, crop and centre it)."""
    sheet = np.full((120, 160), 225, np.uint8)
    sheet[20:76, 70:126] = 255 - np.asarray(Image.fromarray(digit).resize((56, 56)))
    Image.fromarray(sheet).save(path)
    return path


@pytest.fixture
def photo(tiny, tmp_path) -> Path:
    return on_paper(read_idx(tiny[1])[3], tmp_path / "photo.png")


def test_the_page_classifies_an_image_as_predict_does(demo, tiny, photo):
    look = demo.look(Image.open(photo))  # the picture, as the page receives a drawing
    from_file = predict(tiny[0], photo)  # the file, as predict.py reads it
    assert torch.equal(look.prediction.probs, from_file.probs)
    assert list(look.top().items()) == from_file.top(TOP)
    assert torch.equal(demo.look(photo).prediction.probs, from_file.probs)  # an upload: a path


def test_the_image_shown_is_photo_py_preparation(demo, photo):
    img = Image.open(photo)
    look = demo.look(img)
    expected = prepare(img, (1, 28, 28), get_spec("mnist").framing)
    assert torch.equal(look.prediction.prepared.image, expected.image)
    assert look.prediction.prepared.steps == expected.steps
    assert expected.steps[0].startswith("inverted")
    # the page's picture is that very input, each pixel an 8x8 square
    seen = look.seen()
    assert seen.shape == (28 * SEEN_UPSCALE, 28 * SEEN_UPSCALE, 3)
    pixels = seen[::SEEN_UPSCALE, ::SEEN_UPSCALE, 0]
    assert np.array_equal(pixels, expected.image[0, 0].numpy())
    # the page's invert choice is photo.py's
    kept = demo.look(img, invert="false").prediction.prepared
    not_inverted = prepare(img, (1, 28, 28), get_spec("mnist").framing, invert="false")
    assert torch.equal(kept.image, not_inverted.image) and kept.steps == not_inverted.steps
    assert not torch.equal(kept.image, expected.image)


def test_the_top_five_are_the_nets_most_likely_classes_in_order(demo, tiny, photo):
    look = demo.look(Image.open(photo))
    model, info = load_classifier(tiny[0])
    x = normalize(look.prediction.prepared.image, *input_normalization(info))
    with torch.no_grad():
        probs = model.net(x).softmax(dim=1)[0]
    p, i = probs.topk(TOP)
    top = look.top()
    assert list(top) == [info["classes"][j] for j in i]
    assert np.allclose(list(top.values()), p.numpy(), atol=1e-6)
    assert list(top.values()) == sorted(top.values(), reverse=True)
    assert sum(top.values()) <= 1 + 1e-6


def test_grad_cam_of_a_chosen_class_is_cam_py_map(demo, photo):
    look = demo.look(Image.open(photo))
    top_class = next(iter(look.top()))
    other = next(c for c in demo.classes if c != top_class)
    chosen = demo.look(Image.open(photo), cam_class=other).prediction
    ex = explain(demo.model.net, chosen.seen, demo.classes.index(other))
    assert chosen.explanation.layer == ex.layer == "C3"  # the last conv, as predict.py's
    assert int(chosen.explanation.targets[0]) == demo.classes.index(other)
    assert torch.allclose(chosen.explanation.maps, ex.maps, atol=1e-6)
    assert not torch.allclose(chosen.explanation.maps, look.prediction.explanation.maps)
    assert look.cam_picture().shape[2] == 3


def test_feature_maps_of_a_chosen_conv_layer(demo, photo):
    img = Image.open(photo)
    assert demo.layers == ["C1", "C3"]
    first = demo.look(img)
    assert first.layer == "C1" and first.maps.shape == (6, 28, 28)  # 5x5 convs, padding 2
    chosen = demo.look(img, layer="C3")
    # what the next layer sees: C3's output after its ReLU (conv -> activation), by hand
    kept = []
    conv = dict(demo.model.net.named_modules())["C3"]
    handle = conv.register_forward_hook(lambda m, a, out: kept.append(out.detach()))
    with torch.no_grad():
        demo.model.net(chosen.prediction.seen)
    handle.remove()
    assert chosen.layer == "C3" and chosen.maps.shape == (16, 10, 10)
    assert torch.allclose(chosen.maps, torch.relu(kept[0][0]), atol=1e-6)
    with pytest.raises(CnnlabError, match=r"layer='F5' is not a conv layer .*: C1, C3"):
        demo.look(img, layer="F5")
    with pytest.raises(CnnlabError, match=r"cam_class='cat' is not a class"):
        demo.look(img, cam_class="cat")


def test_an_mlp_gets_saliency_and_no_feature_maps(tmp_path, photo):
    cfg, _ = tiny_run(
        tmp_path, "model=mlp", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "logger=none",
    )  # fmt: skip
    mlp = Demo(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt")
    look = mlp.look(Image.open(photo))
    assert mlp.layers == [] and look.maps is None and look.maps_picture() is None
    assert look.prediction.explanation.method == "saliency"
    assert look.cam_picture().shape[2] == 3


def test_a_drawing_is_ink_on_white_paper(demo, tiny, tmp_path):
    # the sketchpad's strokes on its transparent canvas, as Gradio sends them
    strokes = np.zeros((280, 280, 4), np.uint8)
    strokes[60:220, 120:140] = (0, 0, 0, 255)  # a "1"
    value = {"background": None, "layers": [], "composite": Image.fromarray(strokes, "RGBA")}
    paper = drawing(value)
    arr = np.asarray(paper.convert("L"))
    assert arr[0, 0] == 255 and arr[100, 130] == 0
    paper.save(tmp_path / "one.png")
    look = demo.look(paper)
    assert torch.equal(look.prediction.probs, predict(tiny[0], tmp_path / "one.png").probs)
    # the centre of the transparent canvas read as grey would be black ink on black paper
    assert look.prediction.prepared.steps[0].startswith("inverted")
    assert drawing(None) is None
    assert drawing({"composite": Image.new("RGBA", (280, 280))}) is None  # nothing drawn yet


def _demo_script(*args: str, prelude: str = "pass") -> subprocess.CompletedProcess:
    code = (
        f"import runpy, sys; {prelude}; sys.argv = ['demo.py', *{list(args)!r}]; "
        f"runpy.run_path({str(PROJECT_ROOT / 'scripts' / 'demo.py')!r}, run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=300, env=subprocess_env(),
    )  # fmt: skip


def _main():
    """``cnnlab demo`` in this process: argv -> its run, errors raised as they are."""
    from cnnlab.commands import COMMANDS, compose_command

    demo = COMMANDS["demo"]
    return lambda argv: demo.run(compose_command(demo, argv))


def test_bad_values_are_refused_before_anything_is_served(tiny, tmp_path, monkeypatch):
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"notes.ckpt is not a readable PyTorch checkpoint"):
        _main()([f"ckpt_path={notes}"])
    with pytest.raises(CnnlabError, match=r"^port=70000 must be an integer in \[1, 65535\]"):
        _main()([f"ckpt_path={tiny[0]}", "port=70000"])
    with pytest.raises(CnnlabError, match=r"^port='http' must be an integer in \[1, 65535\]"):
        _main()([f"ckpt_path={tiny[0]}", "port=http"])
    # where Gradio is not installed, an import of it fails: the error says how to get it
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(CnnlabError, match=f"needs Gradio: {re.escape(INSTALL)}$"):
        _main()([f"ckpt_path={tiny[0]}"])


def test_a_taken_port_is_refused(tiny):
    pytest.importorskip("gradio", reason=f"the demo page needs Gradio: {INSTALL}")
    from cnnlab.demo import serve

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(CnnlabError, match=rf"127.0.0.1:{port} \(Address already in use\)"):
            serve(tiny[0], port=port)


@pytest.mark.slow
def test_the_script_refuses_bad_values_in_one_line(tiny, tmp_path):
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint\n")
    one_line_error(_demo_script(f"ckpt_path={notes}"), r"is not a readable PyTorch checkpoint")
    proc = _demo_script(f"ckpt_path={tiny[0]}", prelude="sys.modules['gradio'] = None")
    one_line_error(proc, re.escape(INSTALL))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tiny):
    """The page of the tiny checkpoint, served on a free localhost port (as the script does)."""
    pytest.importorskip("gradio", reason=f"the demo page needs Gradio: {INSTALL}")
    from cnnlab.demo import serve

    port = _free_port()
    blocks = serve(tiny[0], port=port)
    try:
        yield f"http://127.0.0.1:{port}/", port
    finally:
        blocks.close()


def test_the_served_page_answers_an_upload_as_predict_does(served, tiny, photo):
    import psutil
    from gradio_client import Client, handle_file

    url, port = served
    listening = [c.laddr for c in psutil.Process().net_connections("inet") if c.status == "LISTEN"]
    assert ("127.0.0.1", port) in [(a.ip, a.port) for a in listening]  # this machine only
    client = Client(url, verbose=False)
    seen, steps, top, cam, maps = client.predict(
        handle_file(str(photo)), "auto", "", "C3", api_name="/upload"
    )
    expected = predict(tiny[0], photo)
    assert top["label"] == expected.top(1)[0][0]
    got = [(c["label"], c["confidence"]) for c in top["confidences"]]
    assert [n for n, _ in got] == [n for n, _ in expected.top(TOP)]
    assert np.allclose([p for _, p in got], [p for _, p in expected.top(TOP)], atol=1e-6)
    assert steps == "**Prepared:** " + "; ".join(expected.prepared.steps)
    shown = np.asarray(Image.open(seen).convert("L"))  # a PNG: the input, not a lossy copy
    pixels = shown[::SEEN_UPSCALE, ::SEEN_UPSCALE]
    assert np.array_equal(pixels, expected.prepared.image[0, 0].numpy())
    assert Image.open(maps).size[0] > 200 and Image.open(cam).size[0] > 200


# ---- in a real browser: Debian's chromium, driven by Playwright (make browser installs both)


def _browser_missing() -> str | None:
    import importlib.util

    for module in ("gradio", "playwright"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: {INSTALL} (or make browser)"
    if not CHROMIUM.is_file():
        return "Debian's chromium is not installed: apt-get install chromium (or make browser)"
    return None


def _checkpoint_and_images(request, tiny) -> tuple[Path, np.ndarray]:
    """The checkpoint to show (``CNNLAB_DEMO_CKPT``, default: the tiny one) and test images
    of its dataset."""
    given = os.environ.get("CNNLAB_DEMO_CKPT")
    if not given:
        return tiny[0], read_idx(tiny[1])
    _, info = load_classifier(given)
    name = info["config"]["data"]["name"]
    if name != "fashion_mnist":
        pytest.fail(f"CNNLAB_DEMO_CKPT: a Fashion-MNIST checkpoint, not {name}")
    data_dir = request.getfixturevalue("fashion_dir")
    return Path(given), read_idx(get_spec(name).target_dir(data_dir) / "t10k-images-idx3-ubyte")


def _predict_py(ckpt: Path, image: Path) -> tuple[str, list[tuple[str, float]]]:
    """scripts/predict.py's "Prepared: ..." line and top 5 for ``image``, read off its output
    as a user reads it."""
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "predict.py"), f"ckpt_path={ckpt}",
         f"image={image}"],
        capture_output=True, text=True, timeout=300, env=subprocess_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(r"^(.+?)\s+(\d+\.\d\d)%", proc.stdout, re.M)
    return proc.stdout.splitlines()[0], [(name.strip(), float(p) / 100) for name, p in rows]


def _page_top(page) -> list[tuple[str, float]]:
    """The top-5 bars as the page shows them: (class, probability rounded to a percent)."""
    page.wait_for_selector("#top [data-testid=label-output-value]", timeout=60_000)
    lines = page.locator("#top").inner_text().splitlines()
    pairs = zip(lines, lines[1:], strict=False)
    return [(a.strip(), float(b[:-1]) / 100) for a, b in pairs if re.fullmatch(r"\d+%", b)]


@pytest.mark.slow
@pytest.mark.browser
def test_in_a_browser_a_photo_and_a_drawing(request, tiny, tmp_path):
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from cnnlab.demo import serve

    ckpt, images = _checkpoint_and_images(request, tiny)
    photo = on_paper(images[0], tmp_path / "photo.png")
    prepared, expected = _predict_py(ckpt, photo)
    port = _free_port()
    blocks = serve(ckpt, port=port)
    shot = Path(os.environ.get("CNNLAB_DEMO_SCREENSHOT") or tmp_path / "demo.png")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#sketchpad canvas")
            # the pad opens with the pen in hand: Gradio's "select the draw tool" prompt goes
            prompt = page.get_by_text("select the draw tool to start")
            prompt.wait_for(state="detached", timeout=30_000)

            # a stroke on the pad with the mouse: an L, about the pad's height
            box = page.locator("#sketchpad canvas").first.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            corners = [(cx - 60, cy - 90), (cx - 60, cy + 80), (cx + 60, cy + 80)]
            page.mouse.move(*corners[0])
            page.mouse.down()
            for (xa, ya), (xb, yb) in zip(corners, corners[1:], strict=False):
                for k in range(1, 16):
                    page.mouse.move(xa + (xb - xa) * k / 15, ya + (yb - ya) * k / 15)
            page.mouse.up()
            drawn = _page_top(page)
            assert page.locator("#steps").inner_text().startswith("Prepared: inverted")
            # the page's answer is the net's answer on the picture the page shows as its input
            src = page.locator("#seen img").get_attribute("src")
            seen = np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("L"))
            x = torch.from_numpy(seen[::SEEN_UPSCALE, ::SEEN_UPSCALE].copy()).view(1, 1, 28, 28)
            model, info = load_classifier(ckpt)
            with torch.no_grad():
                probs = model(normalize(x, *input_normalization(info))).softmax(1)[0]
            assert drawn[0][0] == info["classes"][int(probs.argmax())]
            assert abs(drawn[0][1] - float(probs.max())) <= 0.006  # shown to the percent

            # a photo dropped on the upload tab
            page.get_by_role("tab", name="Upload").click()
            page.locator("#upload input[type=file]").set_input_files(str(photo))
            # the page says how it prepared the photo in predict.py's words once it has answered
            page.wait_for_function(
                "s => document.querySelector('#steps').innerText.trim() === s",
                arg=prepared,
                timeout=60_000,
            )
            uploaded = _page_top(page)
            assert uploaded[0][0] == expected[0][0], (uploaded, expected)
            assert [n for n, _ in uploaded] == [n for n, _ in expected]
            assert all(
                abs(a - b) <= 0.006 for (_, a), (_, b) in zip(uploaded, expected, strict=True)
            )
            page.wait_for_timeout(500)  # the figures' images finish drawing
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    finally:
        blocks.close()
    assert Image.open(shot).size[0] >= 1280
