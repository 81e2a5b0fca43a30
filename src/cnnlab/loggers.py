"""The run's loggers (``logger=tensorboard|mlflow|csv|none``, or a list: ``logger=[tensorboard,mlflow]``).

TensorBoard writes its events into the run folder itself, so that TensorBoard names each run
by its folder (``train/runs/<time>``, ``train/multiruns/<time>/seed=0``) and not all of them
``tensorboard``. MLflow keeps runs in one SQLite file (``outputs/mlflow.db``, no server): the
run's parameters, per-epoch metrics, the test confusion matrix and the best checkpoint; the jobs
of a sweep (``-m``), and the trials of a search, are children of one parent run named by the
sweep's (or the search's) folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from filelock import FileLock
from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger

from cnnlab.errors import ConfigError

# tags cnnlab sets on the parent run of a sweep, found again by each job of that sweep
SWEEP_DIR_TAG = "cnnlab.sweep_dir"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests a run under this one


class TensorBoard(TensorBoardLogger):
    """Lightning's TensorBoardLogger without the ``epoch`` scalar Lightning adds to every
    write: it would be the first card TensorBoard shows, a straight line that says nothing."""

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if metrics:
            super().log_metrics(metrics, step)


def run_name(output_dir: str | Path) -> str:
    """What a run is called in a tracking UI: its overrides (as a sweep job's folder is named),
    else its folder's name."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and HydraConfig.get().job.override_dirname:
        return HydraConfig.get().job.override_dirname
    return Path(output_dir).name


def _sweep_dir() -> Path | None:
    """The folder of the sweep this job belongs to, None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).resolve()


def mlflow(
    db: str, artifacts: str, experiment: str, output_dir: str, parent_dir: str | None = None
) -> MLFlowLogger:
    """An MLFlowLogger on the SQLite file ``db``, artefacts under the folder ``artifacts``.

    The run is a child of the parent run of ``parent_dir`` (a search's folder), or else of
    the sweep this job belongs to; outside both it has no parent.

    The experiment (and a sweep's parent run) are made under a file lock: the jobs of a
    parallel sweep start together and must neither migrate a new database twice nor make two
    parents.
    """
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            'logger=mlflow needs the mlflow package: pip install -e ".[mlflow]" '
            "(or pip install mlflow), or use logger=tensorboard."
        )
    from mlflow.tracking import MlflowClient

    db_path = Path(db).resolve()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{db_path}"
    tags: dict[str, str] = {}
    with FileLock(f"{db_path}.lock"):
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None or found.lifecycle_stage == "deleted":
            location = Path(artifacts).resolve().as_uri()
            experiment_id = client.create_experiment(experiment, artifact_location=location)
        else:
            experiment_id = found.experiment_id
        group = Path(parent_dir).resolve() if parent_dir else _sweep_dir()
        if group is not None:
            tags[PARENT_TAG] = _parent_run(client, experiment_id, group)
    return MLFlowLogger(
        experiment_name=experiment, run_name=run_name(output_dir), tracking_uri=uri, tags=tags
    )


def _parent_run(client, experiment_id: str, sweep: Path) -> str:
    """The id of the parent run of the folder ``sweep`` (a sweep's or a search's): the one
    tagged with that folder, else a new one."""
    # compared here rather than in a filter string: a folder's name may hold any character
    for run in client.search_runs([experiment_id], f"tags.`{SWEEP_DIR_TAG}` != ''"):
        if run.data.tags.get(SWEEP_DIR_TAG) == str(sweep):
            return run.info.run_id
    parent = client.create_run(experiment_id, run_name=sweep.name, tags={SWEEP_DIR_TAG: str(sweep)})
    client.set_terminated(parent.info.run_id)  # it holds no work of its own: its jobs do
    return parent.info.run_id


class MlflowArtifacts(pl.Callback):
    """Logs to each MLflow logger the test confusion matrix (a figure and its counts) and the
    best checkpoint."""

    def __init__(self, loggers: list[MLFlowLogger]):
        self.loggers = loggers

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        cm = pl_module.confusion.get("test")
        if cm is None or not trainer.is_global_zero:
            return
        from cnnlab.viz.figures import confusion_figure

        fig = confusion_figure(cm, list(trainer.datamodule.classes), "Test")
        for logger in self.loggers:
            logger.experiment.log_figure(logger.run_id, fig, "confusion_matrix.png")
            logger.experiment.log_dict(logger.run_id, cm.tolist(), "confusion_matrix.json")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if not best or not trainer.is_global_zero:
            return
        for logger in self.loggers:
            logger.experiment.log_artifact(logger.run_id, best, "checkpoints")


def logger_callbacks(loggers: list) -> list[pl.Callback]:
    """The callbacks the chosen loggers need (MLflow's artefacts)."""
    tracked = [lg for lg in loggers if isinstance(lg, MLFlowLogger)]
    return [MlflowArtifacts(tracked)] if tracked else []
