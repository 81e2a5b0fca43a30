"""``scripts/lr_find.py``: Lightning's LR range test on the composed train config.

Run once through the real command line on tiny MNIST-format data whose labels are 30% wrong
(so no rate learns it perfectly and losses stay comparable); then the suggestion is checked
to train: a few steps at the suggested rate end at a lower loss than at either end of the range.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.build import build
from cnnlab.config import CONFIG_DIR, PROJECT_ROOT
from cnnlab.data.formats import read_idx
from cnnlab.data.specs import get_spec
from cnnlab.errors import ConfigError
from cnnlab.lr_find import check_range, smooth, steepest_fall
from tests.support.synthetic import write_idx, write_mnist_like

from .conftest import QUICK, make_cfg, one_line_error, subprocess_env

MIN_LR, MAX_LR, STEPS = 1e-5, 1.0, 60
OFFLINE = ["paths.dataset_mirrors=[]", "data.download=false", "trainer.accelerator=cpu"]
SCRIPT = str(PROJECT_ROOT / "scripts" / "lr_find.py")


def _conf_digests() -> dict[str, str]:
    return {
        str(p.relative_to(CONFIG_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(CONFIG_DIR.rglob("*"))
        if p.is_file()
    }


def _noisy_mnist(data_dir):
    """Tiny MNIST-format data with 30% of the training labels replaced by random ones."""
    folder = write_mnist_like(data_dir, "mnist", n_train=600, n_test=100)
    labels_file = folder / get_spec("mnist").files[1]
    assert "train-labels" in labels_file.name
    labels = read_idx(labels_file).copy()
    rng = np.random.default_rng(0)
    wrong = rng.random(len(labels)) < 0.3
    labels[wrong] = rng.integers(0, 10, size=int(wrong.sum()))
    write_idx(labels_file, labels)
    return data_dir


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lr_find")
    data_dir = _noisy_mnist(tmp / "data")
    before = _conf_digests()
    proc = subprocess.run(
        [sys.executable, SCRIPT, "data=mnist", f"paths.data_dir={data_dir}", *OFFLINE, *QUICK,
         f"min_lr={MIN_LR}", f"max_lr={MAX_LR}", f"steps={STEPS}", f"hydra.run.dir={tmp / 'out'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp, env=subprocess_env(),
    )  # fmt: skip
    return tmp, proc, before, _conf_digests()


def test_prints_a_suggestion_inside_the_range_and_the_override(lr_run):
    tmp, proc, _, _ = lr_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp / "out" / "lr_find.json").read_text())
    lr = record["suggestion"]
    assert math.isfinite(lr) and MIN_LR <= lr <= MAX_LR
    assert re.search(rf"^Override: optimizer\.lr={re.escape(f'{lr:.3g}')}$", proc.stdout, re.M)
    assert "cnnlab train data=mnist" in proc.stdout and "optimizer.lr=0.003 " not in proc.stdout
    # Lightning's note on saving the finder's state reads as if checkpoints loaded unsafely
    assert "weights_only" not in proc.stdout + proc.stderr
    # the rates grow geometrically from min_lr, one per step, and the suggestion is one of them
    lrs = record["lrs"]
    assert lrs[0] == pytest.approx(MIN_LR) and max(lrs) <= MAX_LR
    assert len(lrs) == len(record["losses"]) == len(record["smoothed"]) <= STEPS
    ratios = np.diff(np.log(lrs))
    assert (ratios > 0).all() and np.allclose(ratios[1:], ratios[1])
    assert lrs[record["best"]] == lr and 10 <= record["best"] < len(lrs) - 1
    assert record["smoothed"] == pytest.approx(smooth(record["losses"]), nan_ok=True)


def test_writes_a_valid_png_and_changes_no_config_file(lr_run):
    tmp, proc, before, after = lr_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    png = tmp / "out" / "lr_find.png"
    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 300 and img.height > 200
    assert after == before  # every file under conf/, byte for byte
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["lr_find.json", "lr_find.png"]


def _loss_after(cfg, lr: float, steps: int = 25) -> float:
    """Training loss over the whole training split after ``steps`` Adam steps at ``lr`` from
    the run's seeded initial weights (a plain loop, independent of Lightning)."""
    torch.manual_seed(cfg.seed)
    datamodule, model = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    ds = datamodule.train_set
    x, y = datamodule.normalize(ds.images[ds.indices]), ds.labels[ds.indices]
    net = model.net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(steps):
        batch = torch.arange(step * 50, step * 50 + 50) % len(x)
        loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(net.eval()(x), y).item()
    return final if math.isfinite(final) else math.inf


