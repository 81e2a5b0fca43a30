"""A real TensorBoard server on a real run folder serves what the README's "See inside" table
lists (issue 14, section 5): the server is started as `make tensorboard` starts it (``cnnlab
tensorboard``, on localhost) and asked through its HTTP API, as the browser asks it."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from .conftest import subprocess_env, tiny_run

# the tags the README's "See inside" table promises for every run
SCALARS = {
    "train/loss", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/acc_best",
    "test/loss", "test/acc", "lr-Adam", "hp/val_acc_best", "hp/test_acc", "hp/test_loss",
}  # fmt: skip
IMAGES = {
    "samples/train", "val/confusion_matrix", "test/confusion_matrix", "test/misclassified",
    "test/accuracy_per_class", "test/gradcam", "filters/C1", "feature_maps/input",
    "feature_maps/C1", "feature_maps/C3",
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _get(base: str, path: str, **query: str) -> bytes:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def _poll(base: str, path: str, ready, timeout: float = 40.0):
    """The JSON at ``path`` once ``ready(json)`` holds (the server loads event files lazily)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = json.loads(_get(base, path))
            if ready(last):
                return last
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            pass  # not listening yet
        time.sleep(0.5)
    raise AssertionError(f"{path} not ready after {timeout} s; last answer: {last}")


def test_a_tensorboard_server_serves_the_readme_tags_and_images(tmp_path):
    # two steps: a net that still makes mistakes (test/misclassified shows only mistakes);
    # train/loss is written every log_every_n_steps
    cfg, metrics = tiny_run(
        tmp_path, "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.log_every_n_steps=1",
    )  # fmt: skip
    assert metrics["test/acc"] < 1
    assert metrics["status"] == "completed"
    logdir = Path(cfg.paths.output_dir)
    assert logdir.is_dir()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "tensorboard", f"logdir={logdir}", "host=localhost",
         f"port={port}", "reload_interval=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )  # fmt: skip
    base = f"http://localhost:{port}"
    try:
        scalars = _poll(base, "/data/plugin/scalars/tags", lambda j: any(j.values()))
        ((run, scalar_tags),) = [(r, set(t)) for r, t in scalars.items() if t]
        assert scalar_tags >= SCALARS, SCALARS - scalar_tags
        images = _poll(base, "/data/plugin/images/tags", lambda j: any(j.values()))
        image_tags = set(images[run])
        assert image_tags >= IMAGES, IMAGES - image_tags
        # one image as the browser fetches it: the list of its steps, then the blob
        (entry, *_) = json.loads(
            _get(base, "/data/plugin/images/images", run=run, tag="test/confusion_matrix")
        )
        blob = _get(base, "/data/plugin/images/individualImage?" + entry["query"])
        with Image.open(io.BytesIO(blob)) as picture:
            picture.load()
            assert picture.format == "PNG" and min(picture.size) > 100
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if server.returncode not in (0, -15):  # anything but our SIGTERM: show why
        pytest.fail(f"tensorboard exited with {server.returncode}: {server.stderr.read()[-2000:]}")
