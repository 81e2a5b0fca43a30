"""What makes a run start fast and epochs cheap, checked as behaviour: nothing a run does not
need is imported, expensive figures are drawn at a bounded rate yet never missing at the
end, parallel sweep jobs share the cores instead of fighting over them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.profilers import PassThroughProfiler
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.build import build
from cnnlab.errors import ConfigError
from cnnlab.process_settings import cpu_threads
from cnnlab.run import train
from tests.support.synthetic import write_mnist_like

from .conftest import QUICK, make_cfg, subprocess_env


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    write_mnist_like(d, "mnist", n_train=600, n_test=200)
    return d


def test_a_run_without_augmentation_never_imports_albumentations_or_opencv(mnist_dir, tmp_path):
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from tests.conftest import make_cfg, QUICK
from cnnlab.run import train
from pathlib import Path
m = train(make_cfg(Path({str(tmp_path)!r}), Path({str(mnist_dir)!r}), *QUICK,
                   "trainer.max_epochs=1"))
print(m["status"], "albumentations" in sys.modules, "cv2" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # 0.3 s of start-up (pyplot comes with pytorch_lightning itself, through torchmetrics)
    assert out.stdout.split()[-3:] == ["completed", "False", "False"]
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))


def test_torch_and_lightning_are_imported_without_repeated_full_collections():
    # a fresh interpreter: this one has imported them already
    code = """
import gc
from cnnlab.startup import heavy_imports
full = []
gc.callbacks.append(lambda phase, info: phase == "start" and full.append(info["generation"]))
with heavy_imports():
    import pytorch_lightning
frozen = gc.get_freeze_count()
print(full.count(2), gc.isenabled(), frozen)
job = [[i] for i in range(1000)]  # a job's objects
with heavy_imports():  # the next job of a sweep: nothing more is frozen
    import torch
print(gc.get_freeze_count() == frozen)
try:
    gc.unfreeze(); gc.callbacks.clear()
    del __import__("sys").modules["pytorch_lightning"]
    with heavy_imports():
        raise KeyError
except KeyError:
    print(gc.isenabled())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    first, again, failed = out.stdout.splitlines()
    collections, enabled, frozen = first.split()
    # one full collection (its own, at the end) instead of one every few thousand objects
    # (7 for these imports; together 1.8 s of a 4.2 s start on a 2-core CPU)
    assert (collections, enabled) == ("1", "True")
    assert int(frozen) > 100_000  # the imported modules' objects, left out of collections
    assert again == "True" and failed == "True"


_TRITON = """
import logging, sys, torch
gpu = sys.argv[1] == "gpu"
torch.cuda.is_available = lambda: gpu  # the machine as the case asks, decided before the imports
from cnnlab.startup import heavy_imports
with heavy_imports():
    import pytorch_lightning
import torch._dynamo.utils as dynamo
flops = logging.getLogger("torch.utils.flop_counter").level
print(sys.modules.get("triton", "absent") is None, dynamo.has_triton_package(), flops)
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="no Triton installed")
@pytest.mark.parametrize("machine", ["cpu", "gpu"])
def test_triton_is_kept_out_of_a_run_only_on_a_machine_without_a_gpu(machine):
    # Triton is a GPU kernel compiler that torch._dynamo imports whenever it is installed:
    # 94 MB of resident memory a CPU run never uses (README "Performance and footprint")
    out = subprocess.run(
        [sys.executable, "-c", _TRITON, machine],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    kept_out, dynamo_sees_triton, flop_log_level = out.stdout.split()
    if machine == "cpu":  # torch takes it as a CPU-only install: dynamo works on without it
        assert (kept_out, dynamo_sees_triton, flop_log_level) == ("True", "False", "40")
        assert "triton not found" not in out.stderr  # torch's warning for CUDA builds, silenced
    else:  # a GPU may compile with it: imported as usual, nothing silenced
        assert (kept_out, dynamo_sees_triton, flop_log_level) == ("False", "True", "0")


_SCIPY_SIGNAL = """
import sys
from cnnlab.startup import heavy_imports
with heavy_imports():
    import pytorch_lightning, torchmetrics  # torchmetrics asks scipy.signal for hamming
