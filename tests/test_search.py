"""scripts/search.py: the current Optuna, a study that workers share, pruning, the reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from cnnlab.config import compose_config
from cnnlab.errors import ConfigError
from cnnlab.search import (
    distributions,
    flatten_space,
    from_config,
    join_study,
    make_executor,
    overrides_of,
    storage,
)
from tests.conftest import one_line_error, subprocess_env
from tests.support.synthetic import write_mnist_like

ROOT = Path(__file__).resolve().parents[1]
GOOD_LR, BAD_LR = 0.003, 1e-6  # the bad region learns nothing in 3 epochs, without diverging


def test_space_leaves_become_optuna_distributions():
    flat = flatten_space(
        {
            "optimizer": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
            "model": {
                "dropout": {"low": 0.0, "high": 0.5, "step": 0.1},
                "width": {"low": 8, "high": 64},
            },
            "data": {"batch_size": {"choices": [64, 128]}},
        }
    )
    assert list(flat) == ["optimizer.lr", "model.dropout", "model.width", "data.batch_size"]
    d = distributions(flat)
    assert d["optimizer.lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert d["model.dropout"] == FloatDistribution(0.0, 0.5, step=0.1)
    assert d["model.width"] == IntDistribution(8, 64)  # integers stay integers
    assert d["data.batch_size"] == CategoricalDistribution([64, 128])
    assert overrides_of({"optimizer.lr": 0.001, "model.batch_norm": False, "model": "vgg11"}) == [
        "optimizer.lr=0.001",
        "model.batch_norm=false",
        "model=vgg11",
    ]


def test_a_trial_trains_its_sample_and_in_mlflow_is_a_child_of_the_search(tmp_path):
    from types import SimpleNamespace

    from cnnlab.search import from_config, trial_config

    def cfg_of(logger: str):
        overrides = [f"dir={tmp_path / 'my_search'}", f'search.train=["{logger}"]']
        search = from_config(
            OmegaConf.to_container(compose_config("search", overrides), resolve=True)
        )
        trial = SimpleNamespace(number=7, params={"optimizer.lr": 0.02, "model.dropout": 0.25})
        return trial_config(search, trial)

    cfg = cfg_of("logger=mlflow")
    assert (cfg.optimizer.lr, cfg.model.dropout, cfg.test) == (0.02, 0.25, False)
    assert cfg.paths.output_dir == str(tmp_path / "my_search" / "trial_007")
    assert cfg.logger.mlflow.parent_dir == str((tmp_path / "my_search").resolve())
    both = cfg_of("logger=[tensorboard,mlflow]")
    assert both.logger.mlflow.parent_dir == str((tmp_path / "my_search").resolve())
    assert "mlflow" not in cfg_of("logger=tensorboard").logger  # nothing added elsewhere


@pytest.mark.parametrize(
    ("leaf", "words"),
    [
        ({"low": 0.5, "high": 0.1}, "a < b"),
        ({"low": 0.0, "high": 1.0, "log": True}, "low > 0"),
        ({"low": 0.1, "high": 1.0, "scale": 2}, "unknown: scale"),
        ({"choices": []}, "non-empty"),
        ({"low": "a", "high": 1}, "a < b"),
    ],
)
def test_bad_leaves_are_refused_by_name(leaf, words):
    with pytest.raises(ConfigError, match=rf"search\.params\.model\.dropout.*{words}"):
        distributions(flatten_space({"model": {"dropout": leaf}}))


def _write_data(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    write_mnist_like(data_dir, "mnist", n_train=600, n_test=200)
    return data_dir


def _search(tmp_path: Path, data_dir: Path, *args: str, epochs: int = 3, wait: bool = True):
    train = [
        "data=mnist",
        f"paths.data_dir={data_dir}",
        "paths.dataset_mirrors=[]",
        "data.download=false",
        "data.val_size=100",
        "data.batch_size=50",
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu",
        "callbacks=none",
        "logger=none",
    ]
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "search.py"),
        f"dir={tmp_path / 'search'}",
        "search.train=[" + ",".join(f'"{o}"' for o in train) + "]",
        # one parameter, with a region that learns nothing: the pruner must stop it early
        "~search.params",  # the space is replaced, not merged into lenet_fashion's
        f"+search.params={{optimizer:{{lr:{{choices:[{GOOD_LR},{BAD_LR}]}}}}}}",
        "search.sampler.name=random",
        "~search.sampler.n_startup_trials",  # a TPE argument
        "search.sampler.seed=3",
        "search.pruner.n_startup_trials=2",
        "search.pruner.n_warmup_steps=0",
        *args,
    ]
    run = subprocess.run if wait else subprocess.Popen
    kwargs = (
        {"capture_output": True} if wait else {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    )
    return run(cmd, text=True, cwd=tmp_path, env=subprocess_env(OMP_NUM_THREADS="1"), **kwargs)


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="lenet_fashion", storage=_journal(tmp_path))


def _journal(tmp_path: Path) -> JournalStorage:
    (tmp_path / "search").mkdir(exist_ok=True)
    return JournalStorage(JournalFileBackend(str(tmp_path / "search" / "study.journal")))


def test_two_workers_share_one_study_prune_the_bad_region_and_a_rerun_continues(tmp_path):
    data_dir = _write_data(tmp_path)
    # the order of the regions is fixed (enqueued), so that pruning is tested, not luck: two
    # good trials first, then the bad region alternates with the good one
    study = optuna.create_study(
        study_name="lenet_fashion", storage=_journal(tmp_path), direction="maximize"
    )
    for lr in (GOOD_LR, GOOD_LR, BAD_LR, GOOD_LR, BAD_LR, GOOD_LR, BAD_LR, GOOD_LR):
        study.enqueue_trial({"optimizer.lr": lr})
    proc = _search(
        tmp_path, data_dir, "n_trials=8", "workers=2", "search.pruner.n_startup_trials=1"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _study(tmp_path).trials
    # N trials in all between the two workers, each number once, each run by a worker process
    assert sorted(t.number for t in trials) == list(range(8))
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}

    bad = [t for t in trials if t.params["optimizer.lr"] == BAD_LR]
    good = [t for t in trials if t.params["optimizer.lr"] == GOOD_LR]
    assert bad and good
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    # every bad trial (each starts after a good one finished) is stopped before its last epoch
    # (2), and only bad ones are: the good trials train alike and none falls below the median
    assert pruned == bad and all(max(t.intermediate_values) < 2 for t in pruned)
    assert max(t.intermediate_values[0] for t in bad) < min(t.intermediate_values[0] for t in good)

    # each trial is a real run; the run record and the table agree with the study
    folder = tmp_path / "search"
    for t in trials:
        metrics = json.loads((folder / f"trial_{t.number:03d}" / "metrics.json").read_text())
        assert metrics["status"] == ("pruned" if t.state == TrialState.PRUNED else "completed")
        assert metrics["epochs"] == len(t.intermediate_values)
        assert "test/acc" not in metrics  # trials never look at the test split
    table = (folder / "trials.md").read_text()
    assert table.count("pruned @ ") == len(pruned)
    best = json.loads((folder / "best.json").read_text())
    assert best["trial"] == max(good, key=lambda t: t.value).number
    assert best["overrides"] == [f"optimizer.lr={GOOD_LR}"]
    assert (
        best["command"].startswith("python train.py data=mnist")
        and "test=false" not in best["command"]
    )
    assert f"{len(trials)} of 8 done" in proc.stdout

    # a re-run continues the same study up to the new total
    again = _search(tmp_path, data_dir, "n_trials=10", "workers=1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(t.number for t in _study(tmp_path).trials) == list(range(10))


@pytest.mark.slow  # 30 s: two workers, one killed mid-trial (make test-full)
def test_a_killed_worker_is_reported_and_its_trial_failed(tmp_path):
    data_dir = _write_data(tmp_path)
    proc = _search(tmp_path, data_dir, "n_trials=3", "workers=2", epochs=5, wait=False)
    journal = tmp_path / "search" / "study.journal"
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.5)
        if journal.is_file():
            running = _study(tmp_path).get_trials(states=(TrialState.RUNNING,))
            victim = next((t for t in running if t.user_attrs.get("worker") == 1), None)
    assert victim is not None, "worker 1 never started a trial"
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "Error: worker 1 (job" in err and "failed" in err
    trials = _study(tmp_path).trials
    assert sorted(t.number for t in trials) == list(range(3))  # the other worker finished them
    assert trials[victim.number].state == TrialState.FAIL
    assert f"trial {victim.number}: failed: its worker stopped" in out


def test_trials_that_fail_are_shown_and_a_search_with_no_result_fails(tmp_path):
    data_dir = _write_data(tmp_path)
    proc = _search(
        tmp_path, data_dir, "n_trials=2", "search.params.optimizer.lr={choices:[-1.0,-2.0]}"
    )
    assert proc.returncode == 1
    assert proc.stdout.count("failed: optimizer.lr=-") == 2  # cnnlab's own message, per trial
    assert "Error: no trial completed" in proc.stderr


@pytest.mark.parametrize(
    ("override", "words"),
    [
        (
            "search.sampler.name=optuna.samplers.TPESampler",
            "search.sampler.name=.*not one of tpe, random",
        ),
        ("+search.pruner.patience=3", r"search.pruner \(median\).*patience"),
        ("storage=redis://localhost", "unknown scheme 'redis'"),
        ("workers=0", "workers=0 must be an integer >= 1"),
        ("launcher=pbs", "launcher='pbs' must be local or slurm"),
        ("search.params.optimizer.lr.low=0", "low > 0"),
        ("search.direction=up", "search.direction='up' must be maximize or minimize"),
        ("storage={tmp}", r"storage='.*' is a folder; give a file in it"),
        ("storage=sqlite:///{tmp}/nowhere/s.db", r"the folder .*nowhere does not exist"),
    ],
)
def test_bad_search_settings_are_refused_by_name(tmp_path, override, words):
    override = override.format(tmp=tmp_path)
    cfg = OmegaConf.to_container(
        compose_config("search", [f"dir={tmp_path / 's'}", override]), resolve=True
    )
    with pytest.raises(ConfigError, match=words):
        storage(from_config(cfg))


def test_a_bad_setting_is_one_line_and_starts_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "search.py"), f"dir={tmp_path / 's'}", "workers=0"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    one_line_error(proc, "workers=0 must be an integer >= 1")
    assert not (tmp_path / "s").exists()


def test_slurm_workers_are_an_array_with_the_configured_resources(tmp_path, monkeypatch):
    """What a cluster would get: submitit's SLURM executor takes every parameter by its name
    (a misnamed one raises), one array of `workers` jobs (sbatch is faked: no cluster here)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    cfg = OmegaConf.to_container(
        compose_config("search", [f"dir={tmp_path / 's'}", "launcher=slurm", "workers=8",
                                  "slurm.partition=gpu", "slurm.gpus_per_node=1"]),
        resolve=True,
    )  # fmt: skip
    executor = make_executor(from_config(cfg), cfg["workers"], cfg["launcher"], cfg["slurm"])
    params = executor._executor.parameters
    assert params["partition"] == "gpu" and params["array_parallelism"] == 8
    assert params["time"] == 240 and params["cpus_per_task"] == 4 and params["mem"] == "16GB"
    assert params["gpus_per_node"] == 1


def test_samplers_joining_one_study_never_draw_alike(tmp_path):
    """Two searches started side by side on one study (each a worker 0), and a re-run, each
    draw other trials; the first sampler of a fresh study draws as ``seed`` itself does."""
    cfg = compose_config("search", [f"dir={tmp_path / 'search'}", "search.sampler.seed=7"])
    search = from_config(OmegaConf.to_container(cfg, resolve=True))
    space = distributions(search.params)
    first = [join_study(search).ask(space).params for _ in range(3)]
    assert len({json.dumps(p, sort_keys=True) for p in first}) == 3
    fresh = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=7, n_startup_trials=5))
    assert first[0] == fresh.ask(space).params
