"""The run record loses nothing (issue 11, section 2): eval beside a run, a corrupt last.ckpt,
failures after testing, logger=csv, two processes in one run directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.cli import run_app
from cnnlab.errors import CnnlabError
from cnnlab.record import LOCK_FILE
from cnnlab.run import train
from tests.support.synthetic import write_mnist_like

from .conftest import QUICK, make_cfg, subprocess_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    write_mnist_like(d, "mnist", n_train=600, n_test=200)
    return d


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_eval_into_a_training_run_dir_keeps_its_metrics_json(mnist_dir, tmp_path):
    cfg = make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=1")
    train(cfg)
    run_dir = tmp_path / "run"
    (run_dir / ".hydra" / "config.yaml").write_text("the training run's config\n")
    before = (run_dir / "metrics.json").read_bytes()
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "eval.py"),
            f"ckpt_path={ckpt}",
            f"hydra.run.dir={run_dir}",
            f"paths.data_dir={mnist_dir}",
            "paths.dataset_mirrors=[]",
            "trainer.accelerator=cpu",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(PYTHONWARNINGS="ignore"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "metrics.json").read_bytes() == before
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "the training run's config\n"
    on_disk = json.loads((run_dir / "eval_metrics.json").read_text())
    assert on_disk["test/acc"] == pytest.approx(_metrics(run_dir)["test/acc"], abs=1e-6)


def test_unreadable_last_ckpt_starts_afresh_with_one_generation_of_names(mnist_dir, tmp_path):
    cfg = make_cfg(
        tmp_path,
        mnist_dir,
        *QUICK,
        "trainer.max_epochs=2",
        "+callbacks.sigterm._target_=tests.test_reliability.SigtermAt",
        "+callbacks.sigterm.step=12",
    )
    with pytest.raises(SystemExit):
        train(cfg)
    folder = tmp_path / "run" / "checkpoints"
    assert _metrics(tmp_path / "run")["status"] == "interrupted"
    (folder / "last.ckpt").write_bytes(b"truncated by a full disk")
    cfg.callbacks.sigterm.step = 10**6  # the same run again, uninterrupted this time
    metrics = train(cfg)
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.ckpt",
        "best.ckpt.stale",
        "last.ckpt",
        "last.ckpt.corrupt",
    ]
    assert (folder / "last.ckpt.corrupt").read_bytes() == b"truncated by a full disk"


def test_a_failure_after_testing_keeps_the_results(mnist_dir, tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("TensorBoard's disk is full")

    monkeypatch.setattr("cnnlab.run._log_hparams", broken)
    metrics = train(make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=1"))
    on_disk = _metrics(tmp_path / "run")
    assert on_disk["status"] == metrics["status"] == "completed"
    assert on_disk["test/acc"] is not None and on_disk["test/acc"] == metrics["test/acc"]
    assert on_disk["late_error"] == "RuntimeError: TensorBoard's disk is full"


def test_logger_csv_end_to_end(mnist_dir, tmp_path):
    metrics = train(make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=2", "logger=csv"))
    run_dir = tmp_path / "run"
    assert metrics["status"] == _metrics(run_dir)["status"] == "completed"
    assert "late_error" not in _metrics(run_dir)
    rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    assert "val/acc" in rows[0] and len(rows) > 2
    assert "lr: 0.003" in (run_dir / "csv" / "hparams.yaml").read_text()


_HOLD = """
import sys, time
from cnnlab.record import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    if sys.argv[2] == "die":
        import os; os._exit(0)  # dies holding it, as a killed job does
    time.sleep(120)
