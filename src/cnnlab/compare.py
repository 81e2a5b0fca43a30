"""The training log: one table of many runs, built from their ``metrics.json`` files.

Columns are the overrides that differ between the runs (what was changed), then the
results. Runs from different sweeps compare too: an override a run did not set is blank.
Runs that differ only in ``seed`` and/or ``data.fold`` are repeats of one experiment: they
share a row that reports each metric as mean ± std and the number of runs, ``n``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.viz.bar_chart import Bars

METRIC_COLUMNS = ("val/acc", "val/acc_best", "test/acc", "test/loss")
INFO_COLUMNS = ("params", "epochs", "wall_s", "status")
# overrides that say where things are, not what was trained
_IGNORED_PREFIXES = (
    "hydra",
    "paths.",
    "data.data_dir",
    "data.download",
    "sweep",
    "callbacks.progress_bar",
)


@dataclass
class Run:
    path: Path  # the run directory
    metrics: dict[str, Any]

    @property
    def overrides(self) -> dict[str, str]:
        out = {}
        for item in self.metrics.get("overrides", []):
            key, _, value = item.lstrip("+").partition("=")
            if key.startswith("~"):
                key, value = key[1:], "(removed)"
            if not key.startswith(_IGNORED_PREFIXES):
                out[key] = value
        return out

    @property
    def status(self) -> str:
        status = self.metrics.get("status", "unknown")
        if status == "running" and not _alive(self.metrics):
            return f"stale: process {self.metrics['pid']} ended without a word (killed?)"
        if status == "failed" and self.metrics.get("error"):
            error = self.metrics["error"].strip().splitlines()[0]
            return f"failed: {error[:80]}{'...' if len(error) > 80 else ''}"
        return status


# runs that differ only in these are repeats of one experiment (sweep=seeds, sweep=kfold)
REPEAT_KEYS = ("seed", "data.fold")


@dataclass(frozen=True)
class Stat:
    """A column over a group of repeats: mean and sample standard deviation (n - 1) of the
    ``n`` runs that have a value, out of ``of`` runs in the group."""

    mean: float
    std: float | None  # None for a single value
    n: int
    of: int

    def __format__(self, spec: str) -> str:
        text = format(self.mean, spec)
        if self.std is not None:
            text += f" ± {format(self.std, spec)}"
        return text if self.n == self.of else f"{text} (n={self.n})"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Group:
    """Runs whose overrides are the same but for ``REPEAT_KEYS``: one row of the table."""

    runs: list[Run]
    over: tuple[str, ...] = REPEAT_KEYS

    @property
    def overrides(self) -> dict[str, str]:
        if len(self.runs) == 1:  # a run on its own shows its seed or fold, as it always did
            return self.runs[0].overrides
        return {k: v for k, v in self.runs[0].overrides.items() if k not in self.over}

    def value(self, key: str, always_stat: bool = False) -> Any:
        """The column ``key`` of the group: a run's own value, the value all runs that have
        one share, or a ``Stat`` (always for metrics: one that happens to agree is still a
        measurement, with a std of 0)."""
        values = [run.metrics.get(key) for run in self.runs]
        if len(values) == 1:
            return values[0]
        numbers = [v for v in values if _number(v)]
        if not numbers:
            return None
        if not always_stat and len(set(numbers)) == 1:  # params, epochs: one value
            return numbers[0]
        std = statistics.stdev(numbers) if len(numbers) > 1 else None
        return Stat(statistics.fmean(numbers), std, len(numbers), len(values))

    @property
    def status(self) -> str:
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{n} {status}" for status, n in counts.items())


def group_runs(runs: Sequence[Run], over: Sequence[str] = REPEAT_KEYS) -> list[Group]:
    """Runs grouped by their overrides other than ``over``, in first-seen order."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        key = tuple(sorted((k, v) for k, v in run.overrides.items() if k not in over))
        groups.setdefault(key, Group([], tuple(over))).runs.append(run)
    return list(groups.values())


def _alive(metrics: dict[str, Any]) -> bool:
    """Whether the process that wrote a ``running`` record still runs (True when unknowable:
    another host, or a record without a PID)."""
    import socket

    import psutil

    pid = metrics.get("pid")
    if not isinstance(pid, int) or metrics.get("host") != socket.gethostname():
        return True
    return psutil.pid_exists(pid)


# what the table reads from a record, and the types it can show
_TEXT_KEYS = ("status", "error", "host")
_NUMBER_KEYS = (*METRIC_COLUMNS, "trainable_params", "epochs", "wall_time_s", "pid")


