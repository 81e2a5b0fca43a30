"""Whole processes timed from outside: what a user waits for, not what a step costs.

Every measurement is a fresh process started the way a user starts it (``python train.py
...``), timed from spawn to exit, its peak RSS read from the kernel's accounting of that
process (``os.wait4``). Variants alternate within each repeat and medians are reported, so
drift on a noisy machine hits all alike.

Whole epoch: T(hi epochs) - T(lo epochs) over (hi - lo), of the same command, so start-up,
data loading, testing and final figures cancel and what remains is an epoch as the user
lives it: training, validation, per-epoch diagnostics, checkpoints, logging, progress bar.

  train.py     ``python train.py model=lenet data=fashion_mnist`` with its defaults
  raw loop     ``tools.raw_loop``: the same epochs in a bare PyTorch loop
  torchvision  the same with torchvision's per-sample pipeline and a DataLoader

Start-up: a trivial run (one batch of train, validation and test) against ``python -c
"import torch, pytorch_lightning"``, the floor any Lightning program pays.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl

from tools import CHECKOUT

PYTHON = sys.executable
BARE_IMPORTS = "import torch, pytorch_lightning"
DEFAULTS = {"model": "lenet", "data": "fashion_mnist"}


@dataclass
class Timed:
    """One process: wall seconds from spawn to exit, its peak RSS, what it printed."""

    wall_s: float
    peak_rss_mb: float
    stdout: str
    started: float  # Unix time of the spawn


# Runs a command as its own child and reports that child's wall time and peak RSS. A small
# process in between matters: Linux starts a forked child's ru_maxrss at its parent's RSS and
# keeps it across exec, so children of this (torch-importing) process would all report ~1 GB.
_WRAPPER = """
import json, os, subprocess, sys, time
started, t0 = time.time(), time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    rc = os.waitstatus_to_exitcode(status)
    json.dump({"wall_s": wall, "maxrss_kb": usage.ru_maxrss, "rc": rc, "started": started}, f)
"""


def run_timed(cmd: list[str], cwd: Path = CHECKOUT) -> Timed:
    """Run ``cmd`` to completion: its wall time from spawn to exit and its own peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        report, out, err = (Path(tmp) / n for n in ("report.json", "stdout", "stderr"))
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        with open(out, "w") as o, open(err, "w") as e:
            subprocess.run(
                [PYTHON, "-c", _WRAPPER, str(report), *cmd], cwd=cwd, stdout=o, stderr=e, env=env
            )
        if not report.exists():
            raise RuntimeError(f"could not time {' '.join(cmd)}:\n{err.read_text()[-3000:]}")
        r = json.loads(report.read_text())
        if r["rc"] != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r['rc']}):\n{err.read_text()[-3000:]}")
        return Timed(r["wall_s"], r["maxrss_kb"] / 1024, out.read_text(), r["started"])


def train_cmd(data_dir: Path, run_dir: Path, *overrides: str) -> list[str]:
    """The real command: train.py with its defaults, LeNet-5 on Fashion-MNIST in ``data_dir``
    unless ``overrides`` choose another model or dataset."""
    chosen = {o.split("=")[0] for o in overrides}
    flags = [o for o in overrides if o.startswith("-")]  # -m: before the overrides
    return [
        PYTHON,
        str(CHECKOUT / "train.py"),
        *flags,
        *(f"{group}={name}" for group, name in DEFAULTS.items() if group not in chosen),
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        *(o for o in overrides if not o.startswith("-")),
    ]


def raw_cmd(folder: Path, epochs: int, val: int, pipeline: str, workers: int) -> list[str]:
    # channels-last as train.py's channels_last=auto chooses for LeNet-5 on a CPU
    # (tests/test_bench.py checks that it does), so only the framework or the pipeline differs
    return [
        PYTHON,
        "-m",
        "tools.raw_loop",
        str(folder),
        str(epochs),
        f"--pipeline={pipeline}",
        f"--workers={workers}",
        f"--val={val}",
        "--channels-last",
    ]


