"""Behaviours that one-line slips broke without any test noticing (issue 15's list).

Each test compares against values computed here, independently of the code under test,
on data that is not learnt perfectly, so that a wrong comparison, a dropped weight or a
transposed matrix changes the outcome.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from cnnlab.build import build
from cnnlab.compare import Run, table
from cnnlab.config import compose_config
from cnnlab.errors import ConfigError
from cnnlab.metrics import per_class_accuracy
from cnnlab.neutral_keys import always_neutral
from cnnlab.record import fingerprint, read_metrics
from cnnlab.run import train

from .conftest import make_cfg


def _events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def test_per_class_accuracy_is_recall_not_precision():
    # rows: true class, columns: predicted; not symmetric, so recall != precision
    cm = torch.tensor([[8, 2, 0], [1, 3, 6], [0, 0, 5]])
    recall = [8 / 10, 3 / 10, 5 / 5]  # precision would be [8/9, 3/5, 5/11]
    torch.testing.assert_close(per_class_accuracy(cm), torch.tensor(recall))


def test_fashion_mnist_constants_are_the_training_splits_statistics(fashion_dir):
    from torchvision.datasets import FashionMNIST

    from cnnlab.data import ImageDataModule, get_spec

    pixels = FashionMNIST(str(fashion_dir), train=True).data.double() / 255  # torchvision's reader
    spec = get_spec("fashion_mnist")
    assert spec.mean[0] == pytest.approx(pixels.mean().item(), abs=5e-4)  # 0.2860
    assert spec.std[0] == pytest.approx(pixels.std().item(), abs=5e-4)  # 0.3530
    # and what training sees: the whole training split normalised has mean 0 and std 1
    dm = ImageDataModule("fashion_mnist", str(fashion_dir), val_size=5000, mirrors=[])
    dm.setup("fit")
    images = dm.train_set.images
    assert len(images) == 60000
    z = dm.normalize(images).double()
    assert abs(z.mean().item()) < 2e-3 and abs(z.std().item() - 1) < 2e-3


# Published training-split statistics, in [0, 1] units, per channel:
# MNIST: PyTorch's examples/mnist (0.1307, 0.3081), over the 60,000 training images.
# CIFAR-10: per-channel mean and std over all 50,000 training images' pixels; the often copied
#   std (0.2023, 0.1994, 0.2010) is the mean of per-image stds (kuangliu/pytorch-cifar#19).
# SVHN: over the 73,257 images of train_32x32.mat, as quoted in SVHN training code.
# Fashion-MNIST is computed from the data itself in the test above.
PUBLISHED = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_normalisation_constants_are_the_published_statistics(name):
    from cnnlab.data.specs import SPECS, normalize

    assert set(PUBLISHED) == set(SPECS)  # a new dataset brings its published statistics here
    spec = SPECS[name]
    mean, std = PUBLISHED[name]
    assert spec.mean == pytest.approx(mean, abs=1e-4) and spec.std == pytest.approx(std, abs=1e-4)
    # and normalize() applies them channel by channel: (x / 255 - mean) / std
    x = torch.randint(0, 256, (2, len(mean), 4, 4), dtype=torch.uint8)
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    torch.testing.assert_close(normalize(x, spec.mean, spec.std), (x / 255 - m) / s)


class BatchLabels(pl.Callback):
    """Records the labels of every training batch, per epoch (in ``SEEN``)."""

    def __init__(self):
        SEEN.clear()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        SEEN.setdefault(trainer.current_epoch, []).extend(batch[1].tolist())


SEEN: dict[int, list[int]] = {}


def test_a_training_run_sees_its_batches_shuffled_differently_each_epoch(tiny_mnist, tmp_path):
    from cnnlab.data.formats import read_idx

    cfg = make_cfg(
        tmp_path, tiny_mnist, "data.val_size=100", "data.batch_size=100", "trainer.max_epochs=3",
        "logger=none", "~callbacks.model_checkpoint",
        f"+callbacks.labels._target_={__name__}.BatchLabels",
    )  # fmt: skip
    datamodule, _ = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    labels = torch.from_numpy(read_idx(tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte"))
    in_order = labels[datamodule.train_set.indices].tolist()  # the training split, unshuffled
    train(cfg)
    assert sorted(SEEN) == [0, 1, 2]
    for epoch in SEEN.values():
        assert sorted(epoch) == sorted(in_order) and epoch != in_order  # shuffled at all
    assert SEEN[0] != SEEN[1] and SEEN[1] != SEEN[2]  # and anew each epoch


def test_training_batches_are_shuffled_and_differ_each_epoch(tiny_mnist, tmp_path):
    cfg = make_cfg(tmp_path, tiny_mnist, "data.val_size=100", "data.batch_size=500")
    datamodule, _ = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    orders = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        (batch,) = list(iter(loader.sampler))  # one batch of all 500 positions
        orders.append(batch.tolist())
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(500))  # a permutation
    assert orders[0] != list(range(500))  # shuffled at all
    assert orders[0] != orders[1]  # and differently each epoch
    val = list(iter(datamodule.val_dataloader().sampler))[0].tolist()
    assert val == sorted(val)  # validation is not shuffled


def test_the_lenet_classic_preset_uses_average_pooling_and_tanh(tmp_path):
    _, model = build(compose_config("train", ["model=lenet_classic"], output_dir=tmp_path))
    kinds = {type(m) for m in model.net.modules()}
    assert nn.AvgPool2d in kinds and nn.Tanh in kinds
    assert nn.MaxPool2d not in kinds and nn.ReLU not in kinds


@pytest.mark.parametrize("p", [0.3, 0.0])
def test_lenet_dropout_inserts_dropout_layers(p, tmp_path):
    _, model = build(
        compose_config("train", ["model=lenet", f"model.dropout={p}"], output_dir=tmp_path)
    )
    rates = [m.p for m in model.net.modules() if isinstance(m, nn.Dropout)]
    assert rates == ([p, p] if p else [])  # F5 and F6


RESULT_CHANGING = [
    "model.dropout=0.3",
    "model.batch_norm=true",
    "model.width=2.0",
    "model=mlp",
    "data=cifar10",
    "data.batch_size=64",
    "data.val_size=1000",
    "data.split_seed=1",
    "data.normalize=half",
    "model.head=gap",
    "optimizer.lr=0.01",
    "optimizer=sgd",
    "scheduler=cosine",
    "aug=light",
    "aug.hflip=0.5",
    "seed=7",
    "trainer.max_epochs=3",
    "trainer.precision=bf16-mixed",
]
NOT_RESULT_CHANGING = [
    "paths.data_dir=/elsewhere",
    "data.num_workers=2",
    "callbacks.progress_bar.refresh_rate=5",
    "logger=csv",
    "skip_completed=false",
]


# what a run's fingerprint leaves out at any value: the table of cnnlab.neutral_keys (where
# things are, how progress is shown and kept, loader and speed settings). Every other key of the
# config changes the result or may, so it must change the fingerprint.
NOT_HASHED = tuple(always_neutral())


def _leaves(node, prefix=""):
    """(dotted key, value) of every value of a config, interpolations (``${paths.data_dir}``)
    included: a value given in their place changes the key alone."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def _changed(value):
    if isinstance(value, str) and "${" in value:
        return "/elsewhere"
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if isinstance(value, int) else value + 0.125
    if isinstance(value, str):
        return value + "_other"
    if isinstance(value, list):
        return [*value, "other"]
    return 1  # None


