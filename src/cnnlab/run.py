"""What a run does: compose -> check -> instantiate -> fit -> test -> ``metrics.json``.

``train`` and ``evaluate`` take a composed config and return the metrics they wrote, so
tests drive them in-process exactly as ``train.py`` and ``eval.py`` do.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from cnnlab.build import build, check_tta
from cnnlab.callbacks.checkpointing import InterruptCheckpoint
from cnnlab.callbacks.ema import EMA
from cnnlab.checkpoint import (
    AtomicCheckpointIO,
    RunInfo,
    build_datamodule,
    check_compatible,
    elapsed_before,
    load_checkpoint,
    load_classifier,
)
from cnnlab.cli import in_multirun
from cnnlab.config import create, overrides, plain, validate
from cnnlab.errors import CheckpointError, ConfigError, DiskFull
from cnnlab.loggers import logger_callbacks
from cnnlab.metrics import per_class_accuracy
from cnnlab.models import count_params, layer_table, model_title
from cnnlab.process_settings import configure_torch, cpu_threads
from cnnlab.profiler import make_profiler
from cnnlab.record import (
    EVAL_METRICS_FILE,
    checkpoint_dir,
    fingerprint,
    plan_run,
    read_metrics,
    record_failure,
    record_interrupt,
    record_late_error,
    run_lock,
    write_hydra_record,
    write_metrics,
)
from cnnlab.resources import check_accelerator, peak_rss_mb
from cnnlab.viz.labels import check_lang, label

log = logging.getLogger("cnnlab")


def _scalar(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def lean_loop(value: Any) -> bool:
    """``lean_loop``: true or false (cnnlab.lightning_workarounds)."""
    if not isinstance(value, bool):
        raise ConfigError(
            f"lean_loop={value!r} must be true (cut Lightning's per-step costs; the same "
            f"results) or false (Lightning as shipped)."
        )
    return value


def _callbacks(cfg: DictConfig) -> list[pl.Callback]:
    made = [create(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    found = [c for c in made if c is not None]  # a switched-off one (early_stopping) makes None
    ema = cfg.get("ema") or {}
    if ema.get("enabled") not in (None, True, False):
        raise ConfigError(f"ema.enabled={ema.enabled!r} must be true or false.")
    if ema.get("enabled"):  # outside the callbacks group: callbacks=none keeps it
        found.append(EMA(ema.get("decay", 0.999)))
    return found


def _loggers(cfg: DictConfig) -> list:
    return [create(c) for c in (cfg.get("logger") or {}).values() if c is not None]


def train(cfg: DictConfig, callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Train (and test) the configured model; write and return the run's metrics.

    ``callbacks`` join the configured ones (the search's pruning callback).

    A run directory that already holds this exact config is reused: a completed run is
    skipped (its metrics returned), an interrupted one resumes from ``last.ckpt``. Another
    process running in the same directory is refused (``cnnlab.record``).
    """
    start = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    key = fingerprint(cfg)
    with run_lock(output_dir):
        cfg, skipped = plan_run(cfg, output_dir, key)  # another config's folder: refused here
        if skipped is not None:
            return skipped
        try:
            return _train(cfg, output_dir, start, key, callbacks)
        except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, SIGTERM: Lightning exits via these
            if rank_zero_only.rank == 0:
                record_interrupt(output_dir, checkpoint_dir(cfg) / "last.ckpt", start)
            raise SystemExit(interrupted_status(e)) from e
        except DiskFull as e:  # not the run's fault: the same command resumes once there is room
            last = checkpoint_dir(cfg) / "last.ckpt"
            if rank_zero_only.rank == 0 and last.is_file():
                record_interrupt(output_dir, last, start, e)
            elif rank_zero_only.rank == 0:
                record_failure(output_dir, key, e, start, overrides())
            raise
        except Exception as e:  # nothing is left that looks like a result
            # a single run refused before it claimed the folder (a bad value, missing data)
            # records nothing and leaves no run folder (cnnlab.cli); a sweep's job is recorded
            # so that the sweep's table shows it
            if rank_zero_only.rank == 0 and (_claimed(output_dir) or in_multirun()):
                record_failure(output_dir, key, e, start, overrides())
            raise


