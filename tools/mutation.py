"""The mutation score per module, read from mutmut's results (``make mutation``).

mutmut 3 keeps one ``mutants/<source>.meta`` JSON file per mutated module with the exit code
of every mutant's test run. A mutant is *killed* when its tests failed (exit 1 or 3) or ran
past their time limit (an endless loop the tests exposed); it *survived* when they passed;
*no tests* means no selected test calls the mutated function (a gap too). Mutants not run
yet (an interrupted run) are counted apart and left out of the score, which is
``killed / (killed + survived + no tests)``.

Stdlib only, so it runs beside any mutmut version that writes these files.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout"}
KILLED |= {255: "timeout", 37: "killed"}  # 37: caught by the type checker
SURVIVED = {0: "survived"}
NO_TESTS = {5: "no tests", 33: "no tests"}


def outcome(exit_code: int | None) -> str:
    """One word for a mutant's exit code: killed, timeout, survived, no tests, not run, other."""
    if exit_code is None:
        return "not run"
    for table in (KILLED, SURVIVED, NO_TESTS):
        if exit_code in table:
            return table[exit_code]
    return "skipped" if exit_code == 34 else "other"


@dataclass
class ModuleScore:
    module: str  # source path, e.g. src/cnnlab/compare.py
    counts: Counter = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)  # mutant names that survived or had no tests

    @property
    def killed(self) -> int:
        return self.counts["killed"] + self.counts["timeout"]

    @property
    def measured(self) -> int:
        return self.killed + self.counts["survived"] + self.counts["no tests"]

    @property
    def score(self) -> float | None:
        return self.killed / self.measured if self.measured else None


def read_scores(mutants_dir: str | Path = "mutants") -> list[ModuleScore]:
    """One ``ModuleScore`` per ``*.meta`` file under ``mutants_dir``, sorted by module."""
    root = Path(mutants_dir)
    scores = []
    for meta in sorted(root.rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        score = ModuleScore(str(meta.relative_to(root)).removesuffix(".meta"))
        for name, code in sorted(data.get("exit_code_by_key", {}).items()):
            word = outcome(code)
            score.counts[word] += 1
            if word in ("survived", "no tests"):
                score.survivors.append(name)
        if score.counts:
            scores.append(score)
    return scores


def report(scores: list[ModuleScore], survivors: bool = False) -> str:
    """A Markdown table: killed/measured per module, then the total over measured modules."""
    lines = [
        "| module | killed | survived | no tests | not run | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    total = ModuleScore("total")
    for s in scores:
        total.counts.update(s.counts)
        pct = f"{s.score:.1%}" if s.score is not None else "-"
        lines.append(
            f"| {s.module} | {s.killed}/{s.measured} | {s.counts['survived']} | "
            f"{s.counts['no tests']} | {s.counts['not run']} | {pct} |"
        )
    pct = f"{total.score:.1%}" if total.score is not None else "-"
    lines.append(
        f"| **total** | {total.killed}/{total.measured} | {total.counts['survived']} | "
        f"{total.counts['no tests']} | {total.counts['not run']} | {pct} |"
    )
    if survivors:
        for s in scores:
            if s.survivors:
                lines += ["", f"{s.module}:", *(f"  {name}" for name in s.survivors)]
    return "\n".join(lines)