@pytest.mark.parametrize("overrides", [[], ["scheduler=onecycle", "aug=strong", "model=vgg11"]])
def test_every_key_but_where_and_how_shown_changes_the_fingerprint(overrides, tmp_path):
    from omegaconf import OmegaConf

    cfg = compose_config("train", overrides, output_dir=tmp_path)
    base = fingerprint(cfg)
    leaves = list(_leaves(OmegaConf.to_container(cfg, resolve=False)))
    assert len(leaves) > 60 and any(k.startswith("model.") for k, _ in leaves)
    wrong = []
    for key, value in leaves:
        other = cfg.copy()
        OmegaConf.update(other, key, _changed(value), merge=False)
        # patience: null -> 1 turns early stopping on
        hashed = not key.startswith(NOT_HASHED) or key == "callbacks.early_stopping.patience"
        if (fingerprint(other) != base) != hashed:
            wrong.append(f"{key} ({'ignored' if hashed else 'hashed'})")
    assert wrong == []


def test_early_stopping_joins_the_fingerprint_once_it_is_on(tmp_path):
    def key(*overrides):
        return fingerprint(compose_config("train", list(overrides), output_dir=tmp_path))

    off = key()
    assert key("callbacks.early_stopping.min_delta=0.1") == off  # switched off: no effect
    on = key("callbacks.early_stopping.patience=3")
    assert on != off
    assert (
        key("callbacks.early_stopping.patience=3", "callbacks.early_stopping.min_delta=0.1") != on
    )
    assert key("callbacks.early_stopping.patience=4") != on


