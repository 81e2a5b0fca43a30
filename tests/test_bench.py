"""The benchmark measures for real: throughput from timed steps, memory from the OS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support import CHECKOUT, subprocess_env
from tests.support.synthetic import write_mnist_like
from tools.bench import Result, report


@pytest.mark.parametrize("variant", ["cnnlab", "torchvision"])
def test_one_measurement_in_a_fresh_process(variant, data_dir):
    write_mnist_like(
        data_dir, "mnist", n_train=6000, n_test=500
    )  # room for 5,000 validation images
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            variant,
            "lenet",
            "mnist",
            str(data_dir),
            "4",
            "2",
            "32",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=CHECKOUT,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["variant"] == variant and m["images_per_s"] > 0
    assert m["peak_rss_mb"] > 200  # getrusage of a process that imported torch: real, not estimated
    assert 0 < m["first_step_s"] < 120


def test_report_gives_ratios_against_raw_and_against_cnnlab():
    results = [
        Result(
            "raw", "lenet", "mnist", [1000.0, 1200, 1100], [5, 5, 5], [900, 900, 900], [0, 0, 0]
        ),
        Result(
            "cnnlab", "lenet", "mnist", [990.0, 1000, 1010], [5, 5, 5], [800, 800, 800], [0, 0, 0]
        ),
        Result(
            "torchvision",
            "lenet",
            "mnist",
            [500.0, 480, 520],
            [5, 5, 5],
            [700, 700, 700],
            [400, 400, 400],
        ),
    ]
    table = report(results, "mnist", workers=2)
    rows = {line.split("|")[2].strip(): line for line in table.splitlines()[2:]}
    assert "| 1,100 | 1.00 | 0.91 |" in rows["raw"]  # medians: cnnlab 1000 / raw 1100
    assert "| 500 | 0.45 | 2.00 |" in rows["torchvision"]
    assert "700 + 400/worker" in rows["torchvision"]


def test_whole_epoch_runs_the_real_train_command_and_its_ratios_come_from_measured_times(
    tmp_path, monkeypatch
):
    from cnnlab.data.specs import get_spec
    from tools import runs

    data = tmp_path / "data"
    write_mnist_like(data, "fashion_mnist", n_train=1200, n_test=300)
    variants = runs.whole_epoch_variants(
        data, get_spec("fashion_mnist").target_dir(data), val=200, workers=0
    )
    commands, real = [], runs.run_timed
    monkeypatch.setattr(runs, "run_timed", lambda cmd: commands.append(cmd) or real(cmd))
    scratch = tmp_path / "scratch"
    runs.measure_whole_epochs(variants, 1, 2, repeats=1, scratch=scratch, log=lambda *_: None)

    # train.py itself, in processes of its own, with no callback or logger switched off
    ours = [c for c in commands if c[1] == str(runs.CHECKOUT / "train.py")]
    assert len(ours) == 2 and all(c[0] == sys.executable for c in ours)
    assert not any("callbacks" in arg or "logger" in arg for c in ours for arg in c)
    records = [json.loads(p.read_text()) for p in scratch.glob("*/run/metrics.json")]
    assert [r["epochs"] for r in sorted(records, key=lambda r: r["epochs"])] == [1, 2]
    logged = {p.parent for p in scratch.glob("*/run/events.out.tfevents.*")}
    assert len(logged) == 2 and len(list(scratch.glob("*/run/checkpoints/last.ckpt"))) == 2
    # the raw loop gets the memory format train.py's channels_last=auto chose for this run
    stored = torch.load(next(scratch.glob("*/run/checkpoints/last.ckpt")), weights_only=True)
    assert stored["hyper_parameters"]["channels_last"] is True
    assert all("--channels-last" in c for c in commands if "tools.raw_loop" in c)
    train, raw = variants
    for r in records:  # the process wall time holds the run's own (and its imports)
        assert train.walls[r["epochs"]][0] > r["wall_time_s"] > 0

    table = runs.whole_epoch_table(variants, 1, 2)
    raw_epoch = raw.walls[2][0] - raw.walls[1][0]
    train_epoch = train.walls[2][0] - train.walls[1][0]
    row = next(line for line in table.splitlines() if line.startswith("| raw loop |"))
    ratio = raw_epoch / train_epoch
    assert f"| {raw_epoch:.2f} | {ratio:.2f}x | {ratio:.2f} |" in row  # one repeat: its own
    assert f"| {train.rss[0] / raw.rss[0]:.2f}x |" in row
    # each its own process's peak: both imported torch (which of the two holds more depends
    # on the data: on this tiny set the raw loop may, since train.py defers what it can)
    assert 300 < raw.rss[0] != train.rss[0] > 300
    assert 0.3 < raw.acc[0] <= 1 and 0.3 < train.acc[0] <= 1  # both really trained


def test_whole_epoch_table_pairs_each_repeat_and_takes_medians_of_epochs():
    from tools.runs import Variant, whole_epoch_table

    def variant(name, lo, hi):
        return Variant(name, None, None, {1: lo, 4: hi}, [900.0] * 3, [0.88] * 3)

    ours = variant("train.py", [10.0, 10.0, 10.0], [22.0, 25.0, 19.0])  # 4.0, 5.0, 3.0 s
    raw = variant("raw loop", [9.0, 9.0, 9.0], [21.0, 18.0, 21.0])  # 4.0, 3.0, 4.0 s
    table = whole_epoch_table([ours, raw], 1, 4)
    row = next(line for line in table.splitlines() if line.startswith("| raw loop |"))
    # medians 4.0 vs 4.0; each repeat on its own: 4/4, 3/5, 4/3
    assert row == "| raw loop | 4.00 | 1.00x | 1.00, 0.60, 1.33 | 900 | 1.00x | 0.8800 |"
    assert "| train.py | 4.00 |  |  | 900 |  | 0.8800 |" in table


def test_startup_table_reports_what_the_runs_add_to_the_bare_imports():
    from tools.runs import Startup, startup_table

    table = startup_table(Startup([5.0, 6.0, 5.5], [7.0, 6.0, 6.5], [5.2, 5.9, 5.8]))
    assert "| 5.50 | |" in table  # medians
    assert "first training step | 5.80 | +0.30 |" in table
    assert "whole command | 6.50 | +1.00 |" in table
    faster = startup_table(Startup([5.0], [4.0], [3.5]))  # a run can start before the floor
    assert "first training step | 3.50 | -1.50 |" in faster


def test_the_cost_rows_run_the_model_and_data_they_name():
    from tools.runs import COSTS, train_cmd

    for axis, _, extra in COSTS:
        cmd = train_cmd(Path("d"), Path("r"), "trainer.max_epochs=1", *extra)
        groups = [a.split("=")[0] for a in cmd if a.split("=")[0] in ("model", "data")]
        assert sorted(groups) == ["data", "model"], (axis, cmd)  # each chosen exactly once
        if "data=cifar10" in extra:
            assert "data=cifar10" in cmd and "data=fashion_mnist" not in cmd
        if "-m" in extra:
            assert cmd[2] == "-m"  # a flag before the overrides, or argparse refuses them
