"""Hyper-parameter search with the current Optuna: pruned trials, one study many workers share.

``python scripts/search.py search=lenet_fashion n_trials=20 workers=2`` (options:
conf/search.yaml; the space: conf/search/<name>.yaml). Each trial is a real ``train.py`` run
in ``<dir>/trial_<number>`` (metrics.json, TensorBoard, checkpoints); after every validation
it reports its metric to the study, and the pruner stops it when it falls behind the median
of earlier trials at the same epoch. Trials never see the test split (``test=false``): the
best trial's command trains and tests.

The study lives in a storage given by URL (default: a journal file in the search folder), so
that workers started here (``workers=N``: processes through submitit's LocalExecutor), as a
SLURM array (``launcher=slurm``) or by hand on another machine cooperate on one study, and a
re-run continues it up to ``n_trials`` in all. Samplers and pruners are chosen by name from
an allow-list: a config names no code.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from filelock import FileLock

from cnnlab.errors import CnnlabError, ConfigError

STUDY_JOURNAL = "study.journal"
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "halving", "none")
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


@dataclass(frozen=True)
class Search:
    """A search as plain data (what every worker gets, pickled by submitit)."""

    name: str  # the study's name in the storage
    dir: str  # trials, journal, tables
    train: tuple[str, ...]  # train.py overrides every trial starts from
    params: dict[str, Any]  # key -> {low, high, log, step} | {choices}
    metric: str
    direction: str  # maximize | minimize
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    n_trials: int
    storage: str | None
    threads: int | None = None  # torch threads per trial (a fair share of local cores)


def from_config(cfg: Any) -> Search:
    """The composed conf/search.yaml (resolved) as a Search; bad values fail here, early."""
    s = cfg["search"]
    n_trials, workers = cfg["n_trials"], cfg["workers"]
    for key, value in (("n_trials", n_trials), ("workers", workers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key}={value!r} must be an integer >= 1.")
    if s.get("direction") not in ("maximize", "minimize"):
        raise ConfigError(f"search.direction={s.get('direction')!r} must be maximize or minimize.")
    if cfg["launcher"] not in ("local", "slurm"):
        raise ConfigError(f"launcher={cfg['launcher']!r} must be local or slurm.")
    search = Search(
        name=str(cfg["study"]),
        dir=str(cfg["dir"]),
        train=tuple(str(o) for o in s.get("train") or ()),
        params=flatten_space(s.get("params") or {}),
        metric=str(s.get("metric", "val/acc")),
        direction=s["direction"],
        sampler=dict(s.get("sampler") or {"name": "tpe"}),
        pruner=dict(s.get("pruner") or {"name": "median"}),
        n_trials=n_trials,
        storage=cfg.get("storage"),
        threads=max(1, (os.cpu_count() or 1) // workers)
        if cfg["launcher"] == "local" and workers > 1
        else None,
    )
    check_storage(search.storage)
    distributions(search.params)  # every leaf is checked before anything starts
    _made("sampler", search.sampler, SAMPLERS)
    _made("pruner", search.pruner, PRUNERS)
    return search


# -- the search space -----------------------------------------------------------------------
def flatten_space(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{optimizer: {lr: {low: .., high: ..}}}`` -> ``{"optimizer.lr": {low: .., high: ..}}``:
    a leaf is a mapping with ``choices`` or ``low``/``high``; its path is the train.py key."""
    if not tree and not prefix:
        raise ConfigError("search.params is empty: name at least one key to search over.")
    out: dict[str, Any] = {}
    for key, node in tree.items():
        path = f"{prefix}{key}"
        if not isinstance(node, dict):
            raise ConfigError(
                f"search.params.{path}={node!r} is not a distribution: use {{low: ..., high: "
                "...}} or {choices: [...]}."
            )
        if "choices" in node or "low" in node or "high" in node:
            out[path] = dict(node)
        else:
            out.update(flatten_space(node, f"{path}."))
    return out