def test_switches_added_later_keep_old_fingerprints_while_off_and_change_them_when_on(tmp_path):
    from omegaconf import OmegaConf

    from cnnlab.neutral_keys import switches

    cfg = compose_config("train", [], output_dir=tmp_path)
    base = fingerprint(cfg)
    old = OmegaConf.to_container(cfg, resolve=True)  # a config from before these switches
    for path in switches():
        *parents, last = path.split(".")
        node = old
        for key in parents:
            node = node[key]
        del node[last]
    assert fingerprint(old) == base
    for override in ("ema.enabled=true", "test_tta=flip", "aug.mixup_alpha=0.2",
                     "aug.cutmix_alpha=1.0", "trainer.gradient_clip_val=1.0"):  # fmt: skip
        assert fingerprint(compose_config("train", [override], output_dir=tmp_path)) != base


@pytest.mark.parametrize("override", RESULT_CHANGING)
def test_the_fingerprint_changes_with_every_result_changing_key(override, tmp_path):
    base = fingerprint(compose_config("train", [], output_dir=tmp_path))
    assert fingerprint(compose_config("train", [override], output_dir=tmp_path)) != base


@pytest.mark.parametrize("override", NOT_RESULT_CHANGING)
def test_the_fingerprint_ignores_where_and_how_things_are_shown(override, tmp_path):
    base = fingerprint(compose_config("train", [], output_dir=tmp_path))
    assert fingerprint(compose_config("train", [override], output_dir=tmp_path)) == base


@pytest.mark.parametrize("model", ["lenet", "alexnet", "vgg16", "resnet20", "simple_cnn"])
def test_model_head_left_as_it_was_keeps_the_fingerprint_of_runs_made_before_it(model, tmp_path):
    from omegaconf import open_dict

    cfg = compose_config("train", [f"model={model}"], output_dir=tmp_path)
    before = cfg.copy()
    with open_dict(before):
        before.model.pop("head")  # the config as recorded before these families had the key
    # simple_cnn had model.head from the start: its runs were recorded with it
    assert (fingerprint(before) == fingerprint(cfg)) is (model != "simple_cnn")
    other = "gmp" if model == "resnet20" else "gap"
    changed = compose_config(
        "train", [f"model={model}", f"model.head={other}"], output_dir=tmp_path
    )
    assert fingerprint(changed) != fingerprint(cfg)


@pytest.mark.parametrize("model", ["mlp", "lenet_classic"])
def test_families_without_a_head_switch_refuse_it(model, tmp_path):
    with pytest.raises(ConfigError, match=r"Could not override 'model.head'"):
        compose_config("train", [f"model={model}", "model.head=gap"], output_dir=tmp_path)


