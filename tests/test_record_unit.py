"""The run record's decisions one by one, on hand-written run directories (no training):
what metrics.json holds, skip / resume / start afresh, setting old checkpoints aside, the lock."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cnnlab import checkpoint as checkpoint_module
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.record import (
    EVAL_METRICS_FILE,
    LOCK_FILE,
    METRICS_FILE,
    checkpoint_dir,
    fingerprint,
    plan_run,
    read_metrics,
    record_failure,
    record_interrupt,
    record_late_error,
    run_lock,
    set_aside,
    write_metrics,
)

KEY = "0123456789abcdef"


def _cfg(run_dir: Path, **extra):
    return OmegaConf.create(
        {"paths": {"output_dir": str(run_dir)}, "ckpt_path": None, "callbacks": {}, **extra}
    )


def _run_dir(tmp_path: Path, status: str | None, key: str = KEY, ckpts=("best", "last")) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ckpts:
        (run / "checkpoints" / f"{name}.ckpt").write_bytes(b"good")
    if status is not None:
        write_metrics(run, {"status": status, "config_hash": key, "test/acc": 0.5})
    return run


@pytest.fixture(autouse=True)
def readable_only_if_good(monkeypatch):
    """A checkpoint is readable when it holds b"good" (load_checkpoint's own checks are
    tested in test_checkpoint_safety)."""

    def load(path):
        if Path(path).read_bytes() != b"good":
            raise CheckpointError(f"{path} is not a checkpoint.")
        return {}

    monkeypatch.setattr(checkpoint_module, "load_checkpoint", load)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- metrics.json -------------------------------------------------------------------------------


def test_metrics_round_trip_with_tensors_and_paths_and_nothing_else(tmp_path):
    path = write_metrics(
        tmp_path / "run",
        {
            "acc": torch.tensor(0.25),
            "one": torch.tensor([0.75]),  # one value, whatever its shape: a number
            "pair": torch.tensor([1.5, 2.5]),
            "cm": torch.tensor([[1, 2], [3, 4]]),
            "dir": Path("/x/y"),
        },
    )
    assert path == tmp_path / "run" / METRICS_FILE and path.read_text().endswith("}\n")
    assert read_metrics(tmp_path / "run") == {
        "acc": 0.25, "one": 0.75, "pair": [1.5, 2.5], "cm": [[1, 2], [3, 4]], "dir": "/x/y",
    }  # fmt: skip
    assert json.loads(path.read_text()) == read_metrics(tmp_path / "run")
    assert path.read_text().startswith('{\n  "acc": 0.25,')  # indented for people to read
    with pytest.raises(TypeError, match="cannot write set to metrics.json"):
        write_metrics(tmp_path / "run", {"acc": {1, 2}})
    assert read_metrics(tmp_path / "run")["acc"] == 0.25  # the failed write changed nothing
    assert _names(tmp_path / "run") == [METRICS_FILE]  # and left no temporary file


def test_eval_metrics_are_their_own_file(tmp_path):
    write_metrics(tmp_path, {"status": "completed"})
    write_metrics(tmp_path, {"test/acc": 0.9}, EVAL_METRICS_FILE)
    assert read_metrics(tmp_path) == {"status": "completed"}
    assert read_metrics(tmp_path, EVAL_METRICS_FILE) == {"test/acc": 0.9}


@pytest.mark.parametrize("text", [None, "{not json", "[1, 2]", '"completed"'])
def test_a_missing_broken_or_non_dict_record_reads_as_none(tmp_path, text):
    if text is not None:
        (tmp_path / METRICS_FILE).write_text(text)
    assert read_metrics(tmp_path) is None


def test_checkpoints_go_where_the_checkpoint_callback_says(tmp_path):
    assert checkpoint_dir(_cfg(tmp_path)) == tmp_path / "checkpoints"
    elsewhere = _cfg(tmp_path, callbacks={"model_checkpoint": {"dirpath": str(tmp_path / "c")}})
    assert checkpoint_dir(elsewhere) == tmp_path / "c"


def test_the_fingerprint_is_the_documented_hash_of_what_determines_the_result():
    """Runs recorded by earlier versions are matched by this hash (a re-run sweep skips their
    jobs), so its scheme is pinned: sha1 of the sorted JSON, where to and how shown left out,
    early stopping kept under ``early_stopping`` once it is on. A config may lack any key."""
    stopping = {"patience": 2, "monitor": "val/acc"}
    cfg = OmegaConf.create(
        {
            "model": {"_target_": "cnnlab.models.MLP", "hidden": [8]},
            "seed": 3,
            "paths": {"output_dir": "/somewhere"},
            "callbacks": {"early_stopping": stopping, "model_checkpoint": {"dirpath": "/x"}},
        }
    )
    kept = {"model": {"_target_": "cnnlab.models.MLP", "hidden": [8]}, "seed": 3}
    expected = hashlib.sha1(
        json.dumps({**kept, "early_stopping": stopping}, sort_keys=True).encode()
    ).hexdigest()[:16]
    assert fingerprint(cfg) == expected


# -- plan_run: skip, resume, start afresh -------------------------------------------------------


def test_a_completed_run_of_the_same_config_is_skipped(tmp_path, caplog):
    run = _run_dir(tmp_path, "completed")
    caplog.set_level("INFO", logger="cnnlab")
    cfg, skipped = plan_run(_cfg(run), run, KEY)
    assert skipped == {"status": "completed", "config_hash": KEY, "test/acc": 0.5, "skipped": True}
    # a sweep's log says which job it skipped and why
    assert caplog.messages == [f"Skipping {run}: this config already completed there"]
    assert _names(run / "checkpoints") == ["best.ckpt", "last.ckpt"]  # untouched


def test_skip_completed_false_runs_again_from_a_clean_folder(tmp_path):
    run = _run_dir(tmp_path, "completed")
    cfg, skipped = plan_run(_cfg(run, skip_completed=False), run, KEY)
    assert skipped is None and cfg.ckpt_path is None
    assert _names(run / "checkpoints") == ["best.ckpt.stale", "last.ckpt.stale"]


@pytest.mark.parametrize("status", ["interrupted", "running"])
def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, status, caplog):
    caplog.set_level("INFO", logger="cnnlab")
    run = _run_dir(tmp_path, status)
    given = _cfg(run)
    cfg, skipped = plan_run(given, run, KEY)
    last = run / "checkpoints" / "last.ckpt"
    assert skipped is None and cfg.ckpt_path == str(last)
    assert given.ckpt_path is None  # the caller's config is left as it was
    assert caplog.messages == [f"Resuming the interrupted run in {run} from {last}"]
    assert _names(run / "checkpoints") == ["best.ckpt", "last.ckpt"]


@pytest.mark.parametrize(
    "status,key,extra",
    [
        ("interrupted", KEY, {"auto_resume": False}),
        ("failed", KEY, {}),  # a failure is repeated from the start
        (None, KEY, {}),  # no record at all
    ],
)
def test_anything_else_starts_afresh_with_old_checkpoints_set_aside(tmp_path, status, key, extra):
    run = _run_dir(tmp_path, status, key)
    cfg, skipped = plan_run(_cfg(run, **extra), run, KEY)
    assert skipped is None and cfg.ckpt_path is None
    assert _names(run / "checkpoints") == ["best.ckpt.stale", "last.ckpt.stale"]


@pytest.mark.parametrize("status", ["completed", "interrupted", "failed", "running"])
def test_another_configs_folder_is_refused_and_left_as_it_is(tmp_path, status):
    run = _run_dir(tmp_path, status, key="fedcba9876543210")
    record = (run / METRICS_FILE).read_bytes()
    with pytest.raises(CnnlabError, match=(
        rf"^{run} holds the record of another configuration's run \(status {status}, "
        r"config_hash fedcba9876543210\); a run folder belongs to one configuration .* "
        r"hydra.run.dir=NEW_PATH"
    )):  # fmt: skip
        plan_run(_cfg(run), run, KEY)
    assert _names(run / "checkpoints") == ["best.ckpt", "last.ckpt"]
    assert (run / METRICS_FILE).read_bytes() == record
    (run / METRICS_FILE).write_bytes(b"\x00\xff binary")  # whose it is cannot be read: refused
    with pytest.raises(CnnlabError, match=r"a metrics.json that cannot be read"):
        plan_run(_cfg(run), run, KEY)


def test_an_interrupted_run_without_last_ckpt_starts_afresh(tmp_path):
    run = _run_dir(tmp_path, "interrupted", ckpts=("best",))
    cfg, skipped = plan_run(_cfg(run), run, KEY)
    assert skipped is None and cfg.ckpt_path is None
    assert _names(run / "checkpoints") == ["best.ckpt.stale"]


def test_an_unreadable_last_ckpt_is_marked_corrupt_and_the_run_starts_afresh(tmp_path, caplog):
    run = _run_dir(tmp_path, "interrupted")
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(b"truncated")
    cfg, skipped = plan_run(_cfg(run), run, KEY)
    assert skipped is None and cfg.ckpt_path is None
    assert _names(run / "checkpoints") == ["best.ckpt.stale", "last.ckpt.corrupt"]
    assert caplog.messages[0] == (
        f"Cannot resume the interrupted run in {run}: {last} is not a checkpoint. "
        "Starting it afresh."
    )


def test_resuming_a_checkpoint_of_this_run_keeps_the_folder_as_it_is(tmp_path):
    run = _run_dir(tmp_path, "failed")
    own = str(run / "checkpoints" / "last.ckpt")
    cfg, skipped = plan_run(_cfg(run, ckpt_path=own), run, KEY)
    assert skipped is None and cfg.ckpt_path == own
    assert _names(run / "checkpoints") == ["best.ckpt", "last.ckpt"]
    # an explicit ckpt_path also wins over resuming an interrupted run from last.ckpt
    write_metrics(run, {"status": "interrupted", "config_hash": KEY})
    best = str(run / "checkpoints" / "best.ckpt")
    cfg, _ = plan_run(_cfg(run, ckpt_path=best), run, KEY)
    assert cfg.ckpt_path == best


def test_resuming_another_runs_checkpoint_sets_this_folders_aside(tmp_path):
    run = _run_dir(tmp_path, None)
    other = tmp_path / "other" / "last.ckpt"
    other.parent.mkdir()
    other.write_bytes(b"good")
    cfg, _ = plan_run(_cfg(run, ckpt_path=str(other)), run, KEY)
    assert cfg.ckpt_path == str(other)
    assert _names(run / "checkpoints") == ["best.ckpt.stale", "last.ckpt.stale"]


def test_set_aside_numbers_names_already_taken_and_moves_only_checkpoints(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    assert set_aside(folder) == []  # no folder yet: nothing to do
    folder.mkdir()
    for name in ("best.ckpt", "best.ckpt.stale", "best.ckpt.stale.1", "last.ckpt", "notes.txt"):
        (folder / name).write_text(name)
    (folder / "last.ckpt.stale").write_text("older")
    moved = set_aside(folder)
    # the first free number: .1 after .stale, .2 after .stale and .stale.1
    assert moved == [folder / "best.ckpt.stale.2", folder / "last.ckpt.stale.1"]
    assert (folder / "best.ckpt.stale.2").read_text() == "best.ckpt"
    assert (folder / "best.ckpt.stale").read_text() == "best.ckpt.stale"  # nothing overwritten
    assert (folder / "last.ckpt.stale").read_text() == "older"
    assert (folder / "notes.txt").exists()
    assert caplog.messages == [
        f"Starting afresh in {folder}: moved the earlier attempt's checkpoints aside "
        "(best.ckpt.stale.2, last.ckpt.stale.1)."
    ]
    caplog.clear()
    (folder / "last.ckpt").write_text("x")
    assert set_aside(folder, corrupt=(folder / "last.ckpt",)) == [folder / "last.ckpt.corrupt"]


# -- the ends of a run ---------------------------------------------------------------------------


def test_an_interrupt_marks_the_run_resumable_and_keeps_what_it_had(tmp_path, caplog):
    run = _run_dir(tmp_path, "running")
    last = run / "checkpoints" / "last.ckpt"
    start = time.perf_counter() - 5.4321
    record_interrupt(run, last, start)
    record = read_metrics(run)
    assert record["status"] == "interrupted" and record["resume_from"] == str(last)
    assert record["test/acc"] == 0.5 and record["config_hash"] == KEY and "error" not in record
    wall = record["wall_time_s"]
    assert 5.4 <= wall < 60 and wall == round(wall, 2)
    assert caplog.messages == [
        f"Interrupted. A resumable checkpoint is at {last}; continue with the same command plus "
        f"ckpt_path={last} (a sweep re-run resumes it by itself)."
    ]
    caplog.clear()
    record_interrupt(run, last, start, OSError("No space left on device"))
    assert read_metrics(run)["error"] == "OSError: No space left on device"
    assert caplog.messages == []  # the error says it all


def test_an_interrupt_changes_nothing_after_completion_or_without_a_checkpoint(tmp_path):
    run = _run_dir(tmp_path, "completed")
    before = (run / METRICS_FILE).read_bytes()
    record_interrupt(run, run / "checkpoints" / "last.ckpt", time.perf_counter())
    assert (run / METRICS_FILE).read_bytes() == before
    write_metrics(run, {"status": "running"})
    record_interrupt(run, run / "checkpoints" / "missing.ckpt", time.perf_counter())
    assert read_metrics(run) == {"status": "running"}


def test_a_failure_is_recorded_with_its_error_and_config(tmp_path):
    record_failure(tmp_path, KEY, ValueError("bad value"), time.perf_counter() - 2.3456, ["seed=1"])
    record = read_metrics(tmp_path)
    assert record["status"] == "failed" and record["error"] == "ValueError: bad value"
    assert record["overrides"] == ["seed=1"] and record["config_hash"] == KEY
    wall = record["wall_time_s"]
    assert 2.3 <= wall < 60 and wall == round(wall, 2)  # seconds, to the hundredth


def test_a_late_error_is_reported_beside_the_results(tmp_path, caplog):
    metrics = {"status": "completed", "test/acc": 0.9}
    record_late_error(tmp_path, metrics, RuntimeError("TensorBoard is gone"))
    assert caplog.messages == [
        f"The run completed and its results are in {tmp_path / METRICS_FILE}, but a step after "
        f"testing failed: RuntimeError: TensorBoard is gone"
    ]
    assert read_metrics(tmp_path) == {
        "status": "completed",
        "test/acc": 0.9,
        "late_error": "RuntimeError: TensorBoard is gone",
    }


def test_one_process_per_run_directory(tmp_path):
    run = tmp_path / "new" / "run"
    with run_lock(run):
        assert (run / LOCK_FILE).exists()  # the folder is made for it
        busy = rf"Another run \(PID {os.getpid()}\) is writing"
        with pytest.raises(CnnlabError, match=busy), run_lock(run):
            pass
    assert not (run / LOCK_FILE).exists()  # released
    with run_lock(run):  # and can be taken again
        pass
