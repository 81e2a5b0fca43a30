"""Compare runs in one table: ``python scripts/compare_runs.py outputs/sweeps/dropout [PATH ...]``.

PATHs are run directories, sweep directories or metrics.json files, searched recursively.
Prints a Markdown table (the overrides that differ, then the results). Runs that differ only
in seed and/or data.fold (sweep=seeds, sweep=kfold) share one row: each metric as mean ± std
(sample std) with the number of runs n; --per-run lists them one by one.
"""

import argparse
from pathlib import Path

from cnnlab.cli import script
from cnnlab.compare import find_runs, plot, table, to_csv, to_markdown
from cnnlab.errors import CnnlabError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--sort", default="test/acc", help="metric to sort by (default: test/acc)")
    parser.add_argument(
        "--ascending", action="store_true", help="smallest first (e.g. for test/loss)"
    )
    parser.add_argument("--csv", type=Path, help="also write the table as CSV here")
    parser.add_argument(
        "--plot", type=Path, help="also write a bar chart (PNG) of --sort here, std as error bars"
    )
    parser.add_argument(
        "--per-run", action="store_true", help="one row per run: do not group seeds and folds"
    )
    args = parser.parse_args(argv)
    runs = find_runs(args.paths)
    if not runs:
        raise CnnlabError(f"No metrics.json under {', '.join(map(str, args.paths))}.")
    group = not args.per_run
    header, rows = table(runs, args.paths, args.sort, not args.ascending, group=group)
    print(to_markdown(header, rows))
    if args.csv:
        full = table(runs, args.paths, args.sort, not args.ascending, with_path=True, group=group)
        print(f"\nCSV: {to_csv(*full, args.csv)}")
    if args.plot:
        print(f"Plot: {plot(runs, args.plot, args.sort, group=group)}")
    return 0


if __name__ == "__main__":
    script(main)