def test_comparison_table_sorts_best_first_and_runs_without_results_last():
    runs = [
        Run(Path(f"r{i}"), {"test/acc": acc, "overrides": [f"model.dropout={d}"]})
        for i, (acc, d) in enumerate([(0.8, 0.1), (None, 0.2), (0.9, 0.3), (0.85, 0.4)])
    ]
    _, rows = table(runs)
    assert [r[0] for r in rows] == ["0.3", "0.4", "0.1", "0.2"]
    _, rows = table(runs, descending=False)
    assert [r[0] for r in rows] == ["0.1", "0.4", "0.3", "0.2"]


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory, fashion_dir):
    """A few short epochs of real Fashion-MNIST: accuracy moves, nothing is learnt perfectly.

    The last training batch is smaller than the others (1,000 images, batch 300), so a mean
    of step losses without weights differs from the epoch loss.
    """
    tmp = tmp_path_factory.mktemp("noisy")
    cfg = make_cfg(
        tmp,
        fashion_dir,
        "data=fashion_mnist",
        "data.val_size=500",
        "data.batch_size=300",
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=4",  # 300 + 300 + 300 + 300 of a shuffled split
        "trainer.log_every_n_steps=1",
        "optimizer.lr=0.03",  # large enough that validation accuracy goes up and down
        "optimizer=sgd",
    )
    return cfg, train(cfg)


def test_best_validation_accuracy_and_its_epoch_are_the_maximum(noisy_run):
    cfg, metrics = noisy_run
    val = [e.value for e in _events(Path(cfg.paths.output_dir)).Scalars("val/acc")]
    assert len(val) == 4 and 0.2 < max(val) < 0.95 and len(set(val)) > 1
    assert metrics["val/acc_best"] == pytest.approx(max(val), abs=1e-6)
    assert metrics["best_epoch"] == int(np.argmax(val))
    assert read_metrics(cfg.paths.output_dir)["best_epoch"] == int(np.argmax(val))


def test_train_loss_epoch_is_the_sample_weighted_mean_of_step_losses(noisy_mnist, tmp_path):
    cfg = make_cfg(
        tmp_path,
        noisy_mnist,
        "data.val_size=300",  # 700 training images in batches of 300, 300 and 100
        "data.batch_size=300",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
    )
    train(cfg)
    events = _events(tmp_path / "run")
    steps = [e.value for e in events.Scalars("train/loss")]
    (epoch,) = [e.value for e in events.Scalars("train/loss_epoch")]
    sizes = [300, 300, 100]
    weighted = sum(s * n for s, n in zip(steps, sizes, strict=True)) / sum(sizes)
    assert abs(weighted - np.mean(steps)) > 1e-3  # the test can tell the two apart
    assert epoch == pytest.approx(weighted, rel=1e-5)


def test_skip_completed_false_really_runs_again(tiny_mnist, tmp_path):
    args = ("data.val_size=100", "data.batch_size=100", "trainer.max_epochs=1", "logger=none")
    first = train(make_cfg(tmp_path, tiny_mnist, *args))
    record = tmp_path / "run" / "metrics.json"
    stamp = record.stat().st_mtime_ns
    again = train(make_cfg(tmp_path, tiny_mnist, *args))
    assert again.get("skipped") and record.stat().st_mtime_ns == stamp
    rerun = train(make_cfg(tmp_path, tiny_mnist, *args, "skip_completed=false"))
    assert not rerun.get("skipped") and record.stat().st_mtime_ns != stamp
    assert rerun["steps"] == first["steps"] == 5


def test_data_dir_comes_before_the_os_mirrors(tmp_path):
    from tests.support.synthetic import write_mnist_like

    data_dir, mirror = tmp_path / "data", tmp_path / "mirror"
    write_mnist_like(data_dir, "mnist", n_train=300, n_test=50)  # the user's copy
    write_mnist_like(None, "mnist", n_train=400, n_test=60, folder=mirror / "mnist")
    cfg = make_cfg(tmp_path, data_dir, "data.val_size=100", f"paths.dataset_mirrors=[{mirror}]")
    datamodule, _ = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.train_set) + len(datamodule.val_set) == 300
    assert len(datamodule.test_set) == 50