def distributions(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna distributions of the flattened space; a bad leaf is a one-line ConfigError."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out = {}
    for key, leaf in params.items():
        where = f"search.params.{key}"
        if "choices" in leaf:
            choices = leaf["choices"]
            if set(leaf) != {"choices"} or not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}: choices must be a non-empty list, alone.")
            out[key] = CategoricalDistribution(choices)
            continue
        unknown = set(leaf) - {"low", "high", "log", "step"}
        low, high = leaf.get("low"), leaf.get("high")
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
        if unknown or not numbers or not low < high:
            raise ConfigError(
                f"{where}={leaf!r}: expected {{low: a, high: b[, log: true][, step: s]}} with "
                "a < b" + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "") + "."
            )
        log, step = bool(leaf.get("log", False)), leaf.get("step")
        if log and low <= 0:
            raise ConfigError(f"{where}: log: true needs low > 0 (got {low}).")
        if log and step is not None:
            raise ConfigError(f"{where}: log and step cannot be combined (Optuna).")
        if isinstance(low, int) and isinstance(high, int) and not isinstance(step, float):
            out[key] = IntDistribution(low, high, log=log, step=step or 1)
        else:
            out[key] = FloatDistribution(float(low), float(high), log=log, step=step)
    return out


def overrides_of(params: dict[str, Any]) -> list[str]:
    """A trial's sampled values as train.py overrides (``model.batch_norm=true``)."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if value is None:
            return "null"
        return repr(value) if isinstance(value, float) else str(value)

    return [f"{key}={text(value)}" for key, value in params.items()]


# -- sampler, pruner and storage: chosen by name, never by a config's _target_ ---------------
def _made(kind: str, spec: dict[str, Any], names: tuple[str, ...], slot: int = 0) -> Any:
    import optuna

    args = dict(spec)
    name = args.pop("name", None)
    if name not in names:
        raise ConfigError(f"search.{kind}.name={name!r} is not one of {', '.join(names)}.")
    if kind == "sampler" and args.get("seed") is not None:
        args["seed"] = int(args["seed"]) + slot  # samplers of one study must not draw alike
    cls = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "median": optuna.pruners.MedianPruner,
        "halving": optuna.pruners.SuccessiveHalvingPruner,
        "none": optuna.pruners.NopPruner,
    }[name]
    try:
        return cls(**args)
    except TypeError as e:  # an argument the class does not take
        raise ConfigError(f"search.{kind} ({name}): {e}.") from None


def check_storage(url: str | None) -> None:
    """Refuse a storage whose file is a folder, or an SQLite file in a folder that does not
    exist, before any trial starts (the database drivers fail deep inside with their own
    exceptions). A journal file's folder is created, as the search folder is."""
    if not url:
        return
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else None
    if scheme not in (None, "sqlite"):
        return  # a database server: its own client says what is wrong
    path = Path(url.split(":///", 1)[1]) if scheme else Path(url)
    if scheme and str(path) in ("", ":memory:"):
        return
    if path.is_dir():
        raise ConfigError(
            f"storage={url!r} is a folder; give a file in it (e.g. storage={path}/study.journal, "
            f"or sqlite:///{path}/study.db)."
        )
    if scheme and not path.parent.is_dir():
        raise ConfigError(
            f"storage={url!r}: the folder {path.parent} does not exist. Create it "
            f"(mkdir -p {path.parent}) or give an SQLite file in an existing folder."
        )


def storage(search: Search) -> Any:
    """The study's storage: a journal file in the search folder unless a URL is given."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    url = search.storage
    if url and "://" in url:
        scheme = url.split("://", 1)[0].split("+", 1)[0]
        if scheme not in RDB_SCHEMES:
            raise ConfigError(
                f"storage={url!r}: unknown scheme {scheme!r}; use a journal file path, or "
                f"{', '.join(s + '://...' for s in RDB_SCHEMES)}."
            )
        # several processes write to one SQLite file: wait for its lock instead of failing
        kwargs = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    path = Path(url) if url else Path(search.dir) / STUDY_JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def open_study(search: Search) -> Any:
    """Create the study, or open it (another worker's, or an earlier run's)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # cnnlab prints its own lines
    try:
        return optuna.create_study(
            study_name=search.name,
            storage=storage(search),
            direction=search.direction,
            pruner=_made("pruner", search.pruner, PRUNERS),
            load_if_exists=True,
        )
    except ValueError as e:  # e.g. the stored study optimises the other direction
        raise ConfigError(f"study {search.name!r} in {search.storage or search.dir}: {e}") from None


