"""make mutation's score: read from mutmut's per-module result files."""

from __future__ import annotations

import json
import subprocess
import sys

from tools.mutation import outcome, read_scores, report

from .conftest import subprocess_env


def _meta(root, module, codes):
    path = root / "src" / "cnnlab" / f"{module}.py.meta"
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = {f"cnnlab.{module}.x_f__mutmut_{i}": code for i, code in enumerate(codes, 1)}
    path.write_text(json.dumps({"exit_code_by_key": keys, "durations_by_key": {}}))


def test_outcomes_of_mutmut_exit_codes():
    assert [outcome(c) for c in (1, 3, 36, 0, 33, 5, None, 34, 99)] == [
        "killed", "killed", "timeout", "survived", "no tests", "no tests", "not run", "skipped",
        "other",
    ]  # fmt: skip


def test_score_is_killed_over_measured_per_module_and_in_total(tmp_path):
    _meta(tmp_path, "compare", [1, 1, 1, 0, 36])  # 4 of 5 killed (a timeout counts)
    _meta(tmp_path, "record", [1, 33, None, None])  # 1 of 2 measured, 2 not run yet
    scores = read_scores(tmp_path)
    assert [s.module for s in scores] == ["src/cnnlab/compare.py", "src/cnnlab/record.py"]
    assert [(s.killed, s.measured, s.score) for s in scores] == [(4, 5, 0.8), (1, 2, 0.5)]
    assert scores[0].survivors == ["cnnlab.compare.x_f__mutmut_4"]
    assert scores[1].survivors == ["cnnlab.record.x_f__mutmut_2"]  # no test calls it: a gap
    lines = report(scores, survivors=True).splitlines()
    assert lines[2] == "| src/cnnlab/compare.py | 4/5 | 1 | 0 | 0 | 80.0% |"
    assert lines[3] == "| src/cnnlab/record.py | 1/2 | 0 | 1 | 2 | 50.0% |"
    assert lines[4] == "| **total** | 5/7 | 1 | 1 | 2 | 71.4% |"
    assert "  cnnlab.compare.x_f__mutmut_4" in lines


def test_the_script_prints_the_table_or_says_there_is_nothing(tmp_path):
    script = ["-m", "tools.mutation_score"]
    _meta(tmp_path / "mutants", "compare", [1, 0])
    out = subprocess.run(
        [sys.executable, *script, str(tmp_path / "mutants")],
        capture_output=True, text=True, env=subprocess_env(), timeout=60,
    )  # fmt: skip
    assert (
        out.returncode == 0 and "| src/cnnlab/compare.py | 1/2 | 1 | 0 | 0 | 50.0% |" in out.stdout
    )
    empty = subprocess.run(
        [sys.executable, *script, str(tmp_path / "none")],
        capture_output=True, text=True, env=subprocess_env(), timeout=60,
    )  # fmt: skip
    assert empty.returncode == 2 and "No mutmut results" in empty.stderr
