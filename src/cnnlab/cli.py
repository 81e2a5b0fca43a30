"""What the entry points share: user errors print one clear message, not a stack trace."""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import logging
import os
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnlab.errors import CnnlabError

# Lightning's switch for a GPU check that does not initialise CUDA (see without_triton_on_cpu)
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"

log = logging.getLogger("cnnlab")

EXIT_USER_ERROR = 2
# the run folder of this process (Hydra's run mode) -> the names it held before (None: no folder)
OUTPUT_BEFORE: dict[str, set[str] | None] = {}


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Import torch and Lightning with Python's cycle collector paused, then freeze what they built.

    They create about 460,000 long-lived objects, and each full collection the imports trigger
    walks all of them: measured 1.8 s of a 4.2 s ``import torch, pytorch_lightning`` on a 2-core
    CPU, and 0.25 s more at exit. One collection at the end frees the imports' own garbage;
    the survivors are frozen, left out of later collections (modules and their state live as
    long as the process anyway; reference counting still frees them). Only the first import
    pays: later (the next job of a sweep) this does nothing, so an earlier job's objects are
    never frozen. Without a GPU, Triton is kept out first (``without_triton_on_cpu``), and
    scipy.signal is loaded when first used, not at start (``scipy_signal_on_first_use``).
    """
    if not gc.isenabled() or "pytorch_lightning" in sys.modules:
        yield
        return
    gc.disable()
    try:
        without_triton_on_cpu()
        scipy_signal_on_first_use()
        yield
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()


def without_triton_on_cpu() -> bool:
    """On a machine without a GPU, keep Triton, a GPU kernel compiler, out of the process.

    torch._dynamo imports Triton whenever the package is installed (it comes with the CUDA
    build of torch), and torchvision and Lightning import dynamo at start: Triton's library
    then costs 94 MB of resident memory (``import torch, pytorch_lightning`` peaks at 796 MB
    with it, 702 MB without, on this machine). A CPU run never uses it: torch.compile's CPU
    backend generates C++. A ``None`` in ``sys.modules`` makes ``import triton`` raise
    ImportError, exactly as on a CPU-only install of torch, which torch handles everywhere.
    Returns whether Triton was kept out.
    """
    if "triton" in sys.modules:  # imported already (or kept out already): nothing to decide
        return sys.modules["triton"] is None
    import torch

    # the GPU check that does not initialise CUDA, as Lightning sets it (a forked worker
    # could not use CUDA after that); cnnlab.process_settings.configure_torch drops it again without a GPU
    os.environ.setdefault(NVML_CHECK, "1")
    xpu = getattr(torch, "xpu", None)  # Intel GPUs compile with Triton too (torch >= 2.4)
    if torch.cuda.is_available() or (xpu is not None and xpu.is_available()):
        return False
    sys.modules["triton"] = None
    # torch's flop counter warns once that it cannot count Triton kernels: none run here
    logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
    return True


def scipy_signal_on_first_use() -> bool:
    """Load scipy.signal when something first uses it, not when torchmetrics starts.

    Lightning imports torchmetrics, and torchmetrics imports scipy.signal at start only to patch
    in ``scipy.signal.hamming`` for an audio metric (``if not hasattr(scipy.signal, "hamming")``).
    That import pulls in scipy.stats: about 1 s and 60 MB (measured on a 2-core CPU), which an
    image classifier never uses. A stand-in module in ``sys.modules`` already has ``hamming``, so
    that check passes without loading anything; any other attribute loads the real module,
    which then replaces the stand-in (``from scipy.signal import convolve2d`` works as ever),
    patched as torchmetrics would have patched it.
    Returns whether the stand-in was installed.
    """
    name = "scipy.signal"
    if name in sys.modules or importlib.util.find_spec("scipy") is None:
        return False
    stand_in = types.ModuleType(name, "scipy.signal, loaded on first use (cnnlab.cli)")

    def real() -> types.ModuleType:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        module = importlib.import_module(name)
        if not hasattr(module, "hamming"):  # torchmetrics' patch, which the stand-in skipped
            module.hamming = module.windows.hamming
        return module

    def __getattr__(attr: str):
        # inspect.getmodule() reads __file__ of every module in sys.modules (torch does at
        # start): such questions are not a use. A submodule import (__path__) or * is.
        if attr.startswith("__") and attr not in ("__path__", "__all__"):
            raise AttributeError(attr)
        return getattr(real(), attr)

    def hamming(*args, **kwargs):  # what torchmetrics looks for; a real call loads the module
        return real().windows.hamming(*args, **kwargs)

    stand_in.__getattr__ = __getattr__
    stand_in.hamming = hamming
    sys.modules[name] = stand_in
    return True


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


def parse_key_values(
    argv: list[str],
    required: tuple[str, ...] = (),
    optional: dict[str, str] | None = None,
    positive_ints: tuple[str, ...] = (),
    ints: tuple[str, ...] = (),
) -> dict[str, str]:
    """``key=value`` arguments (Hydra's style) for the small scripts; CnnlabError on misuse."""
    optional = optional or {}
    out = dict(optional)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in (*required, *optional):
            raise CnnlabError(
                f"Unexpected argument {arg!r}. Expected key=value with keys: "
                f"{', '.join((*required, *optional))}."
            )
        out[key] = value
    missing = [k for k in required if not out.get(k)]
    if missing:
        raise CnnlabError(f"Missing {', '.join(f'{k}=...' for k in missing)}.")
    for key in (*positive_ints, *ints):
        minimum = 1 if key in positive_ints else 0
        if not out[key].isdigit() or int(out[key]) < minimum:
            raise CnnlabError(f"{key}={out[key]!r} must be an integer >= {minimum}.")
    return out


def split_key_values(argv: list[str], own: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """A script's own ``key=value`` arguments (``own``: their defaults) and the rest, in order
    (train.py's overrides, for scripts that compose the train config)."""
    values, rest = dict(own), []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in own:
            values[key] = value
        else:
            rest.append(arg)
    return values, rest


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
