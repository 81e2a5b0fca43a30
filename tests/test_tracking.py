"""Runs as TensorBoard and MLflow show them: read back from the real event files and the real
MLflow SQLite database, through their own readers (EventMultiplexer, MlflowClient)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from cnnlab.config import PROJECT_ROOT
from cnnlab.errors import ConfigError
from tests.support.synthetic import write_mnist_like

from .conftest import tiny_run

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tiny 2-epoch run logged to TensorBoard and MLflow at once."""
    tmp = tmp_path_factory.mktemp("tracked")
    cfg, metrics = tiny_run(
        tmp, "logger=[tensorboard,mlflow]", "trainer.max_epochs=2", f"paths.log_dir={tmp}/outputs"
    )
    return tmp, Path(cfg.paths.output_dir), metrics


def _client(log_dir: Path) -> MlflowClient:
    db = log_dir / "mlflow.db"
    assert db.is_file()
    return MlflowClient(f"sqlite:///{db}")


def test_mlflow_holds_params_per_epoch_metrics_confusion_matrix_and_best_checkpoint(tracked):
    tmp, run_dir, metrics = tracked
    client = _client(tmp / "outputs")
    (experiment,) = [e for e in client.search_experiments() if e.name == "train"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["optimizer.lr"] == "0.003" and params["data.batch_size"] == "50"
    assert params["seed"] == "42" and params["trainer.max_epochs"] == "2"
    # one val/acc per epoch; the last is the run's final one in metrics.json
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == 2
    assert max(history, key=lambda m: m.step).value == pytest.approx(metrics["val/acc"])
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    # artefacts: the test confusion matrix (a figure and its counts) and the best checkpoint
    down = tmp / "downloaded"
    down.mkdir()
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "confusion_matrix.json", "checkpoints"} <= names
    cm = json.loads(
        Path(
            client.download_artifacts(run.info.run_id, "confusion_matrix.json", str(down))
        ).read_text()
    )
    total = sum(map(sum, cm))
    assert total == 200  # the tiny test split
    assert sum(cm[i][i] for i in range(10)) / total == pytest.approx(metrics["test/acc"])
    png = Path(client.download_artifacts(run.info.run_id, "confusion_matrix.png", str(down)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = Path(client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt", str(down)))
    assert _sha(ckpt) == _sha(run_dir / "checkpoints" / "best.ckpt")
    # its artefacts live beside the database, not in the working directory
    assert (
        Path(experiment.artifact_location.removeprefix("file://"))
        == tmp / "outputs" / "mlartifacts"
    )


def test_tensorboard_names_the_run_by_its_folder_and_drops_the_epoch_scalar(tracked):
    tmp, run_dir, metrics = tracked
    # what `tensorboard --logdir` on the folder above shows: one run, named by its folder
    mux = EventMultiplexer().AddRunsFromDirectory(str(run_dir.parent))
    mux.Reload()
    assert list(mux.Runs()) == [run_dir.name]
    tags = set(mux.Runs()[run_dir.name]["scalars"])
    assert "epoch" not in tags
    assert {"val/acc", "val/loss", "test/acc", "train/loss_epoch"} <= tags
    (last,) = mux.Scalars(run_dir.name, "test/acc")
    assert last.value == pytest.approx(metrics["test/acc"])


def test_logger_mlflow_without_mlflow_says_how_to_install(tmp_path, monkeypatch):
    from cnnlab.loggers import mlflow

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(
        ConfigError, match=r'^logger=mlflow needs the mlflow package: pip install -e "\.\[mlflow\]"'
    ):
        mlflow(str(tmp_path / "mlflow.db"), str(tmp_path / "a"), "train", str(tmp_path / "run"))
    assert not (tmp_path / "mlflow.db").exists()


def test_the_jobs_of_one_sweep_share_one_parent_run(tracked, tmp_path, monkeypatch):
    from cnnlab import loggers

    db = tracked[0] / "outputs" / "mlflow.db"  # made already: a new one takes seconds to set up

    def job(sweep: str):
        monkeypatch.setattr(loggers, "_sweep_dir", lambda: tmp_path / sweep)
        made = loggers.mlflow(str(db), str(tmp_path / "a"), "sweeps", "run")
        return made.tags["mlflow.parentRunId"]

    first, second, other = job("sweep1"), job("sweep1"), job("sweep2")
    assert first == second != other
    client = _client(db.parent)
    assert client.get_run(first).info.run_name == "sweep1"
    assert client.get_run(other).data.tags["cnnlab.sweep_dir"] == str(tmp_path / "sweep2")


def test_the_trials_of_one_search_share_one_parent_run_named_by_its_folder(tracked, tmp_path):
    from cnnlab import loggers

    db = tracked[0] / "outputs" / "mlflow.db"

    def trial(i: int, search: str) -> str:
        made = loggers.mlflow(str(db), str(tmp_path / "a"), "search", f"trial_{i:03d}",
                              parent_dir=str(tmp_path / search))  # fmt: skip
        return made.tags["mlflow.parentRunId"]

    first, second, other = trial(0, "my_search"), trial(1, "my_search"), trial(0, "other")
    assert first == second != other
    assert _client(db.parent).get_run(first).info.run_name == "my_search"


@pytest.mark.slow
def test_a_sweep_is_one_parent_run_with_its_jobs_as_children(tmp_path):
    """A real multirun (`train.py -m seed=0,1 logger=mlflow`), one epoch of two batches each."""
    write_mnist_like(tmp_path / "data", "mnist", n_train=300, n_test=100)
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "CNNLAB_DATA_DIR": str(tmp_path / "data"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep_dir}",
         f"paths.log_dir={tmp_path / 'outputs'}", "logger=mlflow", "seed=0,1",
         "data.val_size=50", "data.download=false", "paths.dataset_mirrors=[]",
         "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.accelerator=cpu",
         "callbacks.progress_bar.refresh_rate=0", "test=false"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = _client(tmp_path / "outputs")
    (experiment,) = [e for e in client.search_experiments() if e.name == "train"]
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (parent,) = parents
    assert parent.info.run_name == sweep_dir.name
    children = {r.info.run_name: r for r in runs if r is not parent}
    assert len(children) == 2
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
    # each child is named as its job's folder is, and holds that job's final val/acc
    for name, child in children.items():
        job = json.loads((sweep_dir / name / "metrics.json").read_text())
        assert child.data.params["seed"] == str(job["seed"])
        assert child.data.metrics["val/acc"] == pytest.approx(job["val/acc"])
