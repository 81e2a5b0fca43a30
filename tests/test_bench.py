"""The benchmark measures for real: throughput from timed steps, memory from the OS."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab.data.synthetic import write_mnist_like
from cnnlab.dev.bench import Result, report


@pytest.mark.parametrize("variant", ["cnnlab", "torchvision"])
def test_one_measurement_in_a_fresh_process(variant, data_dir):
    write_mnist_like(
        data_dir, "mnist", n_train=6000, n_test=500
    )  # room for 5,000 validation images
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab.dev.bench",
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