print("scipy.stats" in sys.modules, sys.modules["scipy.signal"].__doc__.split(",")[0])
import numpy as np
import scipy.signal.windows  # a submodule import loads the real package
from scipy.signal import convolve2d
image, kernel = np.arange(12.0).reshape(3, 4), np.array([[1.0, -2.0], [0.5, 3.0]])
expected = np.zeros((4, 5))  # a full 2-D convolution, spelt out
for i in range(3):
    for j in range(4):
        expected[i : i + 2, j : j + 2] += image[i, j] * kernel
n = np.arange(5)
hamming = 0.54 - 0.46 * np.cos(2 * np.pi * n / 4)
print(
    np.allclose(convolve2d(image, kernel), expected),
    np.allclose(scipy.signal.windows.hamming(5), hamming),
    np.allclose(sys.modules["scipy.signal"].hamming(5), hamming),
    sys.modules["scipy.signal"].__file__.endswith("__init__.py"),
)
"""


def test_scipy_signal_is_loaded_when_first_used_not_at_start():
    # torchmetrics imports it at start for an audio metric: ~1 s and 60 MB with scipy.stats
    out = subprocess.run(
        [sys.executable, "-c", _SCIPY_SIGNAL], capture_output=True, text=True, env=subprocess_env()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    at_start, on_use = out.stdout.splitlines()
    assert at_start == "False scipy.signal"  # scipy.stats never loaded; the stand-in in place
    assert on_use == "True True True True"  # then the real module, whole, and what it computes


@pytest.mark.slow  # an inductor compile: a C++ compiler run
def test_a_cpu_run_compiles_its_net_without_triton(tmp_path):
    # torch.compile's CPU backend generates C++: keeping Triton out must not break compile=true
    code = """
