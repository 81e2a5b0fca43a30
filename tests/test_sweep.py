"""A real Hydra multirun (joblib launcher), the comparison table, and re-running a sweep."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from cnnlab.compare import find_runs, plot, table, to_csv, to_markdown
from cnnlab.config import CONFIG_DIR, PROJECT_ROOT, compose_config
from tests.support.synthetic import write_mnist_like

SWEEP = [
    "model.dropout=0,0.5,1.5",  # 1.5 is invalid: that job fails, the others must not care
    "hydra/launcher=parallel",
    "data=mnist",
    "data.val_size=100",
    "data.batch_size=50",
    "data.download=false",
    "paths.dataset_mirrors=[]",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "callbacks.progress_bar.refresh_rate=0",
]


def run_sweep(sweep_dir: Path, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNNLAB_DATA_DIR": str(data_dir), "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "train.py"),
            "-m",
            f"hydra.sweep.dir={sweep_dir}",
            *SWEEP,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    write_mnist_like(tmp / "data", "mnist", n_train=400, n_test=100)
    first = run_sweep(tmp / "sweep", tmp / "data")
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in (tmp / "sweep").rglob("metrics.json")}
    second = run_sweep(tmp / "sweep", tmp / "data")
    return tmp / "sweep", first, second, stamps


def jobs(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.rglob("metrics.json")}


def test_each_job_gets_a_directory_named_by_its_overrides(sweep):
    sweep_dir, first, _, _ = sweep
    names = sorted(jobs(sweep_dir))
    assert len(names) == 3, first.stderr[-3000:]
    assert all("model.dropout=" in n and "data=mnist" in n for n in names)


def test_a_failing_job_is_recorded_and_the_others_complete(sweep):
    sweep_dir, first, _, _ = sweep
    assert first.returncode != 0  # Hydra reports the failed job at the end
    status = {n: m["status"] for n, m in jobs(sweep_dir).items()}
    failed = [n for n, s in status.items() if s == "failed"]
    assert len(failed) == 1 and "model.dropout=1.5" in failed[0]
    assert sorted(s for s in status.values()) == ["completed", "completed", "failed"]
    error = jobs(sweep_dir)[failed[0]]["error"]
    assert "model.dropout=1.5 is outside [0, 1)" in error


def test_rerun_skips_completed_jobs_and_repeats_failed_ones(sweep):
    sweep_dir, _, second, stamps = sweep
    after = {p.parent.name: p.stat().st_mtime_ns for p in sweep_dir.rglob("metrics.json")}
    for name, before in stamps.items():
        if "model.dropout=1.5" in name:
            assert after[name] > before  # ran again (and failed again)
        else:
            assert after[name] == before  # untouched: skipped
    assert second.stderr.count("Skipping") + second.stdout.count("Skipping") == 2


def test_comparison_table_has_one_row_per_job_and_the_swept_key(sweep, tmp_path):
    sweep_dir, *_ = sweep
    runs = find_runs([sweep_dir])
    header, rows = table(runs, [sweep_dir], sort="test/acc")
    assert header[0] == "model.dropout"  # the swept value names the run; no path column needed
    assert table(runs, [sweep_dir], with_path=True)[0][:2] == ["run", "model.dropout"]
    assert len(rows) == 3
    by_dropout = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    for name, metrics in jobs(sweep_dir).items():
        row = by_dropout[name.split("model.dropout=")[1].split(",")[0]]
        if metrics["status"] == "completed":
            assert row["test/acc"] == metrics["test/acc"]
            assert row["params"] == metrics["trainable_params"] and row["status"] == "completed"
        else:
            assert row["status"].startswith("failed: ConfigError: model.dropout=1.5")
    assert rows[-1][0] == "1.5"  # failed runs sort last
    md = to_markdown(header, rows)
    assert md.count("\n") == 4 and "| model.dropout |" in md
    completed = next(r for r in rows if r[header.index("status")] == "completed")
    assert f"| {completed[header.index('params')]:,} |" in md  # 61,706 in Markdown
    with open(to_csv(header, rows, tmp_path / "t.csv")) as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 3
    assert {r["params"] for r in csv_rows if r["status"] == "completed"} == {"61706"}  # a number
    assert plot(runs, tmp_path / "t.png").stat().st_size > 1000


def test_compare_script_prints_the_table(sweep):
    sweep_dir, *_ = sweep
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "compare_runs.py"), str(sweep_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("| model.dropout | val/acc | val/acc_best |")


@pytest.mark.parametrize(
    "preset",
    ["dropout", "batch_norm", "dropout_batch_norm", "aug", "arch", "lr_batch", "kfold", "seeds",
     "regularisers"],
)  # fmt: skip
def test_sweep_presets_sweep_keys_that_exist(preset):
    """Every key a preset sweeps is a config group or a key of the composed config: a
    misspelled key would otherwise make every job of the sweep fail, or add a key nobody reads."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"sweep={preset}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params, f"sweep={preset} sweeps nothing"
    groups = {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()}
    absent = object()
    for key in params:
        assert key in groups or OmegaConf.select(cfg, key, default=absent) is not absent, key


@pytest.mark.parametrize("launcher", ["parallel", "slurm"])
def test_launchers_compose(launcher):
    from hydra.core.hydra_config import HydraConfig

    compose_config("train", [f"hydra/launcher={launcher}"])
    chosen = HydraConfig.get().launcher
    if launcher == "parallel":
        assert chosen._target_.endswith("joblib_launcher.JoblibLauncher") and chosen.n_jobs == 2
    else:
        assert chosen._target_.endswith("submitit_launcher.SlurmLauncher")
        assert chosen.additional_parameters.signal == "SIGUSR1@90"  # Lightning's requeue
