"""What a bar chart of a sweep shows, as data: ``cnnlab.compare.bars`` makes it from the runs,
``cnnlab.viz.figures.sweep_figure`` draws it (and matplotlib is imported only there)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bars:
    """What a sweep's bar chart shows (``cnnlab.viz.figures.sweep_figure`` draws it): a bar per
    row of the table, in the order of its swept values."""

    metric: str
    labels: list[str]  # the row's swept values, and its number of runs when several
    values: list[float]  # the metric, or its mean over the row's runs
    errors: list[float]  # one sample std over the row's runs; 0 for a single run
    colour_by: str | None  # the first swept key: bars with one value of it share a colour
    colours: list[str]  # each bar's value of it ("" without swept keys)
    title: str
