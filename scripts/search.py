"""Hyper-parameter search with pruning: ``python scripts/search.py search=lenet_fashion n_trials=20 workers=2``.

Options (conf/search.yaml): ``search=<name>`` (the space: conf/search/<name>.yaml; any of its
keys can be overridden, e.g. ``search.params.model.dropout.high=0.3``), ``n_trials`` (in the
study in all: a re-run continues it), ``workers``, ``launcher=local|slurm``, ``storage=URL``,
``dir=PATH``. Prints each trial as it ends; writes trials.md, trials.csv (pruned trials
marked) and best.json (the best trial's overrides and the command that trains it) into dir.
"""

import sys

from omegaconf import OmegaConf

from cnnlab.cli import script
from cnnlab.config import compose_config
from cnnlab.search import best_trial, from_config, launch, open_study, write_report


def main(argv: list[str]) -> int:
    cfg = OmegaConf.to_container(compose_config("search", argv), resolve=True)
    search = from_config(cfg)
    where = search.storage or f"{search.dir}/study.journal"
    print(
        f"Search {search.name!r}: {search.n_trials} trials in all, {cfg['workers']} worker(s) "
        f"({cfg['launcher']}); study in {where}; trials in {search.dir}/trial_<n>",
        flush=True,
    )
    failures = launch(search, cfg["workers"], cfg["launcher"], cfg["slurm"])
    study = open_study(search)
    print(write_report(study, search))
    if best_trial(study, search) is None:
        failures.append("no trial completed: the failed trials' errors are listed above")
    for line in failures:
        print(f"Error: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    script(main)
