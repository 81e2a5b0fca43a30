"""Bad inputs as a user types them, run for real: the table of docs/TROUBLESHOOTING.md and the test read this.

Each case is a real command line (``train.py``, ``eval.py``, a script) in a fresh process,
against real files made here: tiny MNIST-format data, a trained checkpoint and broken
copies of them. What is recorded is what the user sees: the exit status, the first line
printed, and whether every file that existed before the command is still there unchanged
("nothing lost"). ``python -m tools.update_readme --bad-inputs`` writes the table into docs/TROUBLESHOOTING.md;
``tests/test_bad_values.py`` checks every case against its expected line.
"""

from __future__ import annotations

import itertools
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from tests.support import CHECKOUT, subprocess_env

TRAIN = (
    "train.py",
    "paths.data_dir={data}",
    "paths.dataset_mirrors=[]",
    "data.download=false",
    "trainer.accelerator=cpu",
    "data.val_size=100",
    "hydra.run.dir={fresh}",
)
# a proxy nobody listens on: a download fails at once, online or not
DEAD_PROXY = "http://127.0.0.1:9"
EVAL = ("eval.py", "paths.data_dir={data}", "paths.dataset_mirrors=[]", "hydra.run.dir={fresh}")


@dataclass(frozen=True)
class Case:
    input: str  # the README's words for it
    argv: tuple[str, ...]  # a script under the project root, then its arguments ({name}: a file)
    pattern: str  # a regex the first line must match
    exit: int = 2
    stream: str = "stderr"  # where the line is printed
    one_line: bool = True  # the whole message is that line (Hydra's and a few lists are longer)
    # run as a process in the fast test suite too (the rest: make test-full): each way a process
    # ends (Hydra's error, cnnlab's line from train.py, eval.py and a script, a longer message,
    # a table on stdout) and what only a process shows (Hydra's launcher and output folder);
    # the fast suite checks every case's message in-process as well
    fast: bool = False
    env: tuple[tuple[str, str], ...] = ()  # environment variables set for it ({name}: a file)


