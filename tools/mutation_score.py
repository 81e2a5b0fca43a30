"""Mutation score per module from mutmut's results: ``python -m tools.mutation_score [mutants]``.

``--survivors`` lists the mutants that survived (see them with ``mutmut show NAME``).
``make mutation`` runs mutmut and then this.
"""

import argparse
import sys

from tools.mutation import read_scores, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mutants", nargs="?", default="mutants", help="mutmut's mutants/ folder")
    parser.add_argument("--survivors", action="store_true", help="list surviving mutants")
    args = parser.parse_args()
    scores = read_scores(args.mutants)
    if not scores:
        print(f"No mutmut results under {args.mutants}/ (run: make mutation)", file=sys.stderr)
        return 2
    print(report(scores, survivors=args.survivors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
