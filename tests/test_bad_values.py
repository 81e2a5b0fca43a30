"""Every bad value gets one line and exit 2, before any heavy work (issue 11, section 4).

Run through the real command lines, as a user types them; each case names the value it
refuses. A table, so a new bad input is one row.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from cnnlab.config import PROJECT_ROOT

from .conftest import one_line_error, subprocess_env

OFFLINE = ["paths.dataset_mirrors=[]", "data.download=false", "trainer.accelerator=cpu"]
TRAIN_CASES = [
    (["model.width=1e6"], r"model.width=1e6 has [\d,]+ parameters: training it needs about"),
    (["data.batch_size=1", "model.batch_norm=true"], r"data.batch_size=1 cannot train batch norm"),
    (["seed=4294967296"], r"seed=4294967296 must be an integer in \[0, 2\*\*32\)"),
    (["optimizer.lr=inf"], r"optimizer.lr=inf must be a positive number"),
    (["trainer.limit_train_batches=0"], r"trainer.limit_train_batches=0 must be a positive"),
    (["data.num_workers=-1"], r"data.num_workers=-1 must be an integer >= 0"),
    (["model.dropout=1.5"], r"model.dropout=1.5 is outside \[0, 1\)"),
    (["data.fold=2"], r"data.fold=2 needs data.folds=K, the number of folds"),
    (["data.folds=5", "data.fold=5"], r"data.fold=5 must be an integer in \[0, 5\)"),
    (["test_tta=flip"], r"test_tta=flip is refused for MNIST: a mirrored digit"),
    (["ema.enabled=true", "ema.decay=1"], r"ema.decay=1 must be in \(0, 1\)"),
    (["aug.mixup_alpha=-0.2"], r"aug.mixup_alpha=-0.2 must be a number >= 0"),
    (["trainer.gradient_clip_val=-1"], r"trainer.gradient_clip_val=-1 must be a positive number"),
    (["model.head=avg"], r"Unknown model.head='avg'. Valid: flatten, gap, gmp"),
    (["model=resnet20", "model.head=flatten"], r"model.head=flatten does not suit a ResNet"),
    (["data.normalize=mean"], r"Unknown data.normalize='mean'. Valid: dataset \(.*\); half"),
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=180, cwd=cwd,
        env=subprocess_env(),
    )  # fmt: skip


@pytest.mark.parametrize("override,pattern", TRAIN_CASES, ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_train_refuses_a_bad_value_inone_line_error(override, pattern, tmp_path, tiny_mnist):
    proc = _run(
        [str(PROJECT_ROOT / "train.py"), *override, *OFFLINE, f"paths.data_dir={tiny_mnist}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
    )  # fmt: skip
    one_line_error(proc, pattern)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


def _bomb(path: Path) -> Path:
    """A valid PNG of 20000x20000 black pixels: a few hundred kB that decode to 400 MB."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    side = 20000
    raw = zlib.compress(
        b"\0" * ((side + 1) * side), 9
    )  # one filter byte + side grey pixels per row
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    )
    return path


def test_image_arguments_are_checked(tmp_path):
    from PIL import Image

    tiny = tmp_path / "dot.png"
    Image.new("L", (1, 1)).save(tiny)
    kernels = str(PROJECT_ROOT / "scripts" / "kernels.py")
    one_line_error(_run([kernels, f"image={tiny}", f"out_dir={tmp_path}"], tmp_path),
              r"is 1x1 pixels; the 3x3 kernels need 3x3 or more")  # fmt: skip
    one_line_error(_run([kernels, f"image={tmp_path}", f"out_dir={tmp_path}"], tmp_path),
              r"is a folder; give one image file in it")  # fmt: skip
    bomb = _bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 2_000_000
    one_line_error(_run([kernels, f"image={bomb}", f"out_dir={tmp_path}"], tmp_path),
              r"bomb.png is refused: Image size \(400000000 pixels\) exceeds limit")  # fmt: skip


def test_compare_runs_reports_a_metrics_json_that_is_not_a_run(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text(json.dumps([1, 2, 3]))
    proc = _run([str(PROJECT_ROOT / "scripts" / "compare_runs.py"), str(tmp_path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "failed: metrics.json holds a list, not a run" in proc.stdout
