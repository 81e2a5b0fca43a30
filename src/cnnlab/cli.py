"""What the entry points share: user errors print one clear message, not a stack trace."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")

EXIT_USER_ERROR = 2
# the run folder of this process (Hydra's run mode) -> the names it held before (None: no folder)
OUTPUT_BEFORE: dict[str, set[str] | None] = {}


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra sweep (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_app(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run ``fn(cfg)``; a CnnlabError exits with status 2 and its message only.

    In a multirun the error is re-raised instead, so Hydra records that one job as failed
    and the sweep goes on with the others.
    """
    try:
        return fn(cfg)
    except CnnlabError as e:
        if in_multirun():
            raise
        log.debug("user error", exc_info=True)
        discard_new_output()
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def script(main: Callable[[list[str]], int | None]) -> None:
    """Run a small script's ``main(argv)`` and exit: a CnnlabError prints one line, exit 2."""
    try:
        code = main(sys.argv[1:])
    except CnnlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        code = EXIT_USER_ERROR
    sys.exit(code or 0)


class WritableOutput(Callback):
    """Hydra creates the run (or sweep) folder before cnnlab's code runs, and a folder it cannot
    create (a read-only disk, a path under a file) ends in a raw traceback. This hook creates it
    first (conf/hydra/default.yaml) and refuses in one line, exit 2, with the override to use."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pathlib import Path

        folder = Path(config.hydra.run.dir).absolute()  # what it held before: discard_new_output
        OUTPUT_BEFORE[str(folder)] = set(os.listdir(folder)) if folder.is_dir() else None
        self._make(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._make(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _make(folder: str, key: str) -> None:
        from pathlib import Path

        problem = None
        try:  # the run's path is written into UTF-8 text files (metrics.json, train.log)
            folder.encode("utf-8")
        except UnicodeEncodeError:
            problem = (
                f"{key}={os.fsencode(folder)!r} is not UTF-8 text, and a run writes its folder's "
                f"path into UTF-8 files (metrics.json, train.log), so it is not created"
            )
        if problem is None:
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                problem = f"cannot create the output folder {folder} ({e.strerror or e})"
        # an existing folder (an earlier run's, to re-run or evaluate into) on a read-only disk:
        # Hydra's log file would fail to open in it with a logging traceback
        if problem is None and not os.access(folder, os.W_OK):
            problem = f"cannot write to the output folder {folder} (it is read-only)"
        if problem:
            print(
                f"Error: {problem}. Write elsewhere with {key}=PATH, or every run with "
                f"paths.log_dir=PATH.",
                file=sys.stderr,
            )
            sys.exit(EXIT_USER_ERROR)


class LauncherAvailable(Callback):
    """``hydra/launcher=slurm`` submits every job through SLURM: without its commands submitit
    fails with a traceback after the sweep folder is made. Refused first, in one line, exit 2,
    with the launchers that work here (conf/hydra/default.yaml)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import shutil

        from omegaconf import OmegaConf

        target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
        if "Slurm" in target and shutil.which("srun") is None:
            print(
                "Error: hydra/launcher=slurm needs a SLURM cluster, and srun is not found on "
                "this machine (PATH). Start the sweep on the cluster's login node, or run it "
                "here with hydra/launcher=parallel (jobs side by side) or without "
                "hydra/launcher= (one after another).",
                file=sys.stderr,
            )
            sys.exit(EXIT_USER_ERROR)


def discard_new_output() -> None:
    """A command refused before its run claimed the output folder leaves no run folder behind,
    or, in a folder that was there before, no log file that was not.

    Hydra creates the folder, and its log file, before any cnnlab code runs (``WritableOutput``
    notes what the folder held before that).
    """
    for folder, before in OUTPUT_BEFORE.items():
        root = logging.getLogger()
        for handler in list(root.handlers):
            name = os.path.basename(getattr(handler, "baseFilename", ""))
            if os.path.dirname(getattr(handler, "baseFilename", "")) != folder:
                continue
            handler.close()
            root.removeHandler(handler)
            if before is None or name not in before:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
        if before is None:
            with contextlib.suppress(OSError):  # fails, harmlessly, unless the folder is empty
                os.rmdir(folder)


class WeightsReady(Callback):
    """``model.pretrained=true``: fetch the published weights before the run folder exists
    (conf/hydra/default.yaml lists this hook first), and when they can be neither found in
    the cache nor downloaded, refuse in one line, exit 2, leaving nothing behind."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        node = OmegaConf.select(config, "model")
        if node is None or OmegaConf.select(config, "ckpt_path"):
            return  # no model (eval.py), or a resumed run: its checkpoint holds the weights
        if OmegaConf.select(node, "pretrained") is not True:
            return  # torch is imported below only when there are weights to fetch
        from cnnlab.weights import published, published_file

        try:
            published_file(published(OmegaConf.to_container(node, resolve=True)))
        except CnnlabError as e:
            print(f"Error: {e}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