def join_study(search: Search) -> Any:
    """The study as a worker draws from it: with a sampler seeded apart from every sampler
    that joined the study before.

    Each joining sampler takes the next slot, counted in the study itself under the lock
    beside the results, and draws with ``seed + slot``: two workers of one search, two searches
    started side by side on one study, or a re-run continuing it never draw the same trials.
    The first sampler of a fresh study draws with ``seed`` itself, so one search repeats.
    """
    with ask_lock(search):
        study = open_study(search)
        slot = int(study.user_attrs.get(SAMPLER_SLOTS, 0))
        study.set_user_attr(SAMPLER_SLOTS, slot + 1)
    study.sampler = _made("sampler", search.sampler, SAMPLERS, slot)
    return study


# the count of samplers that have joined a study (a user attribute of the study)
SAMPLER_SLOTS = "cnnlab_sampler_slots"


def ask_lock(search: Search) -> FileLock:
    """The lock beside the results under which workers join the study and ask for trials."""
    Path(search.dir).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(search.dir) / "ask.lock"))


# -- one trial --------------------------------------------------------------------------------
class Pruning(pl.Callback):
    """Reports the metric after every validation; stops the run when the pruner says so."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.values: list[float] = []
        self.pruned_at: int | None = None  # the epoch after whose validation it stopped

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        # a diverged trial reports the worst value, so that it is pruned, not kept
        if not math.isfinite(value):
            value = -math.inf if self.trial.study.direction.name == "MAXIMIZE" else math.inf
        self.values.append(value)
        self.trial.report(value, trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True

    def best(self, maximize: bool) -> float | None:
        return (max if maximize else min)(self.values) if self.values else None


def trial_dir(search: Search, number: int) -> Path:
    return Path(search.dir) / f"trial_{number:03d}"


def trial_config(search: Search, trial: Any) -> Any:
    """The train config of one trial: the search's overrides, then the trial's parameters. In
    MLflow (``logger=mlflow``) the trials are children of one parent run, the search's folder."""
    from omegaconf import open_dict

    from cnnlab.config import compose_config

    extra = [f"threads={search.threads}"] if search.threads else []
    cfg = compose_config(
        "train",
        [*search.train, *overrides_of(trial.params), "test=false", *extra],
        output_dir=trial_dir(search, trial.number),
    )
    if "mlflow" in (cfg.get("logger") or {}):
        with open_dict(cfg):
            cfg.logger.mlflow.parent_dir = str(Path(search.dir).resolve())
    return cfg


def run_trial(search: Search, trial: Any) -> tuple[float | None, bool]:
    """Train one trial; its value (the best reported metric) and whether it was pruned."""
    from cnnlab.record import read_metrics, write_metrics
    from cnnlab.run import train

    out = trial_dir(search, trial.number)
    cfg = trial_config(search, trial)
    pruning = Pruning(trial, search.metric)
    train(cfg, callbacks=[pruning])
    if pruning.pruned_at is not None:  # the run record says so too (compare_runs shows it)
        metrics = read_metrics(out) or {}
        write_metrics(out, {**metrics, "status": "pruned", "pruned_at_epoch": pruning.pruned_at})
    return pruning.best(search.direction == "maximize"), pruning.pruned_at is not None


