"""Config plumbing: where conf/ lives, composing in-process, checking values early."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnlab.errors import CnnlabError, ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
# The YAML configs are package data, so an installed cnnlab has them too. In a checkout the
# top-level conf/ (where train.py's config_path points and users edit) is a symlink to this
# folder: one copy of each file, shipped as it is edited.
CONFIG_DIR = PACKAGE_DIR / "conf"


def _project_root() -> Path:
    """Where outputs/ and data/ go: the checkout this package sits in (src/cnnlab, beside
    pyproject.toml), else $CNNLAB_ROOT or the current directory, never site-packages."""
    checkout = PACKAGE_DIR.parents[1]
    if PACKAGE_DIR.parent.name == "src" and (checkout / "pyproject.toml").is_file():
        return checkout
    return Path(os.environ.get("CNNLAB_ROOT") or os.getcwd()).resolve()


PROJECT_ROOT = _project_root()
# trainer.profiler's values: Lightning's names for its profilers -> their classes there
PROFILERS = {
    "simple": "SimpleProfiler",
    "advanced": "AdvancedProfiler",
    "pytorch": "PyTorchProfiler",
}

# conf/paths/default.yaml anchors outputs/ and data/ at the project, not at the current
# directory, so `python ../train.py` from anywhere writes to the same place (and an installed
# cnnlab, whose project is the current directory, keeps it when a run changes directory).
os.environ.setdefault("CNNLAB_ROOT", str(PROJECT_ROOT))


def compose_with_hydra(config_name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """A config composed in-process with its ``hydra`` node (run dir, the groups' choices)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            return compose(config_name, overrides=list(overrides), return_hydra_config=True)
        except HydraException as e:  # unknown option or key: Hydra's message lists the choices
            raise ConfigError(str(e)) from None


def compose_config(
    config_name: str = "train",
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
) -> DictConfig:
    """Compose a config the way ``train.py`` would, without starting a Hydra app.

    Used by tests and the commands. ``output_dir`` stands in for Hydra's run directory; by
    default it is ``hydra.run.dir`` as composed (not created), as in a Hydra app.
    """
    cfg = compose_with_hydra(config_name, overrides)
    with open_dict(cfg):
        cfg.hydra.job.name = config_name
    if output_dir is None:  # resolved as Hydra resolves it: ${hydra:...} answered by a copy
        HydraConfig.instance().set_config(copy.deepcopy(cfg))
        output_dir = OmegaConf.select(cfg, "hydra.run.dir", default=None)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # resolved by now through HydraConfig; the app never sees it
    return cfg


def overrides() -> list[str]:
    """The command-line overrides of the current run (empty outside Hydra)."""
    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return []


def _positive(cfg: DictConfig, key: str, integer: bool, example: str, allow: tuple = ()) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None or value in allow:
        return
    kinds = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or not 0 < value < math.inf:
        what = "integer" if integer else "number"
        raise ConfigError(f"{key}={value!r} must be a positive {what} (e.g. {example}).")


def validate(cfg: DictConfig) -> None:
    """Check the values that would otherwise fail late or silently, before any heavy work.

    Values a component owns (dropout, depth, activation, batch and split sizes...) are
    checked by that component when it is built, which also happens before any data is read.
    """
    _positive(cfg, "trainer.max_epochs", True, "trainer.max_epochs=10")
    _positive(cfg, "optimizer.lr", False, "optimizer.lr=0.001")
    _positive(cfg, "threads", True, "threads=1")
    _positive(cfg, "trainer.gradient_clip_val", False, "trainer.gradient_clip_val=1.0", allow=(0,))
    # 0 batches would "complete" a run that never trained
    for split in ("train", "val", "test"):
        _positive(
            cfg, f"trainer.limit_{split}_batches", False, f"trainer.limit_{split}_batches=0.5"
        )
    workers = OmegaConf.select(cfg, "data.num_workers")
    if workers is not None and (
        not isinstance(workers, int) or isinstance(workers, bool) or workers < 0
    ):
        raise ConfigError(
            f"data.num_workers={workers!r} must be an integer >= 0, or null to choose "
            f"(0: batches made in the training process)."
        )
    layout = OmegaConf.select(cfg, "channels_last")
    if layout not in (None, True, False, "auto"):
        raise ConfigError(
            f"channels_last={layout!r} must be true, false or auto (auto: channels-last "
            f"memory format where it was measured faster: CPU, convolutions, no narrow batch norm)."
        )
    check_profiler(OmegaConf.select(cfg, "trainer.profiler"))
    warmup = OmegaConf.select(cfg, "scheduler.warmup_epochs", default=None)
    epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if warmup is not None and epochs is not None:  # the scheduler is built after data loads
        check_warmup(warmup, epochs)
    seed = OmegaConf.select(cfg, "seed")
    # numpy's generators take seeds in [0, 2**32), and seed_everything seeds numpy
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed!r} must be an integer in [0, 2**32) (e.g. seed=0).")


def check_warmup(warmup_epochs: Any, epochs: Any) -> None:
    """``scheduler.warmup_epochs``: a number of epochs in [0, the run's epochs]."""
    if (
        isinstance(warmup_epochs, bool)
        or not isinstance(warmup_epochs, (int, float))
        or not (0 <= warmup_epochs <= epochs)
    ):
        raise ConfigError(
            f"scheduler.warmup_epochs={warmup_epochs!r} must be a number in [0, {epochs}], "
            f"at most the run's epochs (trainer.max_epochs; e.g. scheduler.warmup_epochs=1; "
            f"0.5 is half an epoch)."
        )


def check_profiler(name: object) -> None:
    if name is not None and name not in PROFILERS:
        raise ConfigError(
            f"trainer.profiler={name!r} is not a profiler: use one of {', '.join(PROFILERS)} "
            f"(e.g. trainer.profiler=simple for the time spent in each hook), or null for none."
        )


def plain(cfg: Any) -> Any:
    """Config node -> plain dicts/lists (checkpoints and records hold no OmegaConf objects)."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def create(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, but a user error raised inside comes out as itself.

    Hydra wraps every exception of a constructor in InstantiationException; for a bad value
    the user needs cnnlab's message (which names the value and the fix), not the wrapper.
    """
    check_arguments(node, kwargs)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, CnnlabError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def check_arguments(node: Any, given: dict) -> None:
    """A key of ``node`` that its class does not take (``+trainer.max_epoch=3``): ConfigError
    naming the closest argument, instead of the class's TypeError deep in the run."""
    import difflib
    import inspect

    from hydra.utils import get_object

    target = OmegaConf.select(node, "_target_") if isinstance(node, DictConfig) else None
    if target is None:
        return
    try:
        params = inspect.signature(get_object(target)).parameters
    except (ValueError, TypeError, ImportError):  # no signature to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # it takes any keyword
    known = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in node:
        if key.startswith("_") or key in known or key in given:
            continue
        where = node._get_full_key(key)
        prefix = where[: -len(key)]
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {prefix}{close[0]}? " if close else ""
        raise ConfigError(f"{where} is not an argument of {target}: {hint}(remove +{where}=...).")
