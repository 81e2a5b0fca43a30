"""Measured resource use: peak resident memory of this process and of its children."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size in MB (of the largest child process, with ``children``)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    peak = resource.getrusage(who).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)  # macOS: bytes