def odd_record(metrics: Any) -> str | None:
    """What makes ``metrics`` no run record the table can show (None when it is one): a record
    is data from disk, and an edited or foreign file must not stop the table."""
    if not isinstance(metrics, dict):
        return f"holds a {type(metrics).__name__}, not a run"
    for key in _TEXT_KEYS:
        if metrics.get(key) is not None and not isinstance(metrics[key], str):
            return f"has a {type(metrics[key]).__name__} for {key}, not text"
    for key in _NUMBER_KEYS:
        value = metrics.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"has a {type(value).__name__} for {key}, not a number"
    overrides = metrics.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        return "has overrides that are not a list of key=value texts"
    return None


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run under ``paths`` (run directories, sweep directories, or metrics.json files)."""
    found: dict[Path, Run] = {}
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise CnnlabError(
                f"{p} does not exist (give run or sweep directories, e.g. outputs/sweeps/dropout)."
            )
        files = [p] if p.is_file() else sorted(p.rglob("metrics.json"))
        for f in files:
            try:
                metrics = json.loads(f.read_text())
            except (OSError, ValueError) as e:  # ValueError: not JSON, or not even text
                metrics = {"status": "failed", "error": f"unreadable metrics.json: {e}"}
            if problem := odd_record(metrics):  # one bad run is one row, never the end
                metrics = {"status": "failed", "error": f"metrics.json {problem}"}
            found[f.parent.resolve()] = Run(f.parent, metrics)
    return without_continued(list(found.values()))


def without_continued(runs: list[Run]) -> list[Run]:
    """Leave out an interrupted run that another run of the list resumed into a folder of its
    own (``ckpt_path=<run>/checkpoints/last.ckpt``): the two are one run, shown as the later.
    They are matched by checkpoint: the one the interrupted record names to resume from
    (``resume_from``) and the one the later record says it resumed (``resumed_from``)."""

    def real(path: Any) -> str | None:
        return os.path.realpath(path) if isinstance(path, str) and path else None

    continued = {real(run.metrics.get("resumed_from")) for run in runs} - {None}
    return [run for run in runs if real(run.metrics.get("resume_from")) not in continued]


def swept_keys(runs: Sequence[Run]) -> list[str]:
    """Override keys whose value is not the same in every run, in first-seen order."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.overrides))
    return [k for k in keys if len({run.overrides.get(k, "") for run in runs}) > 1]


def _sort_key(group: Group, metric: str, descending: bool) -> tuple:
    value = group.value(metric)
    value = value.mean if isinstance(value, Stat) else value
    if not _number(value):
        return (1, 0.0)  # runs without the metric (failed, running) go last
    return (0, -value if descending else value)


def _name(run: Run, roots: Sequence[Path]) -> str:
    for root in roots:
        root = root if root.is_dir() else root.parent
        try:
            rel = run.path.resolve().relative_to(root.resolve())
            return str(rel) if str(rel) != "." else run.path.name
        except ValueError:
            continue
    return str(run.path)


def _group_name(group: Group, roots: Sequence[Path]) -> str:
    """A group's runs' common folder, else the first run's name without its seed or fold."""
    names = [_name(run, roots) for run in group.runs]
    if len(names) == 1:
        return names[0]
    try:
        common = os.path.commonpath(names)
    except ValueError:  # absolute and relative names mixed
        common = ""
    if common:
        return common
    repeat = "|".join(map(re.escape, group.over))
    return re.sub(rf"(^|,)({repeat})=[^,/]*", "", names[0]).strip(",") or names[0]


def _groups(runs: Sequence[Run], group: bool) -> tuple[list[Group], bool]:
    """The table's rows, and whether any of them stands for several runs."""
    groups = group_runs(runs) if group else []
    if any(len(g.runs) > 1 for g in groups):
        return groups, True
    return [Group([run]) for run in runs], False


# (column, metrics.json key)
_INFO_KEYS = (("params", "trainable_params"), ("epochs", "epochs"), ("wall_s", "wall_time_s"))


