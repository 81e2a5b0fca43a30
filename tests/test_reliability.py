"""Crash safety, determinism, safe checkpoints and multi-process training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from cnnlab.checkpoint import load_checkpoint
from cnnlab.compare import find_runs
from cnnlab.config import PROJECT_ROOT
from cnnlab.errors import CheckpointError, TrainingDiverged
from cnnlab.run import evaluate, train
from tests.support.synthetic import write_mnist_like

from .conftest import make_cfg

QUICK = (
    "data.val_size=100",
    "data.batch_size=50",
    "optimizer.lr=0.003",
    "trainer.deterministic=true",
)
RESULTS = (
    "val/acc",
    "val/loss",
    "val/acc_best",
    "test/acc",
    "test/loss",
    "best_epoch",
    "epochs",
    "steps",
)


class SigtermAt(pl.Callback):
    """Sends this process SIGTERM (as a cluster pre-emption would) after a given step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def results(metrics: dict) -> dict:
    return {k: metrics[k] for k in RESULTS}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    write_mnist_like(d, "mnist", n_train=600, n_test=200)
    return d


@pytest.fixture(scope="module")
def reference(mnist_dir, tmp_path_factory):
    """An uninterrupted 3-epoch run (dropout on, so the RNG matters)."""
    tmp = tmp_path_factory.mktemp("reference")
    metrics = train(make_cfg(tmp, mnist_dir, *QUICK, "trainer.max_epochs=3", "model.dropout=0.3"))
    return {**metrics, "run_dir": str(tmp / "run")}


def test_same_seed_same_metrics(reference, mnist_dir, tmp_path):
    again = train(
        make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=3", "model.dropout=0.3")
    )
    assert results(again) == results(reference)


def test_other_seed_other_metrics(reference, mnist_dir, tmp_path):
    other = train(
        make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=3", "model.dropout=0.3", "seed=7")
    )
    assert results(other) != results(reference)


