"""Import-speed measures for the entry points: torch and Lightning load once, fast, and lean."""

from __future__ import annotations

import gc
import importlib
import importlib.util
import logging
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

# Lightning's switch for a GPU check that does not initialise CUDA (see without_triton_on_cpu)
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


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
    stand_in = types.ModuleType(name, "scipy.signal, loaded on first use (cnnlab.startup)")

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
