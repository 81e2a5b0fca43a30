"""The decks' worked numbers (notebooks/worked.py), computed by the layers the models use, and
the helpers the notebooks call (cnnlab.lab)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlab import lab
from cnnlab.config import PROJECT_ROOT
from cnnlab.data.specs import get_spec
from cnnlab.errors import CnnlabError
from cnnlab.viz.kernels import COURSE_KERNELS, convolve, pooled
from notebooks.worked import (
    EDGE_IMAGE,
    LAPLACIAN_PATCH,
    OUTPUT_VOLUMES,
    PATCH_5X5,
    POOL_MAP,
    X_FILTER_5X5,
    conv_volume,
)
from tests.support.synthetic import trusted, write_cifar_like

from .conftest import QUICK

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))


def test_the_decks_numbers():
    assert convolve(torch.tensor(PATCH_5X5), X_FILTER_5X5).tolist() == [[6]]
    laplacian = COURSE_KERNELS["laplacian"]
    assert convolve(torch.tensor(LAPLACIAN_PATCH), laplacian).tolist() == [[60]]
    edge = convolve(torch.tensor(EDGE_IMAGE), COURSE_KERNELS["vertical edge (course)"])
    assert edge.tolist() == [[0, 30, 30, 0]] * 4
    assert pooled(torch.tensor(POOL_MAP, dtype=torch.float32), "max").tolist() == [[9, 8], [7, 9]]
    volumes = [conv_volume(*v) for v in OUTPUT_VOLUMES]
    assert volumes == [((28, 28, 10), 10 * (5 * 5 * 3 + 1)), ((96, 96, 100), 100 * (5 * 5 * 3 + 1))]


def test_conv_volume_follows_the_formula_with_stride_and_padding():
    # O = (W - K + 2P) / S + 1 = (32 - 3 + 2) / 2 + 1 = 16 (floor)
    assert conv_volume((1, 32, 32), 4, 3, stride=2, padding=1) == ((16, 16, 4), 4 * 9 + 4)


def test_trusted_md5_holds_inside_the_block_only(tmp_path):
    from cnnlab.data.sources import ensure_dataset

    tv = get_spec("cifar10").format.tv_class
    official = (list(tv.train_list), dict(tv.meta))
    sums = write_cifar_like(tmp_path, n_train=50, n_test=20)
    with trusted("cifar10", sums):
        ensure_dataset("cifar10", tmp_path, mirrors=[], download=False)
        images, labels = get_spec("cifar10").read(tmp_path, train=False)
        assert images.shape == (20, 3, 32, 32) and len(labels) == 20
    assert (list(tv.train_list), dict(tv.meta)) == official


def test_workdir_is_the_environment_s_folder_else_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv(lab.NOTEBOOK_DIR_ENV, str(tmp_path / "env"))
    assert lab.workdir("nb") == tmp_path / "env" / "nb" and (tmp_path / "env" / "nb").is_dir()
    monkeypatch.delenv(lab.NOTEBOOK_DIR_ENV)
    monkeypatch.setattr(lab, "PROJECT_ROOT", tmp_path / "project")
    assert lab.workdir("nb") == tmp_path / "project" / "outputs" / "notebooks" / "nb"


def test_train_run_and_evaluate_run_are_train_py_and_eval_py(tmp_path):
    from tests.support.synthetic import write_mnist_like

    data = tmp_path / "data"
    write_mnist_like(data, "mnist", n_train=300, n_test=100)
    where = [f"paths.data_dir={data}", "paths.dataset_mirrors=[]", "data.download=false"]
    overrides = [*where, *QUICK, "trainer.max_epochs=1", "trainer.accelerator=cpu"]
    metrics = lab.train_run(tmp_path / "run", *overrides)
    assert metrics["status"] == "completed" and (tmp_path / "run" / "metrics.json").is_file()
    assert lab.train_run(tmp_path / "run", *overrides)["skipped"]  # same config: not trained again
    result = lab.evaluate_run(tmp_path / "run", *where[:2], "trainer.accelerator=cpu")
    assert result["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert torch.tensor(result["test/confusion_matrix"]).sum() == 100
    assert (tmp_path / "run" / "eval" / "eval_metrics.json").is_file()


def test_a_failing_sweep_raises_with_its_output(tmp_path):
    with pytest.raises(CnnlabError, match="sweep failed"):
        lab.sweep(tmp_path / "s", "model=no_such_model", timeout=300)


def test_show_renders_a_figure_as_png(tmp_path):
    pytest.importorskip("IPython")
    from cnnlab.viz.figures import subplots

    fig, ax = subplots()
    ax.plot([0, 1], [1, 0])
    image = lab.show(fig, tmp_path / "f.png")
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "f.png").is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs(path: Path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} was executed"


def test_the_four_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01_convolution_kernels_pooling.ipynb",
        "02_lenet5_fashion_mnist.ipynb",
        "03_mlp_vs_cnn_and_regularisation.ipynb",
        "04_vgg_resnet_cifar10_shaped.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_module_a_notebook_imports_is_found_from_its_folder(path: Path):
    """A notebook's kernel starts in notebooks/ (Jupyter and nbmake alike): what it imports
    must be found from there, with this checkout's src/ and root on the path (notebook 4 puts
    the root there itself), not only by a test that imports from the checkout root."""
    import ast
    import subprocess
    import sys

    from tests.support import subprocess_env

    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    tree = ast.parse(code)
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    # IPython comes with the kernel (the notebooks extra), which a test run need not have
    modules = sorted(m for m in imported if m.split(".")[0] != "IPython")
    check = (
        "import importlib.util as u, sys; print([m for m in sys.argv[1:] if not u.find_spec(m)])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check, *modules],
        capture_output=True, text=True, timeout=120, cwd=path.parent, env=subprocess_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"{path.name} imports modules not found: {proc.stdout}"