def work(search: Search, worker: int = 0, announce: bool = False) -> int:
    """A worker: take trials from the shared study until it holds ``n_trials``; returns how
    many this worker ran. Asking for a trial and counting the study happen under one file
    lock beside the results, so that N workers stop at exactly ``n_trials``."""
    from optuna.trial import TrialState

    study = join_study(search)
    fail_orphans(study)
    distributions_ = distributions(search.params)
    lock = ask_lock(search)
    # trials enqueued by hand (study.enqueue_trial) wait to be asked for: they are not yet run
    started = tuple(s for s in TrialState if s != TrialState.WAITING)
    ran = 0
    while True:
        with lock:
            if len(study.get_trials(deepcopy=False, states=started)) >= search.n_trials:
                return ran
            trial = study.ask(distributions_)
            attrs = {"host": socket.gethostname(), "pid": os.getpid(), "worker": worker}
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
        ran += 1
        try:
            value, pruned = run_trial(search, trial)
        except CnnlabError as e:  # this trial's values are wrong; the next ones may be fine
            trial.set_user_attr("error", str(e).splitlines()[0] if str(e) else type(e).__name__)
            study.tell(trial, state=TrialState.FAIL)
        except BaseException as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}".splitlines()[0])
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            if pruned:
                study.tell(trial, state=TrialState.PRUNED)
            elif value is None:
                trial.set_user_attr("error", f"{search.metric} was never reported")
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
        if announce:
            print(progress_line(study, study.trials[trial.number], search), flush=True)


def fail_orphans(study: Any) -> list[int]:
    """Trials left RUNNING by a dead process on this host (a killed worker) are failed, so the
    table tells the truth; a live worker's trials, or another host's, are left alone."""
    import psutil
    from optuna.trial import TrialState

    host, failed = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") == host and isinstance(pid, int) and not psutil.pid_exists(pid):
            study.tell(t.number, state=TrialState.FAIL)
            failed.append(t.number)
    return failed


# -- running the workers ----------------------------------------------------------------------
def launch(
    search: Search, workers: int, launcher: str, slurm: dict[str, Any], poll_s: float = 2.0
) -> list[str]:
    """Run the workers and wait, printing each trial as it ends; returns one line per worker
    that failed. One local worker runs here; more, or any on SLURM, run through submitit, whose
    LocalExecutor starts the very job a SLURM array would run as local processes."""
    if workers == 1 and launcher == "local":
        work(search, 0, announce=True)
        return []
    executor = make_executor(search, workers, launcher, slurm)
    jobs = executor.map_array(work, [search] * workers, list(range(workers)))
    study, seen = open_study(search), set()
    try:
        while not all(job.done() for job in jobs):
            fail_orphans(study)  # a killed worker's trial is failed as soon as it is seen
            _announce(study, search, seen)
            time.sleep(poll_s)
    except KeyboardInterrupt:  # the workers go too: nothing runs on behind the user's back
        for job in jobs:
            job.cancel(check=False)
        raise
    fail_orphans(study)
    _announce(study, search, seen)
    failures = []
    for k, job in enumerate(jobs):
        error = job.exception()
        if error is not None:
            lines = [line for line in str(error).splitlines() if line.strip(" -")]
            cause = next((ln for ln in reversed(lines) if "Error" in ln), lines[0] if lines else "")
            failures.append(
                f"worker {k} (job {job.job_id}) failed: {cause.strip()} (log: {job.paths.stderr})"
            )
    return failures


def make_executor(search: Search, workers: int, launcher: str, slurm: dict[str, Any]) -> Any:
    """submitit's executor for the workers: local processes, or a SLURM array."""
    import submitit

    cluster = "local" if launcher == "local" else "slurm"
    executor = submitit.AutoExecutor(folder=Path(search.dir) / "workers", cluster=cluster)
    if cluster == "local":  # submitit kills a job at its time limit: a local search has none
        executor.update_parameters(timeout_min=365 * 24 * 60)
    else:
        executor.update_parameters(
            timeout_min=int(slurm.get("timeout_min") or 24 * 60),
            cpus_per_task=slurm.get("cpus_per_task"),
            gpus_per_node=slurm.get("gpus_per_node"),
            mem_gb=slurm.get("mem_gb"),
            slurm_array_parallelism=workers,
            **({"slurm_partition": slurm["partition"]} if slurm.get("partition") else {}),
        )
    return executor


