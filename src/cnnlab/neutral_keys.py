"""The config keys that do not change a run's result, in one table.

Three rules read it: a run's fingerprint leaves these keys out (``cnnlab.record``: re-running
a sweep from another folder, with other loader settings, finds its completed runs), a sweep
job's folder name leaves their overrides out (``exclude_keys`` in ``conf/hydra/default.yaml``,
held to this table by ``tests/test_neutral_keys.py``), and a checkpoint's data config never
supplies a place on disk (``cnnlab.checkpoint.PATH_KEYS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ANY = object()  # the key changes nothing whatever its value


@dataclass(frozen=True)
class Neutral:
    # the value at which the key changes nothing: a switch added after runs were recorded is
    # left out of their fingerprint only while it is off, so re-running an old sweep skips its
    # completed jobs and a switched-on run is a new one
    when: Any = ANY
    place: bool = False  # names a place on disk


NEUTRAL_KEYS: dict[str, Neutral] = {
    # where data and outputs live
    "paths": Neutral(place=True),
    "paths.data_dir": Neutral(place=True),
    "paths.dataset_mirrors": Neutral(place=True),
    "paths.log_dir": Neutral(place=True),
    "data.data_dir": Neutral(place=True),
    "data.mirrors": Neutral(place=True),
    "trainer.default_root_dir": Neutral(place=True),
    "ckpt_path": Neutral(place=True),  # a resumed run ends as the uninterrupted one would
    # what is shown and kept (early stopping, which is a callback, is kept in by the fingerprint)
    "callbacks": Neutral(),
    "callbacks.progress_bar.refresh_rate": Neutral(),
    "logger": Neutral(),
    # what to do with a folder that holds this config already
    "skip_completed": Neutral(),
    "auto_resume": Neutral(),
    # how batches are fetched and how fast a step runs, not which batches or what they compute
    "data.download": Neutral(),
    "data.num_workers": Neutral(),
    "data.pin_memory": Neutral(),
    "lean_loop": Neutral(),
    # switches added after runs were recorded, at their value that changes nothing
    "ema": Neutral(when={"enabled": False, "decay": 0.999}),
    "test_tta": Neutral(when=None),
    "aug.mixup_alpha": Neutral(when=0.0),
    "aug.cutmix_alpha": Neutral(when=0.0),
    "data.aug.mixup_alpha": Neutral(when=0.0),  # data.aug is ${aug}
    "data.aug.cutmix_alpha": Neutral(when=0.0),
    "trainer.gradient_clip_val": Neutral(when=None),
    "data.normalize": Neutral(when="dataset"),
    # transfer learning (README "Transfer learning"): the start, the inputs, fine-tuning
    "model.pretrained": Neutral(when=False),
    "model.init_from": Neutral(when=None),
    "model.strict": Neutral(when=True),
    "data.image_size": Neutral(when=None),
    "data.mean": Neutral(when=None),
    "data.std": Neutral(when=None),
    "finetune": Neutral(when={"freeze_epochs": 0, "backbone_lr": 1.0, "unfreeze": "all", "k": 1}),
}

# model keys added to some families only, with their value that changes nothing there
# (simple_cnn had model.head from the start: its head stays in the fingerprint)
NEUTRAL_MODEL_KEYS: dict[str, dict[str, Any]] = {
    "head": {"LeNet5": "flatten", "AlexNet": "flatten", "VGG": "flatten", "ResNet": "gap"},
}

# the overrides a sweep job's folder name leaves out beside the table's: Hydra's own
SWEEP_ONLY_KEYS = ("sweep", "hydra.sweep.dir")


def always_neutral() -> list[str]:
    """The keys that change nothing at any value, in the table's order."""
    return [key for key, n in NEUTRAL_KEYS.items() if n.when is ANY]


def switches() -> dict[str, Any]:
    """The keys that change nothing at one value: key -> that value."""
    return {key: n.when for key, n in NEUTRAL_KEYS.items() if n.when is not ANY}


def sweep_exclude_keys() -> list[str]:
    """``hydra.job.config.override_dirname.exclude_keys`` as this table makes it."""
    return [*SWEEP_ONLY_KEYS, *always_neutral()]


def places(group: str) -> tuple[str, ...]:
    """The keys of ``group`` that name places on disk, without the group: ("data_dir", ...)."""
    prefix = group + "."
    return tuple(
        key[len(prefix) :] for key, n in NEUTRAL_KEYS.items() if n.place and key.startswith(prefix)
    )
