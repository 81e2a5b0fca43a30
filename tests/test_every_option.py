"""Every documented option runs end to end: each option of each config group, each experiment
and each sweep preset's first job, trained for a couple of tiny batches and tested.

A documented option that crashes (``logger=csv`` once did, after training, replacing the
results with ``failed``) can never be broken silently again: adding a YAML to ``conf/`` adds
its case here by itself.

The fast suite checks every option without training (it composes, validates, builds its data,
net, callbacks, loggers and trainer, and a batch of its data goes through its net) and trains
``TRAINED_FAST``; ``make test-full`` trains them all.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image

from cnnlab.config import CONFIG_DIR, create, validate
from cnnlab.data.specs import SPECS, get_spec
from cnnlab.record import read_metrics
from cnnlab.run import build, train
from tests.support.formats import md5_overrides
from tests.support.synthetic import write_synthetic

from .conftest import make_cfg

GROUPS = ("model", "data", "aug", "optimizer", "scheduler", "logger", "callbacks", "debug",
          "trainer", "experiment", "regulariser")  # fmt: skip
# what cannot run on a CI machine; each is exercised elsewhere or on a device
NOT_HERE = {
    ("trainer", "gpu"): "needs a GPU",
    ("trainer", "ddp"): "needs several GPUs",
    ("trainer", "ddp_cpu"): "spawns processes: tests/test_reliability.py runs it end to end",
}
# trained in the fast suite too: csv's logger once failed after training (the reason for this
# file); the options whose training takes a path of its own are trained by fast tests elsewhere
# (debug=overfit: test_train.py::test_debug_overfit_drives_the_training_loss_down,
# callbacks=none: test_train.py::test_callbacks_none_writes_no_checkpoints, regulariser=tta:
# test_regularisers.py::test_flip_tta_tests_on_the_mean_of_both_passes, logger=mlflow:
# test_tracking.py, data=folder: test_folder.py)
TRAINED_FAST = {("logger", "csv")}
ALL_OPTIONS = [
    (group, p.stem)
    for group in GROUPS
    for p in sorted((CONFIG_DIR / group).glob("[!_]*.yaml"))
    if (group, p.stem) not in NOT_HERE
]
# built here without training: every option but the models, which tests/test_config.py builds
# on every dataset (test_every_data_model_pair_composes_and_builds)
BUILT = [
    pytest.param(group, option, id=f"{group}={option}")
    for group, option in ALL_OPTIONS
    if group != "model"
]
TRAINED = [
    pytest.param(
        group, option, id=f"{group}={option}",
        marks=() if (group, option) in TRAINED_FAST else pytest.mark.slow,
    )
    for group, option in ALL_OPTIONS
]  # fmt: skip
TINY = (
    "data.val_size=64",
    "data.batch_size=16",
    "data.eval_batch_size=64",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
)


@pytest.fixture(scope="module")
def every_dataset(tmp_path_factory):
    """Tiny copies of every built-in dataset in their real formats, and a folder of PNGs."""
    root = tmp_path_factory.mktemp("all-data")
    patch = pytest.MonkeyPatch()
    for name in SPECS:
        sums = write_synthetic(name, root / "data", n_train=300, n_test=100)
        for obj, attr, value in md5_overrides(get_spec(name).format, sums):
            patch.setattr(obj, attr, value)
    rng = np.random.default_rng(0)
    for k, cls in enumerate(("cat", "dog")):
        (root / "photos" / cls).mkdir(parents=True)
        for i in range(60):
            img = rng.integers(0, 60, (20, 24, 3), dtype=np.uint8) + np.uint8(120 * k)
            Image.fromarray(img).save(root / "photos" / cls / f"{i}.png")
    yield root
    patch.undo()


def _run(tmp_path, every_dataset, *overrides):
    """``overrides`` come last: they win over TINY (a sweep's batch sizes, say)."""
    cfg = make_cfg(tmp_path, every_dataset / "data", *TINY, *overrides)
    return cfg, train(cfg)


def _extra(group, option, tmp_path, every_dataset) -> list[str]:
    """What an option needs beside itself here."""
    return {
        ("data", "folder"): [f"data.root={every_dataset / 'photos'}"],
        ("regulariser", "tta"): ["data=fashion_mnist"],  # a mirrored digit is no digit
        ("logger", "mlflow"): [f"paths.log_dir={tmp_path / 'outputs'}"],  # its database
    }.get((group, option), [])


def _built(cfg):
    """What ``train`` makes of a config before it fits: validated, data and model built, a
    batch of the data through the net, the callbacks, loggers and trainer instantiated."""
    validate(cfg)
    datamodule, model = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    if datamodule.batch_aug is not None:  # as on_after_batch_transfer does in training
        x = datamodule.batch_aug(x, (0, 0, 0))
    x = datamodule.normalize(x)
    if datamodule.batch_mix is not None:
        x = datamodule.batch_mix(x, y, (0, 0, 0))[0]
    assert model.net.eval()(x).shape == (len(y), datamodule.num_classes)
    callbacks = [create(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    # MLflow's logger (an import of seconds) is made, and trained with, in tests/test_tracking.py
    loggers = [
        create(c)
        for c in (cfg.get("logger") or {}).values()
        if c is not None and "mlflow" not in c.get("_target_", "")
    ]
    create(cfg.trainer, callbacks=[c for c in callbacks if c is not None], logger=loggers or False)
    # the optimizer and scheduler, as fit makes them (from the trainer: two steps, its epochs)
    model._trainer = SimpleNamespace(
        estimated_stepping_batches=2.0, max_epochs=cfg.trainer.max_epochs
    )
    model.configure_optimizers()
    return datamodule, model


@pytest.mark.parametrize("group,option", BUILT)
def test_every_option_of_every_group_builds_and_reads_its_data(
    group, option, tmp_path, every_dataset
):
    extra = _extra(group, option, tmp_path, every_dataset)
    cfg = make_cfg(tmp_path, every_dataset / "data", *TINY, f"{group}={option}", *extra)
    datamodule, _ = _built(cfg)
    if group == "data":  # the dataset read is the one chosen
        assert datamodule.spec.name == option


@pytest.mark.parametrize("group,option", TRAINED)
def test_every_option_of_every_group_trains_and_tests(group, option, tmp_path, every_dataset):
    extra = _extra(group, option, tmp_path, every_dataset)
    cfg, metrics = _run(tmp_path, every_dataset, f"{group}={option}", *extra)
    assert metrics["status"] == "completed" and "late_error" not in metrics, metrics
    if cfg.test:
        assert metrics["test/acc"] is not None and metrics["test/loss"] > 0
    else:  # debug=overfit only trains
        assert "test/acc" not in metrics
    assert read_metrics(tmp_path / "run")["status"] == "completed"
    run = tmp_path / "run"
    if (group, option) == ("logger", "csv"):
        assert list(run.rglob("metrics.csv"))
    if (group, option) == ("logger", "none"):
        assert not list(run.glob("events.out.tfevents.*"))
    if (group, option) == ("logger", "mlflow"):
        assert (tmp_path / "outputs" / "mlflow.db").is_file()


def _first_job(preset: str) -> list[str]:
    """The overrides of a sweep preset's first job (first value of each swept key)."""
    params = OmegaConf.load(CONFIG_DIR / "sweep" / f"{preset}.yaml").hydra.sweeper.params
    out = []
    for key, values in params.items():
        text = str(values)
        bounds = re.search(r"interval\(([^,]+),", text)  # an Optuna range: its lower end
        span = re.fullmatch(r"range\((?:([^,]+),)?[^)]*\)", text.strip())  # range([start,] stop)
        if bounds:
            first = bounds.group(1)
        elif span:
            first = span.group(1) or "0"
        else:
            first = text.split(",")[0]
        out.append(f"{key}={first.strip()}")
    return out


SWEEPS = sorted(p.stem for p in (CONFIG_DIR / "sweep").glob("[!_]*.yaml"))


@pytest.mark.parametrize("preset", SWEEPS)
def test_every_sweep_presets_first_job_builds(preset, tmp_path, every_dataset):
    overrides = _first_job(preset)
    cfg = make_cfg(tmp_path, every_dataset / "data", *TINY, f"sweep={preset}", *overrides)
    _built(cfg)
    for o in overrides:
        key, value = o.split("=", 1)
        if "." in key:  # the job is configured with the swept value
            assert OmegaConf.select(cfg, key) == yaml.safe_load(value)


@pytest.mark.slow  # the fast suite builds each first job (above) and trains one sweep (test_sweep)
@pytest.mark.parametrize("preset", SWEEPS)
def test_every_sweep_presets_first_job_trains(preset, tmp_path, every_dataset):
    overrides = _first_job(preset)
    cfg, metrics = _run(tmp_path, every_dataset, f"sweep={preset}", *overrides)
    assert metrics["status"] == "completed", metrics
    for o in overrides:
        key, value = o.split("=", 1)
        if "." in key:  # the job really ran with the swept value
            assert OmegaConf.select(cfg, key) == yaml.safe_load(value)
