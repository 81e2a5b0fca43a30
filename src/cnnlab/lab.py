"""cnnlab from Python, as the notebooks in ``notebooks/`` use it.

Each helper is the Python form of a documented command, so a notebook shows the same runs a
student makes from the shell: ``train_run`` is ``python train.py ...`` (in-process),
``evaluate_run`` is ``python eval.py ckpt_path=...``, ``sweep`` is ``python train.py -m ...``
(a real Hydra multirun, in a subprocess). Nothing here trains differently from ``train.py``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cnnlab.config import PROJECT_ROOT, compose_config
from cnnlab.errors import CnnlabError

# where the notebooks' runs go when the environment does not say (``make test-notebooks``
# points it at a temporary folder, so executing the notebooks writes nothing under outputs/)
NOTEBOOK_DIR_ENV = "CNNLAB_NOTEBOOK_DIR"
# a notebook cell has no live terminal: Lightning's progress bar would print a line per redraw
QUIET = ("callbacks.progress_bar.refresh_rate=0",)


def workdir(name: str) -> Path:
    """The folder notebook ``name`` writes its runs and figures into (created).

    ``$CNNLAB_NOTEBOOK_DIR/<name>`` when that is set, else ``outputs/notebooks/<name>``
    (ignored by git; ``make tensorboard`` shows its runs). Never a tracked folder.
    """
    root = os.environ.get(NOTEBOOK_DIR_ENV) or PROJECT_ROOT / "outputs" / "notebooks"
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(name: str) -> Path:
    """The data folder ``train.py`` reads (``data.data_dir``: ``$CNNLAB_DATA_DIR`` or ``data/``),
    with dataset ``name`` made present there: found, copied from an OS mirror, or downloaded."""
    from cnnlab.data.sources import ensure_dataset

    cfg = compose_config("train", [f"data={name}"])
    folder = Path(cfg.data.data_dir)
    ensure_dataset(name, folder, list(cfg.paths.dataset_mirrors or []), cfg.data.download)
    return folder


def train_run(run_dir: str | Path, *overrides: str) -> dict[str, Any]:
    """``python train.py <overrides> hydra.run.dir=<run_dir>``, in this process; its metrics.

    Like ``train.py``, a run directory that already holds this exact config is not trained
    again: a completed run returns its ``metrics.json`` (``"skipped": True``).
    """
    from cnnlab.run import train

    return train(compose_config("train", [*QUIET, *overrides], output_dir=run_dir))


def evaluate_run(run_dir: str | Path, *overrides: str, checkpoint: str = "best") -> dict[str, Any]:
    """``python eval.py ckpt_path=<run_dir>/checkpoints/<checkpoint>.ckpt`` into ``<run_dir>/eval``.

    The result holds ``test/acc``, ``test/loss``, ``test/acc_per_class`` and the test
    ``test/confusion_matrix`` (rows: true class, columns: predicted).
    """
    from cnnlab.run import evaluate

    ckpt = Path(run_dir) / "checkpoints" / f"{checkpoint}.ckpt"
    quiet = "+trainer.enable_progress_bar=false"
    cfg = compose_config(
        "eval", [f"ckpt_path={ckpt}", quiet, *overrides], output_dir=Path(run_dir) / "eval"
    )
    return evaluate(cfg)


def sweep(sweep_dir: str | Path, *overrides: str, timeout: float | None = None) -> Path:
    """``python train.py -m <overrides> hydra.sweep.dir=<sweep_dir>``: a real Hydra multirun.

    Runs in a subprocess (Hydra's multirun owns its process). Returns ``sweep_dir``; a sweep
    that fails raises CnnlabError with the end of its output.
    """
    cmd = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "-m",
        *QUIET,
        *overrides,
        f"hydra.sweep.dir={Path(sweep_dir).resolve()}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise CnnlabError(f"the sweep failed (exit {proc.returncode}):\n{tail}")
    return Path(sweep_dir)


def show(fig, path: str | Path | None = None, dpi: int = 90):
    """A matplotlib ``Figure`` as an inline image (written to ``path`` too, if given).

    cnnlab draws with matplotlib's object API, without pyplot, so a figure does not display
    itself in a notebook; this renders it to PNG bytes for ``IPython.display``.
    """
    from IPython.display import Image

    from cnnlab.viz.figures import save

    if path is not None:
        save(fig, path, dpi=dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return Image(data=buffer.getvalue(), format="png")
