"""Shared fixtures: tiny datasets in the real on-disk formats, configs composed in-process."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config import PROJECT_ROOT, compose_config
from cnnlab.data.formats import CACHE_DIR_ENV
from cnnlab.data.sources import ensure_dataset
from cnnlab.data.specs import get_spec
from tests.support import subprocess_env  # noqa: F401  (tests import it from here)
from tests.support.formats import md5_overrides, write_idx
from tests.support.synthetic import make_images, write_cifar_like, write_mnist_like, write_synthetic

FASHION_MIRROR = Path("/usr/share/datasets/fashion-mnist")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (make test: one worker per core), each worker's torch gets its share
    of the cores, and so do the scripts it starts: torch's default of a thread per core in every
    worker has the threads of one worker wait on those of the other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(share)
        os.environ["OMP_NUM_THREADS"] = str(share)  # inherited by subprocess_env()


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """cnnlab's per-user cache (the md5 sums it has checked) in a temporary folder, not the
    user's ~/.cache; subprocesses inherit it."""
    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("cnnlab-cache")))
    yield
    patch.undo()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def tiny_mnist(data_dir: Path) -> Path:
    write_mnist_like(data_dir, "mnist", n_train=600, n_test=200)
    return data_dir


def patch_md5(monkeypatch: pytest.MonkeyPatch, name: str, sums: dict[str, str]) -> None:
    """Make torchvision (and cnnlab, which reads the same lists) expect our tiny files' md5."""
    for obj, attr, value in md5_overrides(get_spec(name).format, sums):
        monkeypatch.setattr(obj, attr, value)


def patch_cifar_md5(monkeypatch: pytest.MonkeyPatch, sums: dict[str, str]) -> None:
    patch_md5(monkeypatch, "cifar10", sums)


@pytest.fixture
def tiny_svhn(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    patch_md5(monkeypatch, "svhn", write_synthetic("svhn", data_dir, n_train=500, n_test=200))
    return data_dir


@pytest.fixture
def tiny_cifar(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    patch_cifar_md5(monkeypatch, write_cifar_like(data_dir, n_train=500, n_test=200))
    return data_dir


# a quick, learnable setting for tiny MNIST-format data (600 training images)
QUICK = ("data.val_size=100", "data.batch_size=50", "optimizer.lr=0.003")


def tiny_run(tmp: Path, *overrides: str):
    """A short real LeNet-5 run on tiny MNIST-format data written under ``tmp``: (cfg, metrics)."""
    from cnnlab.run import train

    data_dir = tmp / "data"
    write_mnist_like(data_dir, "mnist", n_train=600, n_test=200)
    cfg = make_cfg(tmp, data_dir, *QUICK, *overrides)
    return cfg, train(cfg)


def write_noisy_mnist(
    data_dir: Path, n_train: int = 1000, n_test: int = 300, flip: float = 0.3, seed: int = 0
) -> Path:
    """MNIST-format data a net learns, but never perfectly: the bar patterns of
    ``make_images`` under heavy noise, and a share ``flip`` of the labels replaced by a random
    class. Accuracy climbs from chance over a few epochs and stays well below 1.0 (about
    ``1 - flip * 0.9`` at best), so best-epoch tracking, per-class accuracy and loss weighting
    have something to show. Written here with ``write_idx`` only, in torchvision's layout."""
    rng = np.random.default_rng(seed + 1000)
    folder = get_spec("mnist").target_dir(data_dir)
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        images, labels = make_images(n, (1, 28, 28), 10, s, noise=200)
        flipped = rng.random(n) < flip
        labels[flipped] = rng.integers(0, 10, size=int(flipped.sum()))
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images[..., 0])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return data_dir


@pytest.fixture
def noisy_mnist(data_dir: Path) -> Path:
    return write_noisy_mnist(data_dir)


def make_cfg(tmp_path: Path, data_dir: Path | None, *overrides: str, config: str = "train"):
    """A config for a quick, quiet, offline CPU run writing into tmp_path/run."""
    base = []
    if config == "train":
        base = ["trainer.accelerator=cpu", "trainer.num_sanity_val_steps=0"]
        if "callbacks=none" not in overrides:
            base.append("callbacks.progress_bar.refresh_rate=0")
    if data_dir is not None:
        base += [f"paths.data_dir={data_dir}", "paths.dataset_mirrors=[]"]
        if config == "train":
            base.append("data.download=false")
    return compose_config(config, [*base, *overrides], output_dir=tmp_path / "run")


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory) -> Path:
    """A data_dir holding the real Fashion-MNIST, prepared once from Debian's package."""
    if not (FASHION_MIRROR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    data_dir = tmp_path_factory.mktemp("fashion")
    ensure_dataset("fashion_mnist", data_dir, mirrors=[str(FASHION_MIRROR.parent)], download=False)
    return data_dir


def script_command(name: str) -> str:
    """The ``cnnlab`` command a script under the project (``scripts/x.py``) is another name of."""
    return re.search(r'alias\("([\w-]+)"\)', (PROJECT_ROOT / name).read_text()).group(1)


def script_main(name: str):
    """What ``python NAME ARGV...`` runs once started, as a function of ``argv`` that raises a
    user error (``CnnlabError``) rather than printing it and exiting 2."""
    from cnnlab.commands import COMMANDS, compose_command

    command = COMMANDS[script_command(name)]
    return lambda argv: command.run(compose_command(command, list(argv))) or 0


def run_script(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python NAME ARGS...`` without a new interpreter (seconds of torch start-up each): the
    command the script names, its exit status, stdout and stderr. For what only a process shows
    (imports, signals, Hydra), start one."""
    from cnnlab.commands import run

    out, err = io.StringIO(), io.StringIO()
    argv = [str(PROJECT_ROOT / name), *args]
    with (
        contextlib.chdir(cwd or Path.cwd()),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(sys, "argv", argv)
        try:
            code = run(script_command(name), list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    """A script refused bad input as cnnlab promises: exit 2, one line ``Error: ...`` matching
    ``pattern`` on stderr, no traceback."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr[-2000:]
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in proc.stderr


# data=folder test images: three classes a small net tells apart
FOLDER_CLASSES = ("circle", "cross", "stripes")


def _draw(kind: str, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    img = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
    if kind == "stripes":
        img[::4] = (220, 40, 40)
    elif kind == "cross":
        img[h // 2 - 2 : h // 2 + 2] = (40, 220, 40)
        img[:, w // 2 - 2 : w // 2 + 2] = (40, 220, 40)
    else:
        yy, xx = np.mgrid[:h, :w]
        img[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2] = (40, 40, 220)
    return img


def write_folder(root, per_class=8, seed=0, sizes=((40, 30), (24, 24), (50, 64))):
    """PNG files in class sub-folders, of several sizes (written here with PIL only)."""
    rng = np.random.default_rng(seed)
    for kind in FOLDER_CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = _draw(kind, rng, sizes[i % len(sizes)])
            Image.fromarray(arr).save(root / kind / f"{i}.png")
    return root


@pytest.fixture
def small_disk(tmp_path: Path):
    """``mount(size, read_only=False)``: a real small file system (tmpfs) under ``tmp_path``, for
    what a full or read-only disk does; unmounted afterwards. Skips where mounting is not
    permitted (not root, or a container without CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def mount(size: str, read_only: bool = False) -> Path:
        if shutil.which("mount") is None:
            pytest.skip("no mount command here to make a small file system")
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not permitted'})")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)
