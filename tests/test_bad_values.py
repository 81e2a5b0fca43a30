"""Every bad input gets one clear line before any heavy work, and nothing is lost.

The cases live in ``tests.support.bad_inputs`` (a table: a new bad input is one row); each runs
as the real command line in its own process, against real files. The table in
docs/TROUBLESHOOTING.md is generated from the same rows (``python -m tools.update_readme --bad-inputs``).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from cnnlab.config import PROJECT_ROOT
from tests.support.bad_inputs import CASES, Workspace, run_case


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Every selected case, run once: the fast suite (-m "not slow") runs one case of each kind
    of check (``Case.fast``), ``make test-full`` all of them."""
    cases = [c for c in CASES if c.fast or "not slow" not in (request.config.option.markexpr or "")]
    ws = Workspace(tmp_path_factory.mktemp("bad_inputs"))
    ws.prepare(tuple(cases))  # the trained run and the broken files, before any case runs
    # two at a time: each case is mostly a Python start-up, and the machine has 2 cores
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(cases, pool.map(lambda c: run_case(c, ws), cases), strict=True))


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


def test_troubleshooting_table_lists_every_case_with_its_exit_status():
    readme = (PROJECT_ROOT / "docs" / "TROUBLESHOOTING.md").read_text()
    block = readme.split("<!-- bad_inputs:start -->\n")[1].split("<!-- bad_inputs:end -->")[0]
    rows = [line.split(" | ") for line in block.splitlines()[2:]]
    assert [(r[0].removeprefix("| "), int(r[1])) for r in rows] == [
        (c.input, c.exit) for c in CASES
    ], "run: python -m tools.update_readme --bad-inputs"