def _announce(study: Any, search: Search, seen: set[int]) -> None:
    for t in study.get_trials(deepcopy=False):
        if t.state.is_finished() and t.number not in seen:
            seen.add(t.number)
            print(progress_line(study, t, search), flush=True)


# -- what a search tells --------------------------------------------------------------------
def _outcome(t: Any, metric: str) -> str:
    from optuna.trial import TrialState

    if t.state == TrialState.COMPLETE:
        return f"{metric} {t.value:.4f}"
    if t.state == TrialState.PRUNED:
        step = max(t.intermediate_values, default=None)
        last = f" ({metric} {t.intermediate_values[step]:.4f})" if step is not None else ""
        return f"pruned after epoch {step}{last}"
    if t.state == TrialState.FAIL:
        return f"failed: {t.user_attrs.get('error', 'its worker stopped')}"
    return t.state.name.lower()


def _best(study: Any) -> Any:
    try:
        return study.best_trial
    except ValueError:  # no trial has completed yet
        return None


def progress_line(study: Any, t: Any, search: Search) -> str:
    done = sum(x.state.is_finished() for x in study.get_trials(deepcopy=False))
    best = _best(study)
    best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no trial completed"
    return (
        f"trial {t.number}: {_outcome(t, search.metric)} | {best_text} | "
        f"{done} of {search.n_trials} done"
    )


def trials_table(study: Any, search: Search) -> tuple[list[str], list[list[Any]]]:
    """One row per trial: number, state (pruned trials marked with their epoch), value, the
    epochs it reported, its parameters and its run folder."""
    from optuna.trial import TrialState

    keys = list(search.params)
    header = ["trial", "state", search.metric, "epochs", *keys, "run"]
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = t.state.name.lower()
        if t.state == TrialState.PRUNED:
            state = f"pruned @ {max(t.intermediate_values, default='?')}"
        best = t.value
        if best is None and t.intermediate_values:
            values = t.intermediate_values.values()
            best = max(values) if search.direction == "maximize" else min(values)
        rows.append(
            [
                t.number,
                state,
                best,
                len(t.intermediate_values),
                *(t.params.get(k) for k in keys),
                trial_dir(search, t.number).name,
            ]
        )
    return header, rows


def best_trial(study: Any, search: Search) -> dict[str, Any] | None:
    """The best completed trial and the command that trains (and tests) it."""
    best = _best(study)
    if best is None:
        return None
    chosen = overrides_of({k: best.params[k] for k in search.params if k in best.params})
    return {
        "trial": best.number,
        search.metric: best.value,
        "overrides": chosen,
        "command": " ".join(["python train.py", *search.train, *chosen]),
        "run": str(trial_dir(search, best.number)),
    }


def write_report(study: Any, search: Search) -> str:
    """trials.md, trials.csv and best.json beside the trials; returns what to print."""
    import json

    from cnnlab.compare import to_csv, to_markdown
    from cnnlab.files import atomic_path

    folder = Path(search.dir)
    header, rows = trials_table(study, search)

    def cell(i: int, v: Any) -> Any:  # the metric to 4 places, parameters to 3 digits
        return (f"{v:.4f}" if i == 2 else f"{v:.3g}") if isinstance(v, float) else v

    shown = [[cell(i, v) for i, v in enumerate(row)] for row in rows]
    markdown = to_markdown(header, shown)
    with atomic_path(folder / "trials.md") as tmp:
        tmp.write_text(markdown + "\n")
    to_csv(header, rows, folder / "trials.csv")
    best = best_trial(study, search)
    with atomic_path(folder / "best.json") as tmp:
        tmp.write_text(json.dumps(best, indent=2) + "\n")
    lines = [markdown, ""]
    if best:
        lines += [
            f"Best: trial {best['trial']}, {search.metric} {best[search.metric]:.4f}",
            f"Train and test it: {best['command']}",
        ]
    else:
        lines.append("No trial completed: see the failed trials' errors above.")
    lines.append(f"Tables: {folder / 'trials.md'}, {folder / 'trials.csv'}, {folder / 'best.json'}")
    return "\n".join(lines)