@dataclass
class Variant:
    """One way of training: its command for N epochs, and how to read its final accuracy."""

    name: str
    cmd: Callable[[int, Path], list[str]]  # (epochs, a fresh scratch dir) -> command
    accuracy: Callable[[Timed, Path], float]
    walls: dict[int, list[float]] = field(default_factory=dict)  # epochs -> wall times
    rss: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)

    def epochs_s(self, lo: int, hi: int) -> list[float]:
        """Seconds per epoch in each repeat: (T(hi) - T(lo)) / (hi - lo)."""
        pairs = zip(self.walls[lo], self.walls[hi], strict=True)
        return [(b - a) / (hi - lo) for a, b in pairs]

    def epoch_s(self, lo: int, hi: int) -> float:
        """Median seconds per epoch over the repeats."""
        return statistics.median(self.epochs_s(lo, hi))


def whole_epoch_variants(
    data_dir: Path, folder: Path, val: int, workers: int, names=("train.py", "raw loop")
) -> list[Variant]:
    def train_acc(t: Timed, scratch: Path) -> float:
        return json.loads((scratch / "run" / "metrics.json").read_text())["val/acc"]

    def raw_acc(t: Timed, scratch: Path) -> float:
        return json.loads(t.stdout.strip().splitlines()[-1])["val_acc"]

    every = {
        "train.py": Variant(
            "train.py",
            lambda n, s: train_cmd(
                data_dir, s / "run", f"trainer.max_epochs={n}", f"data.val_size={val}"
            ),
            train_acc,
        ),
        "raw loop": Variant("raw loop", lambda n, s: raw_cmd(folder, n, val, "tensor", 0), raw_acc),
        "torchvision": Variant(
            "torchvision",
            lambda n, s: raw_cmd(folder, n, val, "torchvision", workers),
            raw_acc,
        ),
    }
    return [every[n] for n in names]


def measure_whole_epochs(
    variants: list[Variant], lo: int, hi: int, repeats: int, scratch: Path, log=print
) -> list[Variant]:
    """Each variant at ``lo`` and ``hi`` epochs, ``repeats`` times, order rotated per repeat."""
    for r in range(repeats):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            for n in (lo, hi):
                where = scratch / uuid.uuid4().hex[:8]
                where.mkdir(parents=True)
                t = run_timed(v.cmd(n, where))
                v.walls.setdefault(n, []).append(t.wall_s)
                if n == hi:
                    v.rss.append(t.peak_rss_mb)
                    v.acc.append(v.accuracy(t, where))
                log(
                    f"  repeat {r + 1}/{repeats} {v.name:12s} {n} epoch(s): {t.wall_s:6.1f} s, "
                    f"peak {t.peak_rss_mb:.0f} MB"
                )
    return variants