CASES = (
    Case("`model=resnet` (also `data=`, `aug=`, `sweep=`)", (*TRAIN, "model=resnet"),
         r"model=resnet is not an option: did you mean model=resnet\d+\?", fast=True),
    Case("`trainer.max_epoch=3` (a typo'd key)", (*TRAIN, "trainer.max_epoch=3"),
         r"trainer.max_epoch is not a key of cnnlab train: did you mean trainer.max_epochs\?", fast=True),
    Case("`model.dropout=1.5`", (*TRAIN, "model.dropout=1.5"), r"model.dropout=1.5 is outside \[0, 1\)", fast=True),
    Case("`model.activation=swish`", (*TRAIN, "model.activation=swish"),
         r"Unknown model.activation='swish'. Valid: relu"),
    Case("`data.batch_size=0`", (*TRAIN, "data.batch_size=0"), r"data.batch_size=0 must be a positive integer"),
    Case("`trainer.max_epochs=0`", (*TRAIN, "trainer.max_epochs=0"), r"trainer.max_epochs=0 must be a positive integer"),
    Case("`optimizer.lr=-1`", (*TRAIN, "optimizer.lr=-1"), r"optimizer.lr=-1 must be a positive number"),
    Case("`optimizer.lr=inf`", (*TRAIN, "optimizer.lr=inf"), r"optimizer.lr=inf must be a positive number"),
    Case("`seed=4294967296`", (*TRAIN, "seed=4294967296"), r"seed=4294967296 must be an integer in \[0, 2\*\*32\)"),
    Case("`trainer.limit_train_batches=0`", (*TRAIN, "trainer.limit_train_batches=0"),
         r"trainer.limit_train_batches=0 must be a positive"),
    Case("`trainer.gradient_clip_val=-1`", (*TRAIN, "trainer.gradient_clip_val=-1"),
         r"trainer.gradient_clip_val=-1 must be a positive number"),
    Case("`trainer.profiler=simpel`", (*TRAIN, "trainer.profiler=simpel"),
         r"trainer.profiler='simpel' is not a profiler: use one of simple, advanced, pytorch"),
    Case("`scheduler=warmup_cosine scheduler.warmup_epochs=5 trainer.max_epochs=2`",
         (*TRAIN, "scheduler=warmup_cosine", "scheduler.warmup_epochs=5", "trainer.max_epochs=2"),
         r"scheduler.warmup_epochs=5 must be a number in \[0, 2\], at most the run's epochs"),
    Case("`data.num_workers=-1`", (*TRAIN, "data.num_workers=-1"), r"data.num_workers=-1 must be an integer >= 0"),
    Case("`data.val_size=59999` (of 600 training images here)", (*TRAIN, "data.val_size=59999"),
         r"data.val_size=59999 must be a count in \[1, 600\)"),
    Case("`data.fold=2` without `data.folds`", (*TRAIN, "data.fold=2"), r"data.fold=2 needs data.folds=K"),
    Case("`data.folds=5 data.fold=5`", (*TRAIN, "data.folds=5", "data.fold=5"), r"data.fold=5 must be an integer in \[0, 5\)"),
    Case("`data.normalize=mean`", (*TRAIN, "data.normalize=mean"), r"Unknown data.normalize='mean'. Valid: dataset \(.*\); half"),
    Case("`model.head=avg`", (*TRAIN, "model.head=avg"), r"Unknown model.head='avg'. Valid: flatten, gap, gmp"),
    Case("`model=resnet20 model.head=flatten`", (*TRAIN, "model=resnet20", "model.head=flatten"),
         r"model.head=flatten does not suit a ResNet"),
    Case("`data.batch_size=1` with batch norm", (*TRAIN, "data.batch_size=1", "model.batch_norm=true"),
         r"data.batch_size=1 cannot train batch norm"),
    Case("`model.width=1e6` (sized on the `meta` device first)", (*TRAIN, "model.width=1e6"),
         r"model.width=1e6 has [\d,]+ parameters: training it needs about"),
    Case("`scripts/summary.py model=vgg19 model.width=100`", ("scripts/summary.py", "model=vgg19", "model.width=100"),
         r"model.width=100 has [\d,]+ parameters"),
    Case("a model too deep for the images (five 2x2 pools on 28x28)",
         (*TRAIN, "model=simple_cnn", "model.channels=[8,8,8,8,8]"), r"so the model is too deep for this image size"),
    Case("`model=torchvision model.arch=resnet19`", (*TRAIN, "model=torchvision", "model.arch=resnet19"),
         r"model.arch='resnet19' is not a torchvision classification model \(close matches: resnet18"),
    Case("`model=torchvision model.arch=vit_b_16` on 28x28 images", (*TRAIN, "model=torchvision", "model.arch=vit_b_16"),
         r"torchvision vit_b_16 cannot take 28x28 images .* It takes data.image_size=224"),
    Case("`model.pretrained=true` offline, the weights not in the cache",
         (*TRAIN, "model=torchvision", "model.pretrained=true"),
         r"needs resnet18-f37072fd.pth .* not in .*/hub/checkpoints and could not be downloaded",
         env=(("TORCH_HOME", "{fresh}"), ("https_proxy", DEAD_PROXY), ("HTTPS_PROXY", DEAD_PROXY))),
    Case("`model.pretrained=notes.txt`", (*TRAIN, "model.pretrained={notes}"), r"notes.txt' is not a weights file"),
    Case("`model.pretrained=` a damaged `.pth` file", (*TRAIN, "model.pretrained={bad_weights}"),
         r"bad.pth' is not a readable weights file"),
    Case("`model.init_from=` a run of another model (or input size)", (*TRAIN, "model=mlp", "model.init_from={ckpt}"),
         r"model.init_from=.* does not fit MLP 512-256 \(missing: .*; unexpected: .*\): no tensor fits"),
    Case("`finetune.freeze_epochs=5 trainer.max_epochs=2`", (*TRAIN, "finetune.freeze_epochs=5", "trainer.max_epochs=2"),
         r"finetune.freeze_epochs=5 is beyond trainer.max_epochs=2"),
    Case("`test_tta=flip` with `data=mnist` or `svhn`", (*TRAIN, "test_tta=flip"),
         r"test_tta=flip is refused for MNIST: a mirrored digit"),
    Case("`ema.enabled=true ema.decay=1`", (*TRAIN, "ema.enabled=true", "ema.decay=1"), r"ema.decay=1 must be in \(0, 1\)"),
    Case("`aug.mixup_alpha=-0.2`", (*TRAIN, "aug.mixup_alpha=-0.2"), r"aug.mixup_alpha=-0.2 must be a number >= 0"),
    Case("an output folder that cannot be made (read-only disk, a file in its path)",
         (*TRAIN, "hydra.run.dir={a_file}/run"), r"cannot create the output folder .*\(Not a directory\)", fast=True),
    Case("`hydra.run.dir=` a folder whose name is not UTF-8 (a Latin-1 0xff byte, quoted for Hydra)",
         (*TRAIN, "hydra.run.dir='{not_utf8_out}'"), r"hydra.run.dir=b'.*\\xff' is not UTF-8 text", fast=True),
    Case("`data.data_dir` not writable (the files are to be copied there from a mirror)",
         (*TRAIN, "paths.data_dir=/proc/cnnlab", "paths.dataset_mirrors=[{mirror}]"), r"data_dir is not writable"),
    Case("`-m hydra/launcher=slurm` on a machine without SLURM",
         (TRAIN[0], "-m", *TRAIN[1:], "hydra/launcher=slurm", "hydra.sweep.dir={fresh}"),
         r"hydra/launcher=slurm needs a SLURM cluster, and srun is not found", fast=True),
    Case("missing data, offline", (*TRAIN, "paths.data_dir={empty}"), r"MNIST not found. Tried:", one_line=False, fast=True),
    Case("data files of another shape (an IDX of 14x56 images for MNIST)", (*TRAIN, "paths.data_dir={wrong_shape}"),
         r"holds 200x14x56 items .* not the Nx28x28"),
    Case("labels out of range (a 12 among MNIST's 10 classes)", (*TRAIN, "paths.data_dir={bad_labels}"),
         r"label.*12"),
    Case("a truncated data file", (*TRAIN, "paths.data_dir={truncated}"), r"is truncated or corrupt: header says"),
    Case("a corrupt CIFAR-10 batch", (*TRAIN, "data=cifar10", "paths.data_dir={cifar}"),
         r"failed its integrity check \(md5"),
    Case("a CIFAR-10 folder carrying a forged record of checked sums, and a batch that would run code",
         (*TRAIN, "data=cifar10", "paths.data_dir={crafted_cifar}"), r"data_batch_1 failed its integrity check \(md5"),
    Case("a link to a missing image in a class folder", (*TRAIN, "data=folder", "data.root={dangling}"),
         r"gone.png is a link to .*, which cannot be opened \(No such file or directory\)"),
    Case("`data.root=` a folder whose name is not UTF-8 (a Latin-1 0xff byte, quoted for Hydra)",
         (*TRAIN, "data=folder", "data.root='{not_utf8}'"), r"data.root=b'.*\\xff' is not UTF-8 text"),
    Case("`ckpt_path=` that does not exist", (*TRAIN, "ckpt_path={run}/checkpoints/nope.ckpt"),
         r"does not exist. Checkpoints in .*: best.ckpt, last.ckpt"),
    Case("a file that is not a checkpoint", (*EVAL, "ckpt_path={not_ckpt}"), r"is not a readable PyTorch checkpoint"),
    Case("a checkpoint that would run code when unpickled", (*EVAL, "ckpt_path={pickled}"),
         r"holds pickled Python objects, not just weights \(it would call print when opened\)", fast=True),
    Case("a checkpoint whose stored config names other code (`_target_: builtins.open`)", (*EVAL, "ckpt_path={crafted}"),
         r"_target_"),
    Case("a checkpoint without cnnlab's sections", (*EVAL, "ckpt_path={bare}"), r"was not written by cnnlab"),
    Case("resuming another model's checkpoint", (*TRAIN, "model=mlp", "ckpt_path={ckpt}"),
         r"belongs to another setup \(LeNet5 on mnist\) and cannot resume this run"),
    Case("resuming with another optimizer (or scheduler)", (*TRAIN, "optimizer=sgd", "ckpt_path={ckpt}"),
         r"was trained with optimizer Adam and cannot resume with SGD"),
    Case("another configuration into a completed run's folder (`hydra.run.dir=<run> model.dropout=0.3`)",
         (*TRAIN[:-1], "model.dropout=0.3", "hydra.run.dir={run}"),
         r"holds the record of another configuration's run \(status completed, .*hydra.run.dir=NEW_PATH"),
    Case("resuming a checkpoint whose stored RNG state is malformed", (*TRAIN, "ckpt_path={bad_rng}"),
         r"its stored random-number generator state is malformed"),
    Case("a checkpoint whose stored model would not fit in memory (`width: 1e6`)", (*EVAL, "ckpt_path={huge}"),
         r"stores a model of [\d,]+ parameters: loading it needs about"),
    Case("`export.py out=` the checkpoint itself", ("scripts/export.py", "ckpt_path={ckpt}", "format=torchscript", "out={ckpt}"),
         r"is the checkpoint being exported: writing there would destroy it", fast=True),
    Case("`export.py out=` an existing file", ("scripts/export.py", "ckpt_path={ckpt}", "format=torchscript", "out={notes}"),
         r"notes.txt exists already and is kept. Choose another out=, or add overwrite=true"),
    Case("`search.py storage=` a folder", ("scripts/search.py", "storage={empty}", "dir={fresh}"),
         r"storage='.*empty' is a folder; give a file in it"),
    Case("`eval.py` on another dataset", (*EVAL, "ckpt_path={ckpt}", "data=cifar10"),
         r"was trained on mnist .* cannot be tested on cifar10"),
    Case("`eval.py` on a folder whose class folders are not the checkpoint's classes",
         (*EVAL, "ckpt_path={ckpt}", "data=folder", "data.root={other_classes}", "data.channels=1", "data.image_size=28"),
         r"has class folders a, b, .* but the model's classes \(data.classes\) are 0, 1, 2"),
    Case("`predict.py image=notes.txt`", ("scripts/predict.py", "ckpt_path={ckpt}", "image={notes}"),
         r"notes.txt is not an image that can be read"),
    Case("`demo.py port=70000`", ("scripts/demo.py", "ckpt_path={ckpt}", "port=70000"),
         r"port=70000 must be an integer in \[1, 65535\]"),
    Case("a 1x1 image in `kernels.py`", ("scripts/kernels.py", "image={dot}", "hydra.run.dir={fresh}"),
         r"is 1x1 pixels; the 3x3 kernels need 3x3 or more"),
    Case("`image=` a folder", ("scripts/kernels.py", "image={empty}", "hydra.run.dir={fresh}"), r"is a folder; give one image file"),
    Case("a decompression-bomb PNG", ("scripts/kernels.py", "image={bomb}", "hydra.run.dir={fresh}"),
         r"bomb.png is refused: Image size \(400000000 pixels\) exceeds limit"),
    Case("`lang=fr` in `kernels.py` (also `activations.py`, `predict.py`, `eval.py`)",
         ("scripts/kernels.py", "lang=fr", "hydra.run.dir={fresh}"), r"lang='fr' is not a language of the figures: use lang=en or lang=es"),
    Case("a `metrics.json` holding a JSON list, in `compare_runs.py`", ("scripts/compare_runs.py", "{list_run}"),
         r"failed: metrics.json holds a list, not a run", exit=0, stream="stdout", one_line=False, fast=True),
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    case: Case
    exit: int
    first_line: str  # the workspace's path shown as ...
    lines: int  # non-empty lines on the case's stream
    traceback: bool
    nothing_lost: bool  # every file there before is there after, unchanged


class Workspace:
    """The files the cases use, made on first use under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._fresh = itertools.count(1)  # next() is atomic: cases may run in threads

    def __getitem__(self, name: str) -> str:  # str.format_map
        if name == "fresh":  # a new output folder, under out/ (which "nothing lost" ignores)
            return str(self.root / "out" / str(next(self._fresh)))
        return str(getattr(self, name))

    def prepare(self, cases: tuple[Case, ...] = CASES) -> None:
        """Make every file the cases name, one after another, before any case runs."""
        for case in cases:
            for name in _names(case):
                self[name]

    @cached_property
    def data(self) -> Path:
        from tests.support.synthetic import write_mnist_like

        write_mnist_like(self.root / "data", "mnist", n_train=600, n_test=200)
        return self.root / "data"

    @cached_property
    def mirror(self) -> Path:
        """A read-only place the OS keeps datasets in (as Debian's /usr/share/datasets)."""
        import shutil

        shutil.copytree(self.data / "MNIST" / "raw", self.root / "mirror" / "mnist")
        return self.root / "mirror"

    @cached_property
    def run(self) -> Path:
        """A real 1-epoch LeNet-5 run on the tiny data."""
        run_dir = self.root / "base_run"
        args = [*TRAIN, "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0"]
        proc = _run([*args, f"hydra.run.dir={run_dir}"], self)
        if proc.returncode != 0:
            raise RuntimeError(f"the base run failed:\n{proc.stderr[-2000:]}")
        return run_dir

    @cached_property
    def ckpt(self) -> Path:
        return self.run / "checkpoints" / "last.ckpt"

    def _edited_checkpoint(self, name: str, edit) -> Path:
        import torch

        ckpt = torch.load(self.ckpt, weights_only=True)
        edit(ckpt)
        (self.root / name).mkdir()
        torch.save(ckpt, self.root / name / "last.ckpt")
        return self.root / name / "last.ckpt"

    @cached_property
    def crafted(self) -> Path:
        def edit(ckpt):
            ckpt["cnnlab"]["config"]["model"] = {
                "_target_": "builtins.open",
                "file": "/etc/hostname",
            }

        return self._edited_checkpoint("crafted", edit)

    @cached_property
    def bad_rng(self) -> Path:
        import torch

        def edit(ckpt):
            ckpt["rng"]["torch"] = torch.zeros(7, dtype=torch.uint8)

        return self._edited_checkpoint("bad_rng", edit)

    @cached_property
    def huge(self) -> Path:
        return self._edited_checkpoint(
            "huge", lambda ckpt: ckpt["cnnlab"]["config"]["model"].update(width=1e6)
        )

    @cached_property
    def bare(self) -> Path:
        return self._edited_checkpoint("bare", lambda ckpt: ckpt.pop("cnnlab"))

    @cached_property
    def pickled(self) -> Path:
        import torch

        torch.save({"state_dict": _Call()}, self.root / "pickled.ckpt")
        return self.root / "pickled.ckpt"

    @cached_property
    def not_ckpt(self) -> Path:
        (self.root / "notes.ckpt").write_text("not a checkpoint\n")
        return self.root / "notes.ckpt"

    @cached_property
    def notes(self) -> Path:
        (self.root / "notes.txt").write_text("a shopping list\n")
        return self.root / "notes.txt"

    @cached_property
    def bad_weights(self) -> Path:
        (self.root / "bad.pth").write_bytes(b"PK\x03\x04 not a zip archive of tensors")
        return self.root / "bad.pth"

    @cached_property
    def empty(self) -> Path:
        (self.root / "empty").mkdir()
        return self.root / "empty"

    @cached_property
    def a_file(self) -> Path:
        (self.root / "a_file").write_text("")
        return self.root / "a_file"

    def _data_copy(self, name: str) -> Path:
        from tests.support.synthetic import write_mnist_like

        write_mnist_like(self.root / name, "mnist", n_train=600, n_test=200)
        return self.root / name

    @cached_property
    def wrong_shape(self) -> Path:
        from tests.support.synthetic import write_idx

        folder = self._data_copy("wrong_shape")
        images = np.zeros((200, 14, 56), np.uint8)  # the same bytes as 200 28x28 images
        write_idx(folder / "MNIST" / "raw" / "t10k-images-idx3-ubyte", images)
        return folder

    @cached_property
    def bad_labels(self) -> Path:
        from tests.support.synthetic import write_idx

        folder = self._data_copy("bad_labels")
        labels = np.arange(600, dtype=np.uint8) % 10
        labels[7] = 12
        write_idx(folder / "MNIST" / "raw" / "train-labels-idx1-ubyte", labels)
        return folder

    @cached_property
    def truncated(self) -> Path:
        folder = self._data_copy("truncated")
        path = folder / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:-100])
        return folder

    @cached_property
    def cifar(self) -> Path:
        from tests.support.synthetic import write_cifar_like

        write_cifar_like(self.root / "cifar", n_train=500, n_test=200)  # not the official md5
        return self.root / "cifar"

    @cached_property
    def crafted_cifar(self) -> Path:
        """Tiny CIFAR-10 batches, the first one rebuilt to call ``print`` when unpickled, and
        the record of checked sums cnnlab once kept beside them, forged to vouch for it."""
        import json
        import pickle

        from cnnlab.data.formats import CifarUnpickler
        from cnnlab.data.specs import get_spec
        from tests.support.synthetic import write_cifar_like

        write_cifar_like(self.root / "crafted_cifar", n_train=50, n_test=20)
        spec = get_spec("cifar10")
        folder = spec.target_dir(self.root / "crafted_cifar")
        with open(folder / "data_batch_1", "rb") as f:
            entry = CifarUnpickler(f).load()  # (a data file is never read with pickle.load)
        entry["data"] = _Call()
        (folder / "data_batch_1").write_bytes(pickle.dumps(entry, protocol=2))
        sums = spec.format.known_md5()
        forged = {
            n: [(folder / n).stat().st_size, (folder / n).stat().st_mtime_ns, sums[n]]
            for n in spec.files
        }
        (folder / ".cnnlab-verified.json").write_text(json.dumps(forged))
        return self.root / "crafted_cifar"

    def _images(self, name: str, classes: list[str], per_class: int) -> Path:
        from PIL import Image

        for c in classes:
            (self.root / name / c).mkdir(parents=True)
            for i in range(per_class):
                Image.new("L", (28, 28), 20 * i).save(self.root / name / c / f"{i}.png")
        return self.root / name

    @cached_property
    def dangling(self) -> Path:
        root = self._images("dangling", ["cat", "dog"], 3)
        (root / "cat" / "gone.png").symlink_to(self.root / "deleted.png")
        return root

    @property
    def not_utf8_out(self) -> Path:
        import os

        return Path(os.fsdecode(os.fsencode(self.root) + b"/out-\xff"))

    @cached_property
    def not_utf8(self) -> Path:
        import os

        root = self._images("not_utf8", ["cat", "dog"], 3)
        named = Path(os.fsdecode(os.fsencode(root) + b"/photos-\xff"))
        named.mkdir()
        for c in ("cat", "dog"):
            (root / c).rename(named / c)
        return named

    @cached_property
    def other_classes(self) -> Path:
        """Ten class folders, as many as MNIST's classes, under other names."""
        return self._images("other_classes", list("abcdefghij"), 2)

    @cached_property
    def dot(self) -> Path:
        from PIL import Image

        Image.new("L", (1, 1)).save(self.root / "dot.png")
        return self.root / "dot.png"

    @cached_property
    def bomb(self) -> Path:
        """A valid PNG of 20000x20000 black pixels: a few hundred kB that decode to 400 MB."""

        def chunk(kind: bytes, data: bytes) -> bytes:
            crc = struct.pack(">I", zlib.crc32(kind + data))
            return struct.pack(">I", len(data)) + kind + data + crc

        side = 20000
        raw = zlib.compress(b"\0" * ((side + 1) * side), 9)  # a filter byte + a row, each row
        header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw)
        (self.root / "bomb.png").write_bytes(png + chunk(b"IEND", b""))
        return self.root / "bomb.png"

    @cached_property
    def list_run(self) -> Path:
        (self.root / "runs" / "a").mkdir(parents=True)
        (self.root / "runs" / "a" / "metrics.json").write_text("[1, 2, 3]\n")
        return self.root / "runs"