def test_sigterm_mid_epoch_leaves_a_checkpoint_and_resuming_matches(reference, mnist_dir, tmp_path):
    cfg = make_cfg(
        tmp_path / "a",
        mnist_dir,
        *QUICK,
        "trainer.max_epochs=3",
        "model.dropout=0.3",
        "+callbacks.sigterm._target_=tests.test_reliability.SigtermAt",
        "+callbacks.sigterm.step=14",
    )  # 10 batches per epoch: mid second epoch
    with pytest.raises(SystemExit) as exit_:
        train(cfg)
    assert exit_.value.code == 143  # 128 + SIGTERM, as a shell reports a job the signal ended
    run_dir = Path(cfg.paths.output_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    state = load_checkpoint(last)
    assert state["global_step"] == 14 and state["epoch"] == 1
    interrupted = json.loads((run_dir / "metrics.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["resume_from"] == str(last)

    resumed = train(
        make_cfg(
            tmp_path / "b",
            mnist_dir,
            *QUICK,
            "trainer.max_epochs=3",
            "model.dropout=0.3",
            f"ckpt_path={last}",
        )
    )
    assert results(resumed) == results(reference)
    # the interrupted folder and the one it continued in are one row of the training log
    assert resumed["resumed_from"] == str(last.resolve())
    (run,) = find_runs([tmp_path])
    assert run.path == tmp_path / "b" / "run" and run.status == "completed"


def test_rerunning_an_interrupted_run_dir_resumes_it(mnist_dir, tmp_path):
    cfg = make_cfg(
        tmp_path,
        mnist_dir,
        *QUICK,
        "trainer.max_epochs=2",
        "+callbacks.sigterm._target_=tests.test_reliability.SigtermAt",
        "+callbacks.sigterm.step=5",
    )
    with pytest.raises(SystemExit):
        train(cfg)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "interrupted"
    metrics = train(cfg)  # the same command again, as a re-run sweep or a requeued job does
    assert metrics["status"] == "completed" and metrics["steps"] == 20 and metrics["epochs"] == 2


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_training_saves_and_exits_non_zero(mnist_dir, tmp_path, sig, status):
    import time

    from .conftest import subprocess_env

    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "train.py"), f"paths.data_dir={mnist_dir}",
         "paths.dataset_mirrors=[]", "data.download=false", "trainer.accelerator=cpu",
         *QUICK, "trainer.max_epochs=1000", "logger=none", f"hydra.run.dir={run_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )  # fmt: skip
    try:
        last = run_dir / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 240
        while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # until the first epoch's checkpoint: training is under way
        assert last.is_file(), "training never started"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, err[-2000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["resume_from"] == str(last)
    assert load_checkpoint(last)["global_step"] > 0


def _interrupted(tmp_path, mnist_dir, edit):
    """A run SIGTERMed mid second epoch whose last.ckpt is then edited: (cfg, last.ckpt)."""
    cfg = make_cfg(
        tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=3", "model.dropout=0.3",
        "+callbacks.sigterm._target_=tests.test_reliability.SigtermAt", "+callbacks.sigterm.step=14",
    )  # fmt: skip
    with pytest.raises(SystemExit):
        train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    edit(state)
    torch.save(state, last)
    cfg.callbacks.sigterm.step = 10**6  # the same command again resumes it, uninterrupted
    return cfg, last


def test_a_crafted_best_in_the_resumed_checkpoint_is_not_reported(reference, mnist_dir, tmp_path):
    def claim(state):
        state["best"] = {"val_acc": 0.999, "epoch": 0}

    cfg, _ = _interrupted(tmp_path, mnist_dir, claim)
    resumed = train(cfg)
    assert resumed["status"] == "completed" and resumed["val/acc_best"] != 0.999
    # measured again on best.ckpt: what the uninterrupted run measured
    assert resumed["val/acc_best"] == pytest.approx(reference["val/acc_best"], abs=1e-6)
    assert resumed["best_epoch"] == reference["best_epoch"]


def test_a_malformed_rng_state_is_refused_before_resuming(mnist_dir, tmp_path, capsys):
    from cnnlab.cli import run_app

    def damage(state):
        state["rng"]["torch"] = torch.zeros(7, dtype=torch.uint8)

    cfg, last = _interrupted(tmp_path, mnist_dir, damage)
    record = (tmp_path / "run" / "metrics.json").read_bytes()
    with pytest.raises(SystemExit) as exit_:
        run_app(train, cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    assert err[0] == (
        f"Error: {last}: its stored random-number generator state is malformed (edited or "
        "damaged), so the run cannot resume exactly. Resume from another checkpoint of the run, "
        "or drop ckpt_path to start afresh."
    )
    assert (tmp_path / "run" / "metrics.json").read_bytes() == record  # still resumable


class BlowUpAt(pl.Callback):
    """Raises the learning rate absurdly at the start of an epoch, as a bad schedule would."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, *args) -> None:
        if trainer.current_epoch == self.epoch:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = 1e12


def test_nan_loss_stops_with_a_hint_and_keeps_the_last_good_checkpoint(mnist_dir, tmp_path):
    cfg = make_cfg(
        tmp_path,
        mnist_dir,
        *QUICK,
        "trainer.max_epochs=5",
        "optimizer=sgd",
        "optimizer.momentum=0.0",
        "optimizer.nesterov=false",
        "+callbacks.blowup._target_=tests.test_reliability.BlowUpAt",
        "+callbacks.blowup.epoch=1",
    )
    with pytest.raises(
        TrainingDiverged, match=r"the loss became (nan|inf) at epoch 1.*try optimizer.lr=1e\+11"
    ) as err:
        train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"The last good checkpoint is kept: {last}" in str(err.value)
    state = load_checkpoint(last)
    assert state["epoch"] == 0 and all(
        torch.isfinite(t).all() for t in state["state_dict"].values()
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "Training diverged" in metrics["error"]


class Exploit:
    """Unpickling this would run os.system: the classic malicious-checkpoint payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_never_runs_its_code(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "cnnlab": {}, "payload": Exploit(marker)}, ckpt)
    with pytest.raises(CheckpointError, match=r"holds pickled Python objects, not just weights"):
        load_checkpoint(ckpt)
    assert not marker.exists()
    # and through the command line, as eval.py would load it
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "eval.py"),
            f"ckpt_path={ckpt}",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "weights_only=True" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "content,match",
    [
        (None, r"ckpt_path='.*missing.ckpt' does not exist"),
        (b"not a checkpoint at all", r"is not a readable PyTorch checkpoint"),
        (b"hello", r"is not a readable PyTorch checkpoint"),
        ({"weights": 1}, r"is not a Lightning checkpoint"),
        ({"state_dict": {}}, r"was not written by cnnlab"),
    ],
)
def test_bad_checkpoints_are_named(tmp_path, content, match):
    path = tmp_path / "missing.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_checkpoint_of_another_dataset_is_refused(reference, tmp_path, tiny_cifar):
    ckpt = Path(reference["run_dir"]) / "checkpoints" / "best.ckpt"
    cfg = make_cfg(tmp_path, tiny_cifar, f"ckpt_path={ckpt}", "data=cifar10", config="eval")
    with pytest.raises(
        CheckpointError, match=r"was trained on mnist .* cannot be tested on cifar10"
    ):
        evaluate(cfg)


def test_checkpoint_of_other_classes_of_the_same_shape_is_refused(reference, tmp_path):
    """MNIST's digits and Fashion-MNIST's garments: the same 1x28x28 input and ten classes, so
    every label would be scored by position, against another class's name."""
    write_mnist_like(tmp_path / "data", "fashion_mnist", n_train=600, n_test=200)
    ckpt = Path(reference["run_dir"]) / "checkpoints" / "best.ckpt"
    cfg = make_cfg(
        tmp_path,
        tmp_path / "data",
        f"ckpt_path={ckpt}",
        "data=fashion_mnist",
        "data.val_size=100",
        config="eval",
    )
    with pytest.raises(CheckpointError) as err:
        evaluate(cfg)
    assert str(err.value) == (
        f"{ckpt} was trained on the classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and cannot be tested on "
        f"fashion_mnist, whose classes are T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, "
        f"Shirt, Sneaker, Bag, Ankle boot; drop data= to use the checkpoint's own dataset."
    )


def test_ddp_two_cpu_processes(mnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "CNNLAB_DATA_DIR": str(mnist_dir), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "train.py"),
            "trainer=ddp_cpu",
            f"hydra.run.dir={run_dir}",
            "paths.dataset_mirrors=[]",
            "data.download=false",
            "trainer.max_epochs=2",
            "callbacks.progress_bar.refresh_rate=0",
            *QUICK[:3],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["steps"] == 2 * 5  # 500 training images / (2 processes x 50)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert list(run_dir.rglob("metrics.json")) == [run_dir / "metrics.json"]  # rank 0 only
    # the reduced test accuracy is that of the whole test set: one process re-computes it
    single = evaluate(
        make_cfg(
            tmp_path / "eval",
            mnist_dir,
            f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
            config="eval",
        )
    )
    assert single["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_resuming_from_another_models_checkpoint_is_refused(reference, mnist_dir, tmp_path):
    ckpt = Path(reference["run_dir"]) / "checkpoints" / "last.ckpt"
    cfg = make_cfg(tmp_path, mnist_dir, "model=vgg11", f"ckpt_path={ckpt}")
    with pytest.raises(
        CheckpointError,
        match=r"belongs to another setup \(LeNet5 on mnist\) and cannot resume this run \(VGG-11 on mnist\)",
    ):
        train(cfg)


@pytest.mark.parametrize(
    "override,first_line",
    [
        ("model=resnet", "Error: model=resnet is not an option: did you mean model=resnet"),
        ("data=imagenet", "Error: data=imagenet is not an option (options: cifar10, fashion_mnist,"),
        ("aug=mixup", "Error: aug=mixup is not an option (options: cifar, light, none, strong)."),
        ("model.dropout=1.2", "Error: model.dropout=1.2 is outside [0, 1)"),
        ("optimizer.lr=-1", "Error: optimizer.lr=-1 must be a positive number"),
    ],
)
def test_bad_command_lines_print_one_clear_message(override, first_line, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), override, f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(first_line), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # refused before the run folder was used