def whole_epoch_table(variants: list[Variant], lo: int, hi: int) -> str:
    """Medians, and the speed ratio of each repeat on its own: a repeat runs the variants
    one after another, minutes apart at most, so its ratio shows how far machine drift moves
    the median's."""
    ours = next(v for v in variants if v.name == "train.py")
    mine, own_repeats = ours.epoch_s(lo, hi), ours.epochs_s(lo, hi)
    rows = [
        f"| variant | epoch (s) | train.py speed vs this | each repeat | peak RSS (MB) "
        f"| train.py RSS vs this | val acc after {hi} |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        epoch, rss = v.epoch_s(lo, hi), statistics.median(v.rss)
        speed = each = memory = ""
        if v is not ours:
            speed = f"{epoch / mine:.2f}x"
            paired = zip(v.epochs_s(lo, hi), own_repeats, strict=True)
            each = ", ".join(f"{theirs / own:.2f}" for theirs, own in paired)
            memory = f"{statistics.median(ours.rss) / rss:.2f}x"
        rows.append(
            f"| {v.name} | {epoch:.2f} | {speed} | {each} | {rss:.0f} | {memory} "
            f"| {statistics.median(v.acc):.4f} |"
        )
    return "\n".join(rows)


class FirstStep(pl.Callback):
    """Records when the first training batch starts (added to a run with ``+callbacks``)."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if not self.path.exists():
            self.path.write_text(str(time.time()))


@dataclass
class Startup:
    imports: list[float] = field(default_factory=list)
    trivial: list[float] = field(default_factory=list)
    first_step: list[float] = field(default_factory=list)


def measure_startup(data_dir: Path, repeats: int, scratch: Path, log=print) -> Startup:
    """Bare imports vs a trivial train.py run (one batch each of train, val, test)."""
    out = Startup()
    for r in range(repeats):
        bare = run_timed([PYTHON, "-c", BARE_IMPORTS])
        where = scratch / uuid.uuid4().hex[:8]
        stamp = where / "first_step"
        cmd = train_cmd(
            data_dir,
            where / "run",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "+callbacks.first_step._target_=tools.runs.FirstStep",
            f"+callbacks.first_step.path={stamp}",
        )
        runs = [bare, run_timed(cmd)] if r % 2 else [run_timed(cmd), bare]
        trivial = runs[1] if r % 2 else runs[0]
        out.imports.append(bare.wall_s)
        out.trivial.append(trivial.wall_s)
        out.first_step.append(float(stamp.read_text()) - trivial.started)
        log(
            f"  repeat {r + 1}/{repeats} bare imports {bare.wall_s:.2f} s, trivial run "
            f"{trivial.wall_s:.2f} s (first step at {out.first_step[-1]:.2f} s)"
        )
    return out


def startup_table(s: Startup) -> str:
    bare = statistics.median(s.imports)
    rows = [
        "| measure | seconds (median) | over the bare imports |",
        "|---|---|---|",
        f'| `python -c "{BARE_IMPORTS}"` | {bare:.2f} | |',
    ]
    for label, values in (
        ("trivial `train.py` run: first training step", s.first_step),
        ("trivial `train.py` run: whole command", s.trivial),
    ):
        m = statistics.median(values)
        rows.append(f"| {label} | {m:.2f} | {m - bare:+.2f} |")
    return "\n".join(rows)


# How whole-run time grows with the work asked for: one axis changed at a time from
# LeNet-5 on Fashion-MNIST for one epoch. Sweeps: 6 one-epoch jobs.
SWEEP_6 = ["-m", "model.dropout=0,0.25,0.5", "model.batch_norm=false,true"]
COSTS: list[tuple[str, str, list[str]]] = [
    *[("epochs", str(n), [f"trainer.max_epochs={n}"]) for n in (1, 2, 4, 8)],
    ("data", "CIFAR-10-shaped (synthetic, 50k 3x32x32)", ["data=cifar10"]),
    ("model", "MLP", ["model=mlp"]),
    ("model", "VGG-11, width 0.25", ["model=vgg11", "model.width=0.25"]),
    ("model", "ResNet-20", ["model=resnet20"]),
    ("sweep", "6 jobs, basic launcher (one after another)", SWEEP_6),
    ("sweep", "6 jobs, parallel launcher (2 at a time)", [*SWEEP_6, "hydra/launcher=parallel"]),
]


def synthetic_cmd(data: str, data_dir: Path, argv: list[str]) -> list[str]:
    """train.py with argv, in a process that first trusts synthetic files' md5 sums (the
    official sums cannot match them; see ``bench.prepare_data``)."""
    return [PYTHON, "-m", "tools.runs", data, str(data_dir), *argv]


def measure_costs(
    data_dir: Path, cifar_dir: Path, scratch: Path, rows=COSTS, log=print
) -> list[tuple[str, str, str, float]]:
    """One whole run per row: (axis, setting, overrides, wall seconds)."""
    out = []
    for axis, setting, extra in rows:
        where = scratch / uuid.uuid4().hex[:8]
        extra = [*extra, f"hydra.sweep.dir={where}/sweep"] if "-m" in extra else extra
        base = ["trainer.max_epochs=1", *extra]
        if axis == "data":
            cmd = synthetic_cmd(
                "cifar10", cifar_dir, train_cmd(cifar_dir, where / "run", *base)[1:]
            )
        else:
            cmd = train_cmd(data_dir, where / "run", *base)
        t = run_timed(cmd)
        shown = " ".join(a for a in extra if not a.startswith("hydra.sweep.dir"))
        out.append((axis, setting, shown, t.wall_s))
        log(f"  {axis:6s} {setting:45s} {t.wall_s:7.1f} s")
    return out


def cost_table(rows: list[tuple[str, str, str, float]]) -> str:
    base = rows[0][3]  # LeNet-5, Fashion-MNIST, 1 epoch
    lines = [
        "| axis | setting | overrides | whole run (s) | vs 1 epoch of LeNet-5 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {axis} | {setting} | `{shown}` | {wall:.1f} | {wall / base:.1f}x |"
        for axis, setting, shown, wall in rows
    ]
    return "\n".join(lines)


def _run_trusting_synthetic(data: str, data_dir: str, argv: list[str]) -> None:
    import runpy

    from tools.bench import _trust_synthetic

    _trust_synthetic(data, Path(data_dir))
    sys.argv = argv
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    _run_trusting_synthetic(sys.argv[1], sys.argv[2], sys.argv[3:])