def test_the_suggested_rate_trains_better_than_the_ends_of_the_range(lr_run, tmp_path):
    tmp, proc, _, _ = lr_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    lr = json.loads((tmp / "out" / "lr_find.json").read_text())["suggestion"]
    cfg = make_cfg(tmp_path, tmp / "data", *QUICK)
    losses = {rate: _loss_after(cfg, rate) for rate in (MIN_LR, lr, MAX_LR)}
    assert losses[lr] < losses[MIN_LR] - 0.2 and losses[lr] < losses[MAX_LR] - 0.2, losses
    assert losses[lr] > 0.3, losses  # the noisy labels are not learnt perfectly


def test_smoothing_is_a_bias_corrected_moving_average():
    # a constant loss must read as that constant from the first step (Lightning's reads half)
    assert smooth([2.0] * 5) == pytest.approx([2.0] * 5)
    expected, avg = [], 0.0
    for i, v in enumerate([3.0, 1.0, 2.0]):
        avg = 0.9 * avg + 0.1 * v
        expected.append(avg / (1 - 0.9 ** (i + 1)))
    assert smooth([3.0, 1.0, 2.0, math.nan], beta=0.9)[:3] == pytest.approx(expected)
    assert math.isnan(smooth([3.0, math.nan])[1])


def test_the_suggestion_is_the_steepest_fall_per_decade_not_a_wobble_at_tiny_rates():
    lrs = np.logspace(-7, 0, 100).tolist()
    loss = np.full(100, 2.3)
    # noise of 1e-4 where the rates are tiny, and the steps between them tinier
    loss[10:30] += np.random.default_rng(0).normal(0, 1e-4, 20)
    loss[60:75] -= np.linspace(0, 0.6, 15)  # the real descent, 0.04 per step
    loss[75:] = 1.7
    assert 60 <= steepest_fall(lrs, loss.tolist()) < 75
    loss[90:] = np.nan  # diverged: ignored
    assert 60 <= steepest_fall(lrs, loss.tolist()) < 75
    assert steepest_fall(lrs[:12], loss[:12].tolist()) is None  # too few points


@pytest.mark.parametrize(
    "args,pattern",
    [
        ((1, 0.1, 100), r"min_lr=1 must be smaller than max_lr=0.1"),
        (["1e-7", "1", "5"], r"steps='5' must be an integer >= 20"),
        (["1e-7", "1", "1.5"], r"steps='1.5' must be an integer >= 20"),
        (["1e-7", "abc", "100"], r"max_lr='abc' must be a positive number"),
        (["0", "1", "100"], r"min_lr='0' must be a positive number"),
        (["1e-7", "inf", "100"], r"max_lr='inf' must be a positive number"),
    ],
)
def test_bad_range_settings_are_refused(args, pattern):
    with pytest.raises(ConfigError, match=pattern):
        check_range(*args)


def test_a_bad_setting_gets_one_line_from_the_script(tmp_path):
    proc = subprocess.run(
        [sys.executable, SCRIPT, "steps=5", f"hydra.run.dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=subprocess_env(),
    )  # fmt: skip
    one_line_error(proc, r"^Error: steps=5 must be an integer >= 20")
    assert not (tmp_path / "out").exists()
