"""The training log: one table of many runs, built from their ``metrics.json`` files.

Columns are the overrides that differ between the runs (what was changed), then the
results. Runs from different sweeps compare too: an override a run did not set is blank.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError

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


def _alive(metrics: dict[str, Any]) -> bool:
    """Whether the process that wrote a ``running`` record still runs (True when unknowable:
    another host, or a record without a PID)."""
    import socket

    import psutil

    pid = metrics.get("pid")
    if not isinstance(pid, int) or metrics.get("host") != socket.gethostname():
        return True
    return psutil.pid_exists(pid)


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
            except (OSError, json.JSONDecodeError) as e:
                metrics = {"status": "failed", "error": f"unreadable metrics.json: {e}"}
            if not isinstance(metrics, dict):  # valid JSON, but not a run record
                kind = type(metrics).__name__
                metrics = {"status": "failed", "error": f"metrics.json holds a {kind}, not a run"}
            found[f.parent.resolve()] = Run(f.parent, metrics)
    return list(found.values())


def swept_keys(runs: Sequence[Run]) -> list[str]:
    """Override keys whose value is not the same in every run, in first-seen order."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.overrides))
    return [k for k in keys if len({run.overrides.get(k, "") for run in runs}) > 1]


def _sort_key(run: Run, metric: str, descending: bool) -> tuple:
    value = run.metrics.get(metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
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


def table(
    runs: Sequence[Run],
    roots: Sequence[Path] = (),
    sort: str = "test/acc",
    descending: bool = True,
    with_path: bool = False,
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, best run first.

    Cells hold values (numbers stay numbers, for CSV and for code); ``to_markdown`` formats.
    """
    keys = swept_keys(runs)
    # the run's path is only needed when its swept values do not tell it apart
    distinct = len({tuple(r.overrides.get(k, "") for k in keys) for r in runs}) == len(runs)
    named = not (keys and distinct) or with_path
    header = [*(["run"] if named else []), *keys, *METRIC_COLUMNS, *INFO_COLUMNS]
    rows = []
    for run in sorted(runs, key=lambda r: _sort_key(r, sort, descending)):
        m = run.metrics
        cells = [*([_name(run, roots)] if named else []), *(run.overrides.get(k, "") for k in keys)]
        cells += [m.get(c) for c in METRIC_COLUMNS]
        cells += [m.get("trainable_params"), m.get("epochs"), m.get("wall_time_s"), run.status]
        rows.append(cells)
    return header, rows


# how a column's numbers read in the Markdown table (the CSV keeps them as they are)
_FORMATS = {"params": ",", "wall_s": ".1f"}


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return ""
    if isinstance(value, float) or (isinstance(value, int) and spec == ","):
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def plot(runs: Sequence[Run], path: str | Path, metric: str = "test/acc") -> Path:
    """A bar per run of ``metric``, labelled by its swept values, coloured by the first swept key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = swept_keys(runs)
    done = [r for r in runs if isinstance(r.metrics.get(metric), (int, float))]
    if not done:
        raise CnnlabError(f"No run has {metric}; nothing to plot.")
    done.sort(key=lambda r: tuple(r.overrides.get(k, "") for k in keys))
    labels = [
        ", ".join(f"{k.split('.')[-1]}={r.overrides.get(k, '')}" for k in keys) or r.path.name
        for r in done
    ]
    groups = [r.overrides.get(keys[0], "") if keys else "" for r in done]
    palette = {g: f"C{i}" for i, g in enumerate(dict.fromkeys(groups))}
    values = [r.metrics[metric] for r in done]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(done) + 2), 4))
    bars = ax.bar(range(len(done)), values, color=[palette[g] for g in groups])
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=8)
    ax.set_xticks(range(len(done)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    low = min(values)
    ax.set_ylim(
        max(0.0, low - (max(values) - low) - 0.02),
        min(1.0, max(values) + 0.02) if max(values) <= 1 else None,
    )
    if keys and len(palette) > 1:  # beside the axes: inside, it can hide a bar's label
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in palette.values()]
        ax.legend(
            handles,
            [f"{keys[0]}={g}" for g in palette],
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0,
        )
    ax.set_title(f"{metric} per run")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