def interrupted_status(interrupt: BaseException) -> int | str | None:
    """The exit status of a run a signal ended, as a shell reports a process the signal killed
    (128 + its number): 143 for SIGTERM, 130 for Ctrl-C. Lightning ends both quietly: SIGTERM
    as a SystemExit without a code (status 0, which a scheduler or script takes for success),
    Ctrl-C as ``sys.exit(1)`` while handling the KeyboardInterrupt."""
    if isinstance(interrupt, SIGTERMException):
        return 128 + signal.SIGTERM
    if isinstance(interrupt, KeyboardInterrupt) or isinstance(
        interrupt.__context__, KeyboardInterrupt
    ):
        return 128 + signal.SIGINT
    return interrupt.code if isinstance(interrupt, SystemExit) else 1


def _claimed(output_dir: Path) -> bool:
    """Whether this process has claimed the run folder (its "running" record is there)."""
    record = read_metrics(output_dir) or {}
    return record.get("status") == "running" and record.get("pid") == os.getpid()


def _train(
    cfg: DictConfig, output_dir: Path, start: float, key: str, extra: Sequence[pl.Callback]
) -> dict[str, Any]:
    validate(cfg)
    check_accelerator(cfg.trainer.get("accelerator"), cfg.trainer.get("strategy"))
    configure_torch()
    if threads := cpu_threads(cfg):
        torch.set_num_threads(threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule, model = build(cfg)  # bad model/data values fail here, before any data I/O
    model.lean_loop = lean_loop(cfg.get("lean_loop", True))
    table = layer_table(
        model.net, datamodule.input_shape, f"{model_title(model.net)} on {datamodule.spec.title}"
    )
    if rank_zero_only.rank == 0:
        log.info("\n%s", table)
    earlier = 0.0  # wall time already spent, when resuming
    if cfg.get("ckpt_path"):
        info = check_compatible(
            cfg.ckpt_path,
            model.net,
            datamodule.spec.name,
            plain(cfg.optimizer),
            plain(cfg.get("scheduler")),
        )
        earlier = elapsed_before(info)
    datamodule.prepare_data()  # missing or corrupt data fails here, in seconds

    loggers = _loggers(cfg)
    callbacks = _callbacks(cfg) + logger_callbacks(loggers)
    if not loggers:  # logger=none: a learning-rate monitor would have nowhere to write
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks.append(
        RunInfo(plain(cfg), datamodule.input_shape, datamodule.classes, start, earlier)
    )
    callbacks.append(InterruptCheckpoint(str(checkpoint_dir(cfg))))
    callbacks.extend(extra)
    trainer: pl.Trainer = create(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        # callbacks=none means none: no default checkpointing or progress bar behind the user's back
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        plugins=[AtomicCheckpointIO()],
        profiler=make_profiler(cfg.trainer.get("profiler"), output_dir),
    )

    metrics: dict[str, Any] = {
        "status": "running",
        "model": model_title(model.net),
        "data": datamodule.spec.name,
        "seed": cfg.seed,
        "trainable_params": count_params(model.net),
        "overrides": overrides(),
        "config_hash": key,
        # who writes it: a table can tell a live run from one killed before it could say so
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    resumed = os.path.realpath(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if resumed and os.path.dirname(resumed) != os.path.realpath(checkpoint_dir(cfg)):
        # continues another folder's run: compare_runs shows the two as this one row
        metrics["resumed_from"] = resumed
    if trainer.is_global_zero:  # claims the directory for this config, should the run crash
        write_metrics(output_dir, metrics)
        write_hydra_record(output_dir, cfg)
        (output_dir / "model_summary.txt").write_text(table + "\n")
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    fit_metrics = dict(trainer.callback_metrics)
    if cfg.get("ckpt_path") and _scalar(fit_metrics, "val/acc") is None:
        # resumed after its last epoch (killed before testing): fit had nothing left to do, so
        # the final validation numbers are measured again on the restored weights
        trainer.validate(model, datamodule=datamodule, verbose=False)
        fit_metrics = dict(trainer.callback_metrics)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    best_acc, best_epoch = (model.val_acc_best, model.best_epoch)
    if cfg.get("ckpt_path"):
        best_acc, best_epoch = _measure_best(cfg, trainer, model, datamodule, best)
    metrics.update(
        {
            "val/acc": _scalar(fit_metrics, "val/acc"),
            "val/loss": _scalar(fit_metrics, "val/loss"),
            "val/acc_best": best_acc if best_epoch >= 0 else None,
            "best_epoch": best_epoch if best_epoch >= 0 else None,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
        }
    )
    if cfg.get("test", True):
        trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
        metrics["test/acc"] = _scalar(trainer.callback_metrics, "test/acc")
        metrics["test/loss"] = _scalar(trainer.callback_metrics, "test/loss")
        metrics["tested_checkpoint"] = Path(best).name if best else "final weights"
    metrics["status"] = "completed"
    metrics["wall_time_s"] = round(earlier + time.perf_counter() - start, 2)
    metrics["peak_rss_mb"] = peak_rss_mb()
    if trainer.is_global_zero:
        write_metrics(output_dir, metrics)  # the results are on disk from here on
        try:
            _log_hparams(loggers, cfg, metrics)
            log.info(_summary_line(output_dir, metrics))
        except Exception as e:  # a failure after testing never costs the results
            record_late_error(output_dir, metrics, e)
    return metrics


def _measure_best(
    cfg: DictConfig, trainer: pl.Trainer, model, datamodule, best: str | None
) -> tuple[float, int]:
    """A resumed run's best validation accuracy and its epoch, measured again on the weights of
    its best checkpoint. The best so far travels in the resumed checkpoint, and a checkpoint
    is data: an edited one could claim any accuracy. (-1 for the epoch: nothing to measure.)

    A trainer of its own, without the run's callbacks (EMA would swap its average in) or
    loggers, measures it; a multi-process run measures with its own trainer.
    """
    if not best:
        return 0.0, -1
    state = load_checkpoint(best)
    model.load_state_dict(state["state_dict"])
    if trainer.world_size == 1:
        trainer = create(
            cfg.trainer,
            devices=1,
            logger=False,
            callbacks=[],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            profiler=None,
        )
    trainer.validate(model, datamodule=datamodule, verbose=False)
    return _scalar(trainer.callback_metrics, "val/acc"), int(state["epoch"])


def _log_hparams(loggers: list, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """Link the run's hyper-parameters to its final metrics (TensorBoard's HParams tab)."""
    final = {
        f"hp/{k.replace('/', '_')}": v
        for k, v in metrics.items()
        if k in ("val/acc", "val/acc_best", "test/acc", "test/loss") and v is not None
    }
    params = _flatten(
        {k: plain(cfg[k]) for k in ("model", "data", "optimizer", "aug", "seed") if k in cfg}
    )
    params["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    for logger in loggers:  # only TensorBoard links hyper-parameters to metrics
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, final)
        else:
            logger.log_hyperparams(params)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    value = tree if isinstance(tree, (int, float, str, bool)) or tree is None else str(tree)
    return {prefix.rstrip("."): value}


def _summary_line(output_dir: Path, metrics: dict[str, Any]) -> str:
    parts = [f"Run {metrics['status']}: {output_dir}"]
    if metrics.get("test/acc") is not None:
        parts.append(f"test/acc {metrics['test/acc']:.4f}")
    if metrics.get("val/acc_best") is not None:
        parts.append(f"best val/acc {metrics['val/acc_best']:.4f} (epoch {metrics['best_epoch']})")
    parts.append(f"{metrics['epochs']} epochs in {metrics['wall_time_s']:.1f} s")
    return " | ".join(parts)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint on the test split of its dataset (or of ``data=``, if compatible)."""
    start = time.perf_counter()
    configure_torch()
    lang = check_lang(cfg.get("lang", "en"))  # the figures' words, checked before any work
    if not cfg.get("ckpt_path"):
        raise CheckpointError(
            "ckpt_path is required: python eval.py ckpt_path=<run>/checkpoints/best.ckpt"
        )
    check_accelerator(cfg.trainer.get("accelerator"))
    model, info = load_classifier(cfg.ckpt_path)
    chosen = OmegaConf.select(cfg, "data")
    data_dir = OmegaConf.select(cfg, "data.data_dir") or cfg.paths.data_dir
    if chosen is None or "_target_" not in chosen:  # the checkpoint's own dataset: its
        datamodule = build_datamodule(  # checked config, our data paths
            info, str(cfg.ckpt_path), data_dir, list(cfg.paths.dataset_mirrors or [])
        )
    else:
        chosen.data_dir = data_dir
        chosen.aug = None
        if "classes" in chosen:  # a folder: its class folders are matched to these by name
            chosen.classes = list(info["classes"])
        datamodule = create(chosen, _recursive_=False)
    if list(datamodule.input_shape) != info["input_shape"] or len(datamodule.classes) != len(
        info["classes"]
    ):
        raise CheckpointError(
            f"{cfg.ckpt_path} was trained on {info['config']['data']['name']} "
            f"(input {info['input_shape']}, {len(info['classes'])} classes) and cannot be tested "
            f"on {datamodule.spec.name} (input {list(datamodule.input_shape)}); drop data= to use "
            f"the checkpoint's own dataset."
        )
    if list(datamodule.classes) != info["classes"]:  # scored by position, labels would lie
        raise CheckpointError(
            f"{cfg.ckpt_path} was trained on the classes {', '.join(info['classes'])} and cannot "
            f"be tested on {datamodule.spec.name}, whose classes are "
            f"{', '.join(datamodule.classes)}; drop data= to use the checkpoint's own dataset."
        )
    model.test_tta = check_tta(cfg.get("test_tta"), datamodule.spec)
    datamodule.prepare_data()
    output_dir = Path(cfg.paths.output_dir)
    # the trainer group's settings (accelerator, precision, limit_test_batches...), one device,
    # no logger or checkpoints: evaluation writes only its own files
    trainer: pl.Trainer = create(
        cfg.trainer,
        devices=1,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        profiler=make_profiler(cfg.trainer.get("profiler"), output_dir),
    )
    trainer.test(model, datamodule=datamodule, verbose=False)
    metrics = {
        "status": "completed",
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "model": model_title(model.net),
        "data": datamodule.spec.name,
        "test/acc": _scalar(trainer.callback_metrics, "test/acc"),
        "test/loss": _scalar(trainer.callback_metrics, "test/loss"),
        "trainable_params": count_params(model.net),
        "overrides": overrides(),
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    from cnnlab.viz.figures import bar_figure, confusion_figure, save  # matplotlib: only here

    cm = model.confusion["test"]
    classes = list(datamodule.classes)
    per_class = per_class_accuracy(cm).tolist()
    metrics["test/acc_per_class"] = dict(zip(classes, per_class, strict=True))
    metrics["test/confusion_matrix"] = cm.tolist()
    save(
        confusion_figure(cm, classes, f"{label('test', lang)} ({Path(cfg.ckpt_path).name})", lang),
        output_dir / "confusion_matrix.png",
    )
    save(
        bar_figure(
            classes,
            per_class,
            label("per_class_title", lang),
            label("accuracy", lang),
            label("class", lang),
        ),
        output_dir / "accuracy_per_class.png",
    )
    # its own file: eval into a training run's directory never replaces that run's metrics.json
    write_metrics(output_dir, metrics, EVAL_METRICS_FILE)
    log.info(
        "Evaluated %s on %s: test/acc %.4f | %s",
        cfg.ckpt_path,
        datamodule.spec.name,
        metrics["test/acc"],
        output_dir,
    )
    return metrics
