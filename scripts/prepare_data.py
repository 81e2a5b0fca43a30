"""Fetch and verify datasets ahead of time: ``python scripts/prepare_data.py [NAME ...]``.

Tries data_dir, the OS mirrors, then the official download (with a progress bar), exactly as
training does. With no names, prepares every dataset and reports each.
"""

import argparse
import logging
import os
import sys

from cnnlab.config import PROJECT_ROOT
from cnnlab.data.sources import DEFAULT_MIRRORS, SPECS, ensure_dataset
from cnnlab.errors import CnnlabError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names",
        nargs="*",
        choices=[[], *SPECS],
        default=[],
        metavar="NAME",
        help=f"datasets to prepare ({', '.join(SPECS)}); default: all",
    )
    parser.add_argument(
        "--data-dir", default=os.environ.get("CNNLAB_DATA_DIR", PROJECT_ROOT / "data")
    )
    parser.add_argument(
        "--no-download", action="store_true", help="only use local files and mirrors"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    failed = 0
    for name in args.names or list(SPECS):
        try:
            folder = ensure_dataset(name, args.data_dir, DEFAULT_MIRRORS, not args.no_download)
            print(f"ok    {name}: verified in {folder}")
        except CnnlabError as e:
            failed += 1
            print(f"FAIL  {name}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
