"""Development tools, run from a checkout's root and never installed: the benchmark
(``python -m tools.benchmark``, ``make bench``), the bare loops it measures against, the
mutation score (``python -m tools.mutation_score``) and the README's generated tables
(``python -m tools.update_readme``)."""

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