def test_the_os_mirror_is_used_when_data_dir_is_empty(tmp_path):
    from tests.support.synthetic import write_mnist_like

    data_dir, mirror = tmp_path / "data", tmp_path / "mirror"
    data_dir.mkdir()
    write_mnist_like(None, "mnist", n_train=400, n_test=60, folder=mirror / "mnist")
    cfg = make_cfg(tmp_path, data_dir, "data.val_size=100", f"paths.dataset_mirrors=[{mirror}]")
    datamodule, _ = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.test_set) == 60


def test_an_os_mirror_comes_before_the_download(tmp_path, monkeypatch):
    from cnnlab.data.sources import ensure_dataset
    from cnnlab.data.specs import get_spec
    from tests.support.synthetic import write_mnist_like

    mirror = tmp_path / "mirror"
    write_mnist_like(None, "mnist", n_train=40, n_test=10, folder=mirror / "mnist")
    downloads = []
    monkeypatch.setattr(type(get_spec("mnist").format), "download", lambda *a: downloads.append(a))
    folder = ensure_dataset("mnist", tmp_path / "data", mirrors=[str(mirror)], download=True)
    assert downloads == [] and len(get_spec("mnist").read(tmp_path / "data", train=True)[1]) == 40
    assert folder == tmp_path / "data" / "MNIST" / "raw"


def test_sweep_plot_legend_hides_no_bar_label(tmp_path):
    import matplotlib.pyplot as plt

    from cnnlab import compare

    # the README's dropout x batch-norm sweep: in the old plot the legend covered a label
    results = [(0.8893, 0.0, True), (0.8855, 0.5, True), (0.8831, 0.25, True),
               (0.8740, 0.0, False), (0.8706, 0.25, False), (0.8526, 0.5, False)]  # fmt: skip
    runs = [
        Run(
            Path(f"r{i}"),
            {"test/acc": a, "overrides": [f"model.dropout={d}", f"model.batch_norm={bn}"]},
        )
        for i, (a, d, bn) in enumerate(results)
    ]
    captured = {}
    real_savefig = plt.Figure.savefig

    def keep(fig, *args, **kwargs):
        captured["fig"] = fig
        return real_savefig(fig, *args, **kwargs)

    plt.Figure.savefig = keep
    try:
        compare.plot(runs, tmp_path / "p.png")
    finally:
        plt.Figure.savefig = real_savefig
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = captured["fig"]
    canvas = FigureCanvasAgg(fig)  # the figure was closed after saving: draw it again
    canvas.draw()
    renderer = canvas.get_renderer()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_text()]
    assert sorted(t.get_text() for t in labels) == sorted(f"{a:.3f}" for a, _, _ in results)
    assert not any(t.get_window_extent(renderer).overlaps(legend) for t in labels)
    # and nothing is cut off: every text, the legend and the rotated tick labels included,
    # lies inside the figure
    page = fig.bbox
    for box in [legend, *(t.get_window_extent(renderer) for t in [*labels, *ax.get_xticklabels()])]:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1


def test_a_killed_run_shows_as_stale_and_a_live_one_as_running():
    import os
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # a finished process: its PID is free now
    host = socket.gethostname()
    runs = [
        Run(Path("killed"), {"status": "running", "pid": gone.pid, "host": host}),
        Run(Path("live"), {"status": "running", "pid": os.getpid(), "host": host}),
        Run(Path("elsewhere"), {"status": "running", "pid": gone.pid, "host": host + "-other"}),
    ]
    assert runs[0].status == f"stale: process {gone.pid} ended without a word (killed?)"
    assert runs[1].status == "running" and runs[2].status == "running"


def test_a_run_records_who_writes_it(tiny_mnist, tmp_path):
    import os
    import socket

    args = ("data.val_size=100", "data.batch_size=100", "trainer.max_epochs=1", "logger=none")
    metrics = train(make_cfg(tmp_path, tiny_mnist, *args))
    assert metrics["pid"] == os.getpid() and metrics["host"] == socket.gethostname()
