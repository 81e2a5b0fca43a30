"""Every bad input gets one clear line before any heavy work, and nothing is lost.

The cases live in ``tests.support.bad_inputs`` (a table: a new bad input is one row); each runs
as the real command line in its own process, against real files. The table in
docs/TROUBLESHOOTING.md is generated from the same rows (``python -m tools.update_readme --bad-inputs``).

A process costs seconds (Python, torch and Lightning start): the fast suite runs as processes
only the cases that stand for a way a process ends or that only a process shows
(``Case.fast``), and every other case in this process, as its entry point calls it (the same
config, the same function, the same files): it must raise the error whose message is the
case's line and lose nothing. ``make test-full`` runs every case as a process.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from cnnlab.config import PROJECT_ROOT, compose_config, validate
from cnnlab.errors import CnnlabError
from cnnlab.options import check_keys
from tests.support.bad_inputs import CASES, Workspace, _files, run_case

from .conftest import script_main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(scope="module")
def outcomes(request, workspace):
    """Every selected case, run once as a process: the fast suite (-m "not slow") runs
    ``Case.fast``, ``make test-full`` all of them."""
    cases = [c for c in CASES if c.fast or "not slow" not in (request.config.option.markexpr or "")]
    workspace.prepare(tuple(cases))  # the trained run and the broken files, before any case runs
    # two at a time: each case is mostly a Python start-up, and the machine has 2 cores
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(cases, pool.map(lambda c: run_case(c, workspace), cases), strict=True))


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=() if c.fast else pytest.mark.slow, id=c.input) for c in CASES],
)
def test_bad_input_gets_its_line_and_loses_nothing(case, outcomes):
    o = outcomes[case]
    assert o.exit == case.exit, o
    assert re.search(case.pattern, o.first_line), o.first_line
    assert not o.traceback, o
    if case.one_line:
        assert o.lines == 1 and o.first_line.startswith("Error: "), o
    assert o.nothing_lost, f"{case.input}: a file that existed before was changed or removed"


def _process_only(case) -> str | None:
    """Why a case shows only in a process of its own (None: it can run in this one)."""
    if "-m" in case.argv:
        return "Hydra's launcher starts the jobs"
    if any(a.startswith("hydra.run.dir=") and "{fresh}" not in a and "{run}" not in a
           for a in case.argv):  # fmt: skip
        return "Hydra makes the output folder before the entry point runs"
    if case.stream == "stdout":
        return "a table printed on stdout"
    return None


def _call(argv: list[str], ws: Workspace) -> None:
    """What ``python ARGV...`` does once its process has started: the entry point's function."""
    entry, args = argv[0], argv[1:]
    if entry not in ("train.py", "eval.py"):
        script_main(entry)(args)
        return
    out = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), ws["fresh"])
    overrides = [a for a in args if not a.startswith("hydra.")]
    name = entry.removesuffix(".py")
    check_keys(name, overrides, name)  # what train.py and eval.py check before Hydra starts
    cfg = compose_config(name, overrides, output_dir=out)
    if entry == "train.py":
        from cnnlab.run import train

        validate(cfg)  # as train.py does before it imports torch
        train(cfg)
    else:
        from cnnlab.run import evaluate

        evaluate(cfg)


IN_PROCESS = [pytest.param(c, id=c.input) for c in CASES if _process_only(c) is None]


@pytest.mark.parametrize("case", IN_PROCESS)
def test_bad_input_raises_its_line_in_process_and_loses_nothing(case, workspace, monkeypatch):
    workspace.prepare((case,))
    for key, value in case.env:
        monkeypatch.setenv(key, value.format_map(workspace))
    argv = [a.format_map(workspace) for a in case.argv]
    before = _files(workspace.root)
    with pytest.raises(CnnlabError) as err:
        _call(argv, workspace)
    # cnnlab's errors print as "Error: ..." (exit 2); Hydra's own (exit 1) print as they are
    text = f"Error: {err.value}" if case.exit == 2 else str(err.value)
    line = text.splitlines()[0].replace(str(workspace.root), "...")
    assert re.search(case.pattern, line), line
    after = _files(workspace.root)
    assert all(after.get(p) == stat for p, stat in before.items()), f"{case.input}: a file was lost"


def test_troubleshooting_table_lists_every_case_with_its_exit_status():
    readme = (PROJECT_ROOT / "docs" / "TROUBLESHOOTING.md").read_text()
    block = readme.split("<!-- bad_inputs:start -->\n")[1].split("<!-- bad_inputs:end -->")[0]
    rows = [line.split(" | ") for line in block.splitlines()[2:]]
    assert [(r[0].removeprefix("| "), int(r[1])) for r in rows] == [
        (c.input, c.exit) for c in CASES
    ], "run: python -m tools.update_readme --bad-inputs"
