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
import warnings
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
from torch.nn.modules.batchnorm import _BatchNorm

from cnnlab.callbacks import EMA, InterruptCheckpoint, skip_inherited_batch_hooks
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
from cnnlab.config import create, overrides, validate
from cnnlab.errors import CheckpointError, ConfigError, DiskFull
from cnnlab.finetune import finetune_settings, head_params
from cnnlab.lit import ImageClassifier
from cnnlab.loggers import logger_callbacks
from cnnlab.metrics import per_class_accuracy
from cnnlab.models import check_forward, count_params, layer_table, model_title
from cnnlab.models.zoo import check_input_size
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
from cnnlab.resources import check_accelerator, check_fits_in_memory, peak_rss_mb
from cnnlab.startup import NVML_CHECK
from cnnlab.viz.labels import check_lang, label
from cnnlab.weights import (
    fill_inputs,
    head_keys,
    load_start,
    net_args,
    start_inputs,
    starts_from,
)

log = logging.getLogger("cnnlab")


def configure_torch() -> None:
    """Process-wide settings every run wants."""
    # Denormal floats make CPU arithmetic several times slower; small nets' weights and
    # gradients drift into that range late in training (measured: LeNet-5 ran ~6x slower).
    torch.set_flush_denormal(True)
    # Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 so that looking for GPUs never initialises
    # CUDA (forked workers could not use it). torch then also looks for the NVML library on
    # every optimiser step: where there is none, a failed dlopen each step (~1% of a LeNet-5
    # step on a CPU). Without a GPU there is no CUDA to keep uninitialised.
    if os.environ.get(NVML_CHECK) == "1" and not torch.cuda.is_available():
        del os.environ[NVML_CHECK]
    # The in-memory loaders need no worker processes; Lightning's advice to add some is noise.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    # an advertisement Lightning prints on every run
    lightning_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in lightning_log.filters):
        lightning_log.addFilter(_NoAdverts())
    # Saving a whole training state (as the learning-rate finder does) logs "`weights_only` was
    # not set, defaulting to `False`": a save option (weights alone, or the optimiser's state
    # too), which reads as if checkpoints were loaded unsafely. They never are (checkpoint.py).
    saving_log = logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector")
    if not any(isinstance(f, _NoSaveOptionNote) for f in saving_log.filters):
        saving_log.addFilter(_NoSaveOptionNote())


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in str(record.msg)


class _NoSaveOptionNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "`weights_only` was not set" not in str(record.msg)