"""


def _holder(run_dir: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run_dir), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_into_the_same_dir_is_refused(mnist_dir, tmp_path, capsys):
    cfg = make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=1")
    run_dir = tmp_path / "run"
    holder = _holder(run_dir, "hold")
    try:
        with pytest.raises(CnnlabError, match=rf"Another run \(PID {holder.pid}\) is writing to"):
            train(cfg)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            run_app(train, cfg)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
        assert f"lock file {run_dir / LOCK_FILE}" in err
        assert not (run_dir / "metrics.json").exists()  # the other run's record is untouched
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over(mnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    dead = _holder(run_dir, "die")
    dead.wait()
    assert (run_dir / LOCK_FILE).read_text().split()[0] == str(dead.pid)
    metrics = train(make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=1"))
    assert metrics["status"] == "completed" and not (run_dir / LOCK_FILE).exists()


def test_a_job_killed_before_testing_resumes_with_complete_metrics(mnist_dir, tmp_path):
    import json

    import torch

    args = (*QUICK, "trainer.max_epochs=2", "logger=none")
    first = train(make_cfg(tmp_path, mnist_dir, *args))
    record = tmp_path / "run" / "metrics.json"
    # what a job killed (SIGKILL) after its last epoch and before testing leaves behind:
    # last.ckpt of the final epoch, and the record written at its start
    started = {k: first[k] for k in ("model", "data", "seed", "trainable_params", "overrides",
                                     "config_hash", "host")}  # fmt: skip
    record.write_text(json.dumps({"status": "running", "pid": 2**22 + 7, **started}))
    spent = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    spent = spent["cnnlab"]["elapsed_s"]
    assert 0 < spent <= first["wall_time_s"]

    resumed = train(make_cfg(tmp_path, mnist_dir, *args))
    assert resumed["status"] == "completed" and resumed["epochs"] == 2
    for key in ("val/acc", "val/loss", "val/acc_best", "best_epoch", "test/acc", "test/loss"):
        assert resumed[key] == pytest.approx(first[key], abs=1e-6), key
    assert resumed["wall_time_s"] > spent  # the sum of its parts, not the resumed part alone


def test_a_full_disk_keeps_the_last_good_checkpoint_and_the_same_command_resumes(
    mnist_dir, tmp_path, monkeypatch, capsys
):
    import errno

    import torch

    from cnnlab.errors import DiskFull

    real_save, saves = torch.save, []

    def fills_the_disk(obj, f, *a, **k):  # from the third checkpoint on: half a file, ENOSPC
        saves.append(Path(f.name))
        if len(saves) >= 3:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    args = (*QUICK, "trainer.max_epochs=3", "logger=none")
    monkeypatch.setattr(torch, "save", fills_the_disk)
    with pytest.raises(DiskFull, match=r"^disk full: could not write .*\.ckpt \(\d+ MB free"):
        train(make_cfg(tmp_path, mnist_dir, *args))
    monkeypatch.setattr(torch, "save", real_save)
    run = tmp_path / "run"
    folder = run / "checkpoints"
    # epoch 0 wrote best and last; epoch 1 failed on its first write: no .part left, and
    # last.ckpt is whole (epoch 0), written under a temp name in its own folder
    assert all(p.parent == folder and p.name.endswith(".part") for p in saves)
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 0
    record = _metrics(run)
    assert record["status"] == "interrupted" and record["error"].startswith("DiskFull: disk full")

    resumed = train(make_cfg(tmp_path, mnist_dir, *args))  # the same command, room again
    assert resumed["status"] == "completed" and resumed["epochs"] == 3
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # no -v1


def test_last_ckpt_is_written_every_epoch_even_when_val_acc_does_not_improve(mnist_dir, tmp_path):
    import torch

    metrics = train(make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=3", "logger=none"))
    folder = tmp_path / "run" / "checkpoints"
    assert metrics["best_epoch"] < 2  # val/acc stopped improving before the last epoch
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 2
    assert torch.load(folder / "best.ckpt", weights_only=True)["epoch"] == metrics["best_epoch"]


def test_a_real_full_disk_ends_the_run_interrupted_in_one_line(
    mnist_dir, tmp_path, small_disk, capsys
):
    import torch

    # 2 MB: epoch 0's best.ckpt and last.ckpt (about 0.75 MB each: LeNet-5 and Adam's moments)
    # fit, epoch 1's next checkpoint does not. torch.save reports that as a RuntimeError.
    disk = small_disk("2m")
    cfg = make_cfg(disk, mnist_dir, *QUICK, "trainer.max_epochs=3", "logger=none")
    with pytest.raises(SystemExit) as exit_:
        run_app(train, cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"Error: disk full: could not write {disk / 'run' / 'checkpoints'}")
    record = _metrics(disk / "run")
    assert record["status"] == "interrupted" and record["error"].startswith("DiskFull: disk full")
    folder = disk / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # no fragment
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 0
    assert record["resume_from"] == str(folder / "last.ckpt")


def _hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _train_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "trainer.accelerator=cpu", *args],
        capture_output=True, text=True, timeout=300, env=subprocess_env(PYTHONWARNINGS="ignore"),
    )  # fmt: skip


def test_another_configuration_never_replaces_a_completed_runs_record(mnist_dir, tmp_path):
    from .conftest import one_line_error

    args = (f"paths.data_dir={mnist_dir}", "paths.dataset_mirrors=[]", "data.download=false",
            *QUICK, "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0")  # fmt: skip
    run_dir = tmp_path / "run"
    first = _train_py(*args, f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):  # Hydra's record, kept
        assert (run_dir / ".hydra" / name).is_file(), name
    assert "model.dropout" not in (run_dir / ".hydra" / "overrides.yaml").read_text()
    before = _hashes(run_dir)
    assert {"metrics.json", "model_summary.txt", "checkpoints/best.ckpt"} <= before.keys()

    other = _train_py(*args, "model.dropout=0.3", f"hydra.run.dir={run_dir}")
    one_line_error(other, rf"^Error: {run_dir} holds the record of another configuration's run "
                          r"\(status completed, .*hydra.run.dir=NEW_PATH")  # fmt: skip
    assert _hashes(run_dir) == before
    # the resume command printed for an interrupted run, given a completed one: skipped as is
    log = (run_dir / "train.log").read_text()
    last = run_dir / "checkpoints" / "last.ckpt"
    again = _train_py(*args, f"ckpt_path={last}", f"hydra.run.dir={run_dir}")
    assert again.returncode == 0, again.stderr[-3000:]
    after = _hashes(run_dir)
    assert after.pop("train.log") and before.pop("train.log") and after == before
    assert (run_dir / "train.log").read_text().startswith(log)  # the log only grows: "Skipping"


@pytest.mark.parametrize("bad", ["optimizer.lr=1e-3x", "paths.data_dir={empty}"])
def test_a_command_refused_before_training_leaves_no_run_folder(tmp_path, bad):
    (tmp_path / "empty").mkdir()
    run_dir = tmp_path / "outputs" / "run"
    args = ("paths.dataset_mirrors=[]", "data.download=false", f"hydra.run.dir={run_dir}")
    proc = _train_py(*args, bad.format(empty=tmp_path / "empty"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not run_dir.exists()
    # a folder that was there before is left as it was
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine\n")
    proc = _train_py(*args, bad.format(empty=tmp_path / "empty"))
    assert proc.returncode == 2 and _hashes(run_dir).keys() == {"notes.txt"}


def test_a_read_only_run_folder_gets_one_line_on_rerun_and_eval(mnist_dir, tmp_path, small_disk):
    from .conftest import one_line_error

    disk = small_disk("1m")
    run_dir = disk / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics.json").write_text('{"status": "completed"}\n')
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    before = _hashes(run_dir)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    expected = rf"^Error: cannot write to the output folder {run_dir} \(it is read-only\)\. "
    one_line_error(_train_py(f"hydra.run.dir={run_dir}"), expected)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), f"ckpt_path={run_dir}/checkpoints/best.ckpt",
         f"hydra.run.dir={run_dir}", f"paths.data_dir={mnist_dir}"],
        capture_output=True, text=True, timeout=300, env=subprocess_env(),
    )  # fmt: skip
    one_line_error(proc, expected)
    assert _hashes(run_dir) == before
