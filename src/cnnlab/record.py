"""The run record: ``metrics.json``, the config fingerprint, the run-directory lock, resume decisions.

A run directory holds one run of one config. ``metrics.json`` says how far it got
(``running``, ``interrupted``, ``failed``, ``completed``) and for which config (its
fingerprint), so re-running the same command skips a completed run and resumes an
interrupted one. ``run.lock`` (the holder's PID) keeps two processes out of one directory.
Once test metrics are written they are never replaced by a later failure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import SoftFileLock, Timeout
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from cnnlab.config import plain
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError
from cnnlab.files import atomic_path
from cnnlab.neutral_keys import ANY, NEUTRAL_MODEL_KEYS, always_neutral, switches

log = logging.getLogger("cnnlab")

METRICS_FILE = "metrics.json"
EVAL_METRICS_FILE = "eval_metrics.json"  # eval.py's results, beside (never over) a run's own
LOCK_FILE = "run.lock"
RECORD_DIR = ".hydra"  # the config as Hydra records it (compare_runs and users read it)


# -- metrics.json ---------------------------------------------------------------------------
def write_metrics(
    output_dir: str | Path, metrics: dict[str, Any], name: str = METRICS_FILE
) -> Path:
    """Write metrics.json atomically: a reader never sees half a file."""
    path = Path(output_dir) / name
    text = json.dumps(metrics, indent=2, default=_jsonable) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to metrics.json")


def read_metrics(run_dir: str | Path, name: str = METRICS_FILE) -> dict[str, Any] | None:
    """The record as data (status, hash, numbers); nothing in it is ever instantiated."""
    path = Path(run_dir) / name
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, not JSON, not even text (UnicodeDecodeError)
        return None
    return metrics if isinstance(metrics, dict) else None


def fingerprint(cfg: DictConfig) -> str:
    """A hash of what determines a run's result.

    Left out: the keys of ``cnnlab.neutral_keys`` (where data and outputs live, how progress
    is shown, loader and speed settings), and switches added later while they are off.
    """
    tree = plain(cfg)
    # early stopping changes the result; the other callbacks only what is shown and kept
    stopping = (tree.get("callbacks") or {}).get("early_stopping") or {}
    for path in always_neutral():
        _drop(tree, path)
    if stopping.get("patience") is not None:
        tree["early_stopping"] = stopping
    for path, off in switches().items():  # runs recorded before a switch existed still match
        _drop(tree, path, off)
    model = tree.get("model") or {}
    family = str(model.get("_target_", "")).rsplit(".", 1)[-1]
    for key, offs in NEUTRAL_MODEL_KEYS.items():
        if family in offs and key in model and model[key] == offs[family]:
            del model[key]
    return hashlib.sha1(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _drop(tree: dict[str, Any], path: str, off: Any = ANY) -> None:
    """Delete the dotted ``path`` from ``tree`` (if it holds ``off``, unless ``off`` is ANY)."""
    *parents, last = path.split(".")
    node = tree
    for key in parents:
        node = node.get(key) or {}
    if last in node and (off is ANY or node[last] == off):
        del node[last]


def checkpoint_dir(cfg: DictConfig) -> Path:
    """Where this run's checkpoints go: the checkpoint callback's folder (the one place it is set)."""
    configured = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath")
    return Path(configured) if configured else Path(cfg.paths.output_dir) / "checkpoints"


# -- one process per run directory ------------------------------------------------------------
@contextmanager
def run_lock(output_dir: str | Path) -> Iterator[None]:
    """Hold ``<run dir>/run.lock`` (it records this PID) while the run writes there.

    A second run into the same directory is refused at once; a lock left behind by a process
    that died is taken over. Only the main process (rank 0) locks: DDP workers are its own.
    """
    if rank_zero_only.rank != 0:
        yield
        return
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = SoftFileLock(output_dir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = lock.pid
        raise CnnlabError(
            f"Another run (PID {holder if holder is not None else 'unknown'}) is writing to "
            f"{output_dir} (lock file {output_dir / LOCK_FILE}). Wait for it to finish or choose "
            f"another hydra.run.dir; a lock left by a process that died is taken over by itself."
        ) from None
    try:
        yield
    finally:
        lock.release()


# -- what to do with what the run directory already holds ---------------------------------------
def check_owner(output_dir: Path, key: str) -> None:
    """Refuse a folder that holds the record of another configuration, before anything is written.

    A run folder belongs to one configuration: its metrics.json, checkpoints, summary and
    ``.hydra/`` describe that run, and a run of another config would replace them.
    """
    path = Path(output_dir) / METRICS_FILE
    if not path.exists():
        return
    previous = read_metrics(output_dir)
    owner = previous.get("config_hash") if previous else None
    if owner == key:
        return
    what = (
        f"the record of another configuration's run (status {previous.get('status')}, "
        f"config_hash {owner})"
        if previous
        else "a metrics.json that cannot be read, so whose run it records is unknown"
    )
    raise ConfigError(
        f"{output_dir} holds {what}; a run folder belongs to one configuration and its record "
        f"is kept. Run this one in a new folder: hydra.run.dir=NEW_PATH (hydra.sweep.dir= for "
        f"a sweep), or leave hydra.run.dir out for a fresh one."
    )


def write_hydra_record(output_dir: Path, cfg: DictConfig) -> None:
    """``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` as Hydra writes them, but
    only once the folder is known to be this config's, and never over an earlier copy.

    Hydra would write them before any cnnlab code runs (conf/hydra/default.yaml turns that
    off with ``hydra.output_subdir: null``), replacing the record of a run that is then refused.
    """
    from hydra.core.hydra_config import HydraConfig

    folder = Path(output_dir) / RECORD_DIR
    if not HydraConfig.initialized() or (folder / "config.yaml").exists():
        return
    hydra_cfg = HydraConfig.instance().cfg
    nodes = {
        "config.yaml": cfg,
        "hydra.yaml": hydra_cfg,
        "overrides.yaml": hydra_cfg.hydra.overrides.task,
    }
    for name, node in nodes.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(OmegaConf.to_yaml(node))


def plan_run(cfg: DictConfig, output_dir: Path, key: str) -> tuple[DictConfig, dict | None]:
    """``(cfg, None)`` to run (``cfg.ckpt_path`` set when resuming), or ``(cfg, metrics)`` to skip.

    Another config's folder: refused (``check_owner``). Same config, completed: skip. Same
    config, interrupted with a readable ``last.ckpt``: resume from it. Anything else starts afresh; checkpoints left in the folder by an earlier
    attempt are moved aside (``best.ckpt.stale``, an unreadable one ``last.ckpt.corrupt``) so
    the new run's files keep their plain names (no ``best-v1.ckpt`` beside stale ones).
    """
    from cnnlab.checkpoint import load_checkpoint

    check_owner(output_dir, key)
    previous = read_metrics(output_dir) or {}
    folder = checkpoint_dir(cfg)
    if previous.get("config_hash") == key:
        status = previous.get("status")
        if status == "completed" and cfg.get("skip_completed", True):
            log.info("Skipping %s: this config already completed there", output_dir)
            return cfg, {**previous, "skipped": True}
        last = folder / "last.ckpt"
        resumable = status in ("running", "interrupted") and last.is_file()
        if resumable and cfg.get("auto_resume", True) and not cfg.get("ckpt_path"):
            try:
                load_checkpoint(last)
            except CheckpointError as e:
                log.warning(
                    "Cannot resume the interrupted run in %s: %s Starting it afresh.", output_dir, e
                )
                if rank_zero_only.rank == 0:
                    set_aside(folder, corrupt=(last,))
                return cfg, None
            log.info("Resuming the interrupted run in %s from %s", output_dir, last)
            cfg = cfg.copy()
            cfg.ckpt_path = str(last)
            return cfg, None
    resume = cfg.get("ckpt_path")
    resumes_own = resume and Path(resume).resolve().parent == folder.resolve()
    if not resumes_own and rank_zero_only.rank == 0:
        set_aside(folder)
    return cfg, None


def set_aside(folder: Path, corrupt: tuple[Path, ...] = ()) -> list[Path]:
    """Rename the checkpoints of an abandoned attempt so a fresh run starts with an empty folder.

    Nothing is deleted: ``x.ckpt`` becomes ``x.ckpt.stale`` (``x.ckpt.corrupt`` when it cannot
    be read), with a number added if that name is taken.
    """
    moved = []
    for path in sorted(folder.glob("*.ckpt")) if folder.is_dir() else []:
        suffix = ".corrupt" if path in corrupt else ".stale"
        target = path.with_name(path.name + suffix)
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}{suffix}.{n}")
            n += 1
        os.replace(path, target)
        moved.append(target)
    if moved:
        log.warning(
            "Starting afresh in %s: moved the earlier attempt's checkpoints aside (%s).",
            folder,
            ", ".join(p.name for p in moved),
        )
    return moved


# -- ends of a run --------------------------------------------------------------------------------
def record_interrupt(
    output_dir: Path, last: Path, start: float, error: BaseException | None = None
) -> None:
    """Mark the run resumable from ``last`` (unless it had already completed); ``error`` says
    why it stopped when that was not the user (a full disk)."""
    previous = read_metrics(output_dir) or {}
    if previous.get("status") == "completed" or not last.is_file():
        return
    write_metrics(
        output_dir,
        {
            **previous,
            "status": "interrupted",
            "resume_from": str(last),
            "wall_time_s": round(time.perf_counter() - start, 2),
            **({"error": f"{type(error).__name__}: {error}"} if error else {}),
        },
    )
    if error:
        return  # the error itself is the message
    log.warning(
        "Interrupted. A resumable checkpoint is at %s; continue with the same command plus "
        "ckpt_path=%s (a sweep re-run resumes it by itself).",
        last,
        last,
    )


def record_failure(
    output_dir: Path, key: str, error: BaseException, start: float, overrides: list[str]
) -> None:
    """Say in metrics.json that the run failed, so a sweep's table shows it and a re-run repeats it."""
    write_metrics(
        output_dir,
        {
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "overrides": overrides,
            "config_hash": key,
            "wall_time_s": round(time.perf_counter() - start, 2),
        },
    )


def record_late_error(output_dir: Path, metrics: dict[str, Any], error: BaseException) -> None:
    """A failure after testing: reported beside the results, which stay (status completed)."""
    metrics["late_error"] = f"{type(error).__name__}: {error}"
    write_metrics(output_dir, metrics)
    log.warning(
        "The run completed and its results are in %s, but a step after testing failed: %s",
        Path(output_dir) / METRICS_FILE,
        metrics["late_error"],
    )