def cpu_threads(cfg: DictConfig) -> int | None:
    """torch's CPU threads for this process: ``threads``, else a fair share of the cores when
    a parallel launcher runs several jobs at once (2 jobs x 2 threads on 2 cores spin against
    each other and run slower than one job at a time), else None (torch's default)."""
    if cfg.get("threads"):
        return int(cfg.threads)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    n_jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs")
    if isinstance(n_jobs, int) and n_jobs > 1:
        return max(1, (os.cpu_count() or 1) // n_jobs)
    return None


def _scalar(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _plain(cfg: Any) -> Any:
    """Config node -> plain dicts/lists (checkpoints must hold no OmegaConf objects)."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def build(cfg: DictConfig):
    """Instantiate data and model from the config; no data is read yet.

    A start from weights (``model.pretrained``, ``model.init_from``: ``cnnlab.weights``) sets
    the data's null input keys (normalisation, image size) first, and its tensors are loaded
    into the net here, unless the run resumes from its own checkpoint.
    """
    node = _plain(cfg.model)
    inputs = start_inputs(node)
    datamodule = create(cfg.data, _recursive_=False)
    if inputs and fill_inputs(cfg.data, inputs, datamodule.input_shape[0]):
        datamodule = create(cfg.data, _recursive_=False)  # again, with the weights' inputs
    shape, classes = datamodule.input_shape, datamodule.num_classes
    args = net_args(node)

    def make(num_classes: int, input_shape=shape) -> torch.nn.Module:
        return create(args, input_shape=input_shape, num_classes=num_classes)

    with torch.device("meta"):  # sizes first, storage later: a typo'd width must not fill the RAM
        probe = make(classes)
    # a net that cannot take the data fails here, naming the layer and the image size it takes
    check_input_size(probe, shape, make)
    check_fits_in_memory(count_params(probe, trainable_only=False), _model_choice(cfg))
    net = make(classes)
    check_forward(net, shape)  # sizes lazy layers for real
    if datamodule.batch_size < 2 and any(isinstance(m, _BatchNorm) for m in net.modules()):
        raise ConfigError(
            f"data.batch_size={datamodule.batch_size} cannot train batch norm: a batch of one "
            f"image has no variance to normalise by. Use data.batch_size=2 or more, or "
            f"model.batch_norm=false."
        )
    finetune = finetune_settings(_plain(cfg.get("finetune")), cfg.trainer.max_epochs)
    starts = starts_from(node)
    head = head_keys(make, classes, shape) if finetune or starts else set()
    if starts and not cfg.get("ckpt_path"):  # a resumed run's checkpoint holds its weights
        log.info(load_start(net, node, head))
    if finetune:
        finetune["head"] = head_params(net, head)
    model = ImageClassifier(
        net,
        num_classes=datamodule.num_classes,
        optimizer=_plain(cfg.optimizer),
        scheduler=_plain(cfg.get("scheduler")),
        class_names=list(datamodule.classes),
        channels_last=channels_last(cfg.get("channels_last", False), net, cfg.trainer.accelerator),
        compile=cfg.get("compile", False),
        label_smoothing=(cfg.get("loss") or {}).get("label_smoothing", 0.0),
        test_tta=check_tta(cfg.get("test_tta"), datamodule.spec),
        finetune=finetune,
    )
    return datamodule, model


def channels_last(value: Any, net: torch.nn.Module, accelerator: str) -> bool:
    """``channels_last``: true, false, or auto = on for a CPU run of a net with convolutions,
    unless it has a batch norm over image maps of a width that is slow in that layout.

    Measured on a 2-core CPU (README "Performance"): channels-last makes convolution backward
    and pooling about twice as fast (a LeNet-5 epoch 3.53 -> 2.71 s; a VGG-11-BN epoch about
    1.3x faster); PyTorch's CPU batch norm vectorises over the channels in that layout and is
    several times slower on narrow layers (LeNet-5's C1 has 6); a net without convolutions
    gains nothing. GPUs were not measured here, so auto leaves them as they were.
    """
    if value != "auto":
        return bool(value)
    on_cpu = accelerator == "cpu" or (
        accelerator == "auto"
        and not torch.cuda.is_available()
        and not torch.backends.mps.is_available()
    )
    layers = list(net.modules())
    return (
        on_cpu
        and any(isinstance(m, torch.nn.Conv2d) for m in layers)
        and not any(_slow_in_channels_last(m) for m in layers)
    )


def _slow_in_channels_last(layer: torch.nn.Module) -> bool:
    """A batch norm over image maps whose width PyTorch's CPU kernel handles slowly in
    channels-last. Measured (forward + backward, batches of 256): 6 channels 20 ms against
    2.5 ms in the standard layout, 12: 16 vs 7, 20: 4.2 vs 2.0; 16, 24, 32, 40, 64, 96: as fast
    or up to 2.7x faster."""
    if not isinstance(layer, torch.nn.BatchNorm2d):
        return False
    return layer.num_features < 16 or layer.num_features % 8 != 0


def check_tta(value: Any, spec) -> str | None:
    """``test_tta``: None or "flip", refused for datasets whose mirror images change the class."""
    if value is None:
        return None
    if value != "flip":
        raise ConfigError(
            f"test_tta={value!r} is not a test-time augmentation: use test_tta=flip (the mean "
            f"of each image's and its mirror image's softmax) or test_tta=null."
        )
    if not spec.hflip_keeps_label:
        raise ConfigError(
            f"test_tta=flip is refused for {spec.title}: a mirrored digit is another symbol or "
            f"none, so averaging its prediction in would blur the answer. Use test_tta=null."
        )
    return value


def _model_choice(cfg: DictConfig) -> str:
    """The model as the user chose it: model=NAME and its overrides (for messages)."""
    chosen = [o for o in overrides() if o.lstrip("+~").startswith("model")]
    return " ".join(chosen) or f"model {cfg.model.get('_target_', '?')}"


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
            _plain(cfg.optimizer),
            _plain(cfg.get("scheduler")),
        )
        earlier = elapsed_before(info)
    datamodule.prepare_data()  # missing or corrupt data fails here, in seconds

    loggers = _loggers(cfg)
    callbacks = _callbacks(cfg) + logger_callbacks(loggers)
    if not loggers:  # logger=none: a learning-rate monitor would have nowhere to write
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks.append(
        RunInfo(_plain(cfg), datamodule.input_shape, datamodule.classes, start, earlier)
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
    skip_inherited_batch_hooks(trainer.callbacks)  # Lightning's own (ModelSummary) included

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
        {k: _plain(cfg[k]) for k in ("model", "data", "optimizer", "aug", "seed") if k in cfg}
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