def table(
    runs: Sequence[Run],
    roots: Sequence[Path] = (),
    sort: str = "test/acc",
    descending: bool = True,
    with_path: bool = False,
    group: bool = True,
) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the comparison table, best first.

    With ``group``, runs that differ only in ``REPEAT_KEYS`` share a row with a column ``n``
    and ``Stat`` (mean ± std) cells; when no two runs are repeats the table is one row per run.
    Cells hold values (numbers stay numbers, for CSV and for code); ``to_markdown`` formats.
    """
    groups, grouped = _groups(runs, group)
    keys = swept_keys(groups)
    # the run's path is only needed when its swept values do not tell it apart
    distinct = len({tuple(g.overrides.get(k, "") for k in keys) for g in groups}) == len(groups)
    named = not (keys and distinct) or with_path
    header = [*(["run"] if named else []), *keys, *(["n"] if grouped else [])]
    header += [*METRIC_COLUMNS, *INFO_COLUMNS]
    rows = []
    for g in sorted(groups, key=lambda g: _sort_key(g, sort, descending)):
        cells = [
            *([_group_name(g, roots)] if named else []),
            *(g.overrides.get(k, "") for k in keys),
        ]
        cells += [len(g.runs)] if grouped else []
        cells += [g.value(c, always_stat=True) for c in METRIC_COLUMNS]
        cells += [g.value(key) for _, key in _INFO_KEYS]
        rows.append([*cells, g.status])
    return header, rows


# how a column's numbers read in the Markdown table (the CSV keeps them as they are)
_FORMATS = {"params": ",", "wall_s": ".1f"}


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return ""
    if isinstance(value, (float, Stat)) or (isinstance(value, int) and spec == ","):
        return format(value, spec)
    return str(value)


def to_markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    text_rows = [
        [_fmt(v, _FORMATS.get(col, ".4f")) for col, v in zip(header, row, strict=True)]
        for row in rows
    ]
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, text_rows)])


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Any]], path: str | Path) -> Path:
    """The table as CSV; a column of means gets its standard deviations beside it (``... std``)."""
    stats = [any(isinstance(row[i], Stat) for row in rows) for i in range(len(header))]

    def cells(row: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for value, split in zip(row, stats, strict=True):
            if not split:
                out.append(value)
            elif isinstance(value, Stat):
                out += [value.mean, value.std]
            else:
                out += [value, None]
        return out

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                c
                for h, split in zip(header, stats, strict=True)
                for c in ([h, f"{h} std"] if split else [h])
            ]
        )
        writer.writerows(map(cells, rows))
    return path


def bars(runs: Sequence[Run], metric: str = "test/acc", group: bool = True) -> Bars:
    """The bars of ``metric`` over the rows of ``table(runs, group=group)`` that have it."""
    groups, _ = _groups(runs, group)
    keys = swept_keys(groups)
    done = [g for g in groups if isinstance(g.value(metric), (int, float, Stat))]
    if not done:
        raise CnnlabError(f"No run has {metric}; nothing to plot.")
    done.sort(key=lambda g: tuple(g.overrides.get(k, "") for k in keys))
    labels = [_bar_label(g, keys) for g in done]
    stats = [g.value(metric) for g in done]
    repeats = any(len(g.runs) > 1 for g in done)
    return Bars(
        metric=metric,
        labels=[
            f"{lb} (n={len(g.runs)})" if len(g.runs) > 1 else lb
            for lb, g in zip(labels, done, strict=True)
        ],
        values=[v.mean if isinstance(v, Stat) else v for v in stats],
        errors=[(v.std or 0.0) if isinstance(v, Stat) else 0.0 for v in stats],
        colour_by=keys[0] if keys else None,
        colours=[g.overrides.get(keys[0], "") if keys else "" for g in done],
        title=f"{metric}: mean ± std over seeds/folds" if repeats else f"{metric} per run",
    )


def _bar_label(group: Group, keys: Sequence[str]) -> str:
    """What tells a bar apart: its swept values (a key it does not set, as a group's seed, is
    left out); with none, a lone run's folder, or what a group of repeats shares (its
    overrides but seeds and folds: the bar is their mean, not any one seed's)."""
    swept = ", ".join(
        f"{k.split('.')[-1]}={group.overrides[k]}" for k in keys if group.overrides.get(k)
    )
    if swept:
        return swept
    if len(group.runs) == 1:
        return group.runs[0].path.name
    return ", ".join(f"{k}={v}" for k, v in group.overrides.items()) or "defaults"


def plot(
    runs: Sequence[Run], path: str | Path, metric: str = "test/acc", group: bool = True
) -> Path:
    """The bar chart of ``bars(runs, metric, group)``, written as a PNG at ``path``."""
    from cnnlab.viz.figures import save, sweep_figure

    return save(sweep_figure(bars(runs, metric, group)), path, dpi=100)
