"""Regenerate the README's generated tables: ``python -m tools.update_readme [--bad-inputs]``.

Always: the model parameter counts. ``--bad-inputs``: also the table of bad inputs, each run
for real as its command line (a few minutes).
"""

import sys

from tools.docs import update_readme

if __name__ == "__main__":
    changed = update_readme(bad_inputs="--bad-inputs" in sys.argv[1:])
    print("README.md updated" if changed else "README.md already up to date")