import sys, torch
from cnnlab.startup import without_triton_on_cpu
assert without_triton_on_cpu()
net = torch.compile(torch.nn.Linear(3, 2), backend="inductor")
x = torch.randn(4, 3)
print(torch.allclose(net(x), net._orig_mod(x)), sys.modules["triton"] is None)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**subprocess_env(), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU keeps Lightning's NVML check")
def test_without_a_gpu_an_optimiser_step_does_not_look_for_the_nvml_library():
    code = """
import ctypes, os, torch, pytorch_lightning
assert os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1"  # Lightning's
from cnnlab.process_settings import configure_torch
configure_torch()
opened, load = [], ctypes.CDLL.__init__
ctypes.CDLL.__init__ = lambda self, name, *a, **k: (opened.append(name), load(self, name, *a, **k))
net = torch.nn.Linear(4, 2)
opt = torch.optim.Adam(net.parameters())
for _ in range(20):
    opt.zero_grad(); net(torch.randn(3, 4)).sum().backward(); opt.step()
print(len(opened), "PYTORCH_NVML_BASED_CUDA_CHECK" in os.environ)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "False"]  # with the variable: 20 failed dlopens


def _confusion_steps(run_dir: Path) -> list[int]:
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    return [e.step for e in acc.Images("val/confusion_matrix")]


def test_the_validation_confusion_figure_is_drawn_every_n_epochs_and_for_the_last(
    mnist_dir, tmp_path
):
    # 10 batches an epoch; stopped by max_steps after 5 of 7 epochs, off the every-2 rhythm
    train(
        make_cfg(
            tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=7", "+trainer.max_steps=50",
            "callbacks.diagnostics.every_n_epochs=2",
        )
    )  # fmt: skip
    # after epochs 2 and 4 (steps 20 and 40), and after the final, 5th epoch (step 50)
    assert _confusion_steps(tmp_path / "run") == [20, 40, 50]
    counts = EventAccumulator(str(tmp_path / "run"))
    counts.Reload()
    assert "val/confusion_counts/text_summary" in counts.Tags()["tensors"]


def test_the_final_figure_is_not_drawn_twice(mnist_dir, tmp_path):
    train(make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=5"))  # default every 5
    assert _confusion_steps(tmp_path / "run") == [50]  # the 5th epoch is also the last


@pytest.mark.parametrize("value", [0, -1, 1.5, "often"])
def test_a_bad_figure_rate_is_refused(value, mnist_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"callbacks.diagnostics.every_n_epochs=.*>= 1"):
        train(make_cfg(tmp_path, mnist_dir, f"callbacks.diagnostics.every_n_epochs={value}"))


class _SeeProfiler(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[object] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        self.seen.append(trainer.profiler)


def test_a_run_profiles_nothing_unless_asked_then_reports_each_batch_in_the_run(
    mnist_dir, tmp_path
):
    plain = _SeeProfiler()
    train(make_cfg(tmp_path / "plain", mnist_dir, *QUICK, "trainer.max_epochs=1"), [plain])
    assert len(plain.seen) == 10 and all(type(p) is PassThroughProfiler for p in plain.seen)
    assert not list((tmp_path / "plain").rglob("*profile*"))

    asked = _SeeProfiler()
    cfg = make_cfg(tmp_path, mnist_dir, *QUICK, "trainer.max_epochs=2", "trainer.profiler=simple")
    train(cfg, [asked])
    rows = {
        cells[1].strip(): cells[3].strip()  # action -> number of calls
        for line in (tmp_path / "run" / "fit-profile.txt").read_text().splitlines()
        if len(cells := line.split("|")) > 4
    }
    assert rows["run_training_batch"] == "20"  # 2 epochs of 10 batches, each timed
    assert rows["[Callback]_SeeProfiler.on_train_batch_end"] == "20"


def test_parallel_sweep_jobs_get_a_fair_share_of_the_cores(monkeypatch, mnist_dir, tmp_path):
    from hydra.core.hydra_config import HydraConfig

    cfg = make_cfg(tmp_path, mnist_dir)
    assert cpu_threads(cfg) is None  # a single run: torch's own default
    cfg.threads = 3
    assert cpu_threads(cfg) == 3
    cfg.threads = None
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    for n_jobs, share in ((3, 2), (16, 1), (1, None)):  # 8 cores // n_jobs
        launcher = OmegaConf.create({"launcher": {"n_jobs": n_jobs}})
        monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
        monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda c=launcher: c))
        assert cpu_threads(cfg) == share
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"threads=0 must be a positive integer"):
        train(make_cfg(tmp_path, mnist_dir, "threads=0"))


def test_label_smoothing_smooths_training_targets_only(mnist_dir, tmp_path):
    _, model = build(make_cfg(tmp_path, mnist_dir, "loss.label_smoothing=0.2"))
    model.log = lambda *a, **k: None  # no trainer here
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    logp = model(x).log_softmax(1)
    smoothed = -(0.8 * logp.gather(1, y[:, None]).squeeze(1) + 0.2 * logp.mean(1)).mean()
    plain = -logp.gather(1, y[:, None]).mean()
    assert model.training_step((x, y), 0).item() == pytest.approx(smoothed.item(), rel=1e-5)
    model._eval_step((x, y), model.val_loss, model.val_confmat)
    assert model.val_loss.compute().item() == pytest.approx(plain.item(), rel=1e-5)
    with pytest.raises(ConfigError, match=r"loss.label_smoothing=1.0 must be in \[0, 1\)"):
        build(make_cfg(tmp_path, mnist_dir, "loss.label_smoothing=1.0"))


@pytest.mark.parametrize("lean", [True, False])
def test_the_training_loss_is_logged_only_at_the_steps_the_logger_writes(
    lean, mnist_dir, tmp_path, monkeypatch
):
    from cnnlab.lit import ImageClassifier

    calls, real = [], ImageClassifier.log

    def counting(self, *args, **kwargs):
        calls.append(args[0] if args else kwargs["name"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ImageClassifier, "log", counting)
    overrides = ("trainer.max_epochs=2", "trainer.log_every_n_steps=3", f"lean_loop={lean}")
    train(make_cfg(tmp_path, mnist_dir, *QUICK, *overrides))
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    written = [e.step for e in acc.Scalars("train/loss")]
    # TensorBoard shows the same points either way: 10 batches x 2 epochs
    assert written == [s for s in range(20) if (s + 1) % 3 == 0]
    # lean_loop: not one self.log per step (1 ms each); Lightning as shipped: every step
    assert calls.count("train/loss") == (len(written) if lean else 20)


@pytest.mark.parametrize("value", ["fast", 1, "null"])
def test_a_bad_lean_loop_is_refused(value, mnist_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"lean_loop=.* must be true .* or false"):
        train(make_cfg(tmp_path, mnist_dir, f"lean_loop={value}"))