class _Call:
    """Unpickling this calls ``print``: what a hostile checkpoint would do with os.system."""

    def __reduce__(self):
        return (print, ("this should never be printed",))


def _run(
    argv: tuple[str, ...] | list[str], ws: Workspace, env: tuple[tuple[str, str], ...] = ()
) -> subprocess.CompletedProcess:
    args = [a.format_map(ws) for a in argv]
    extra = {k: v.format_map(ws) for k, v in env}
    return subprocess.run(
        [sys.executable, str(CHECKOUT / args[0]), *args[1:]],
        capture_output=True, text=True, timeout=300, cwd=ws.root, env=subprocess_env(**extra),
    )  # fmt: skip


def _files(root: Path) -> dict[Path, tuple[int, int]]:
    """Every file but the cases' own output folders (other cases write there meanwhile)."""
    return {
        p: (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not p.is_relative_to(root / "out")
    }


def run_case(case: Case, ws: Workspace) -> Outcome:
    """Run one case in a fresh process: what it printed, and whether any file was lost."""
    ws.prepare((case,))  # the files it names are the "before"
    before = _files(ws.root)
    proc = _run(case.argv, ws, case.env)
    after = _files(ws.root)
    text = proc.stdout if case.stream == "stdout" else proc.stderr
    lines = [line for line in text.splitlines() if line.strip()]
    if case.stream == "stdout":  # a table: the row about the case, without its empty cells
        rows = [line for line in lines if re.search(case.pattern, line)] or lines
        lines = [" ".join(c.strip() for c in rows[0].split("|") if c.strip())]
    first = lines[0] if lines else ""
    return Outcome(
        case=case,
        exit=proc.returncode,
        first_line=first.replace(str(ws.root), "..."),
        lines=len(lines),
        traceback="Traceback" in proc.stderr,
        nothing_lost=all(after.get(p) == stat for p, stat in before.items()),
    )


def _names(case: Case) -> Iterator[str]:
    import string

    for arg in (*case.argv, *(value for _, value in case.env)):
        for _, name, _, _ in string.Formatter().parse(arg):
            if name and name != "fresh":
                yield name


def table(outcomes: list[Outcome], width: int = 220) -> str:
    """Markdown: input, exit status, first line printed, nothing lost."""
    lines = ["| input | exit | first line printed | nothing lost |", "| --- | --- | --- | --- |"]
    for o in outcomes:
        shown = o.first_line if len(o.first_line) <= width else o.first_line[: width - 4] + " ..."
        shown = shown.replace("|", "\\|")
        lost = "yes" if o.nothing_lost else "**no**"
        lines.append(f"| {o.case.input} | {o.exit} | `{shown}` | {lost} |")
    return "\n".join(lines)
