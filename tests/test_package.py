"""What ships: the installed package holds the product and its configs, never the tests' or the
development tools' code, and an installed cnnlab works from any directory."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab import config
from cnnlab.data.formats import Format
from tests.support import CHECKOUT
from tests.support.synthetic import write_mnist_like

PACKAGE = CHECKOUT / "src" / "cnnlab"
DEV_ONLY = {"tests", "tools", "notebooks"}  # top-level packages of the checkout, not installed


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {name.split(".")[0] for name in names}


def test_no_module_of_the_package_imports_the_tests_or_the_tools():
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(_imported(p) & DEV_ONLY)
        for p in sorted(PACKAGE.rglob("*.py"))
        if _imported(p) & DEV_ONLY
    }
    assert offenders == {}


def test_the_development_code_is_not_in_the_package():
    assert not (PACKAGE / "dev").exists()
    assert not (PACKAGE / "data" / "synthetic.py").exists()
    assert not (PACKAGE / "worked.py").exists()
    # the test-data writers live in tests/support/formats.py, not on the product's formats
    assert not hasattr(Format, "write") and not hasattr(Format, "md5_overrides")


def test_conf_is_the_package_s_configs_one_copy_of_each():
    assert config.CONFIG_DIR == PACKAGE / "conf"
    assert (CHECKOUT / "conf").is_symlink()
    assert (CHECKOUT / "conf").resolve() == config.CONFIG_DIR
    assert (config.CONFIG_DIR / "train.yaml").is_file()


def test_the_project_is_the_checkout_else_cnnlab_root_else_the_current_directory(
    tmp_path, monkeypatch
):
    assert config._project_root() == CHECKOUT
    # a checkout's package: src/cnnlab beside pyproject.toml, whatever CNNLAB_ROOT says
    monkeypatch.setenv("CNNLAB_ROOT", str(tmp_path / "elsewhere"))
    assert config._project_root() == CHECKOUT
    installed = tmp_path / "lib" / "python3" / "site-packages" / "cnnlab"
    installed.mkdir(parents=True)
    monkeypatch.setattr(config, "PACKAGE_DIR", installed)
    assert config._project_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("CNNLAB_ROOT")
    monkeypatch.chdir(tmp_path)
    assert config._project_root() == tmp_path


# ------------------------------------------------------------------------------ the wheel


def _run(cmd: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    # no PYTHONPATH: the fresh environment must find cnnlab where the wheel put it
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CNNLAB_ROOT")}
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env={**clean, **env}
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def _site_packages(python) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return Path(subprocess.check_output([python, "-c", code], text=True).strip())


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the python of a fresh virtualenv with only that wheel installed).

    The wheel is built from a copy of the sources (a build writes build/ and *.egg-info), with
    this interpreter's setuptools, offline. The virtualenv reuses this environment's installed
    dependencies through a .pth line: a folder named there is put on sys.path, but its own .pth
    files (such as an editable install of cnnlab) are not run.
    """
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(CHECKOUT / name, tree / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(CHECKOUT / "src", tree / "src", ignore=skip)
    dist = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, "."], tree)
    (wheel,) = dist.glob("cnnlab-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp)
    python = venv / "bin" / "python"
    (_site_packages(python) / "shared-dependencies.pth").write_text(
        f"{_site_packages(sys.executable)}\n"
    )
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], tmp)
    return wheel, python


def test_the_wheel_holds_the_package_and_every_config_and_nothing_else(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"cnnlab", next(t for t in tops if t.endswith(".dist-info"))}
    assert not [n for n in names if n.startswith(("cnnlab/dev/", "cnnlab/worked"))]
    assert "cnnlab/data/synthetic.py" not in names
    shipped = {n.removeprefix("cnnlab/conf/") for n in names if n.startswith("cnnlab/conf/")}
    on_disk = {str(p.relative_to(config.CONFIG_DIR)) for p in config.CONFIG_DIR.rglob("*.yaml")}
    # the YAML files, and the package marker by which Hydra finds them (cnnlab.apps)
    assert shipped == {*on_disk, "__init__.py"} and "train.yaml" in shipped


def test_the_installed_package_finds_its_configs_and_anchors_runs_at_the_current_directory(
    installed, tmp_path
):
    _, python = installed
    work = tmp_path / "work"
    work.mkdir()
    probe = textwrap.dedent(
        """
        import json, cnnlab, cnnlab.config as c
        cfg = c.compose_config("train", ["model=lenet", "data=mnist"], output_dir="run")
        print(json.dumps({
            "package": cnnlab.__file__, "conf": str(c.CONFIG_DIR), "root": str(c.PROJECT_ROOT),
            "model": cfg.model._target_, "data_dir": cfg.paths.data_dir,
            "log_dir": cfg.paths.log_dir,
        }))
        """
    )
    site = _site_packages(python)
    got = json.loads(_run([python, "-c", probe], work).stdout.strip().splitlines()[-1])
    assert Path(got["package"]).parent == site / "cnnlab"
    assert Path(got["conf"]) == site / "cnnlab" / "conf"
    assert got["model"].startswith("cnnlab.models.")
    assert (got["root"], got["data_dir"], got["log_dir"]) == (
        str(work),
        str(work / "data"),
        str(work / "outputs"),
    )
    chosen = tmp_path / "chosen"
    got = json.loads(
        _run([python, "-c", probe], work, CNNLAB_ROOT=str(chosen)).stdout.strip().splitlines()[-1]
    )
    assert (got["root"], got["log_dir"]) == (str(chosen), str(chosen / "outputs"))


@pytest.mark.slow  # two short trainings, about 40 s on 2 cores
@pytest.mark.skipif(
    not (CHECKOUT / "src" / "cnnlab" / "__main__.py").exists(),
    reason="no `python -m cnnlab` yet (src/cnnlab/__main__.py): the installed package has no "
    "command to train or predict with",
)
def test_the_installed_command_trains_and_predicts_from_another_directory(installed, tmp_path):
    _, python = installed
    work = tmp_path / "work"
    work.mkdir()
    data = tmp_path / "data"
    write_mnist_like(data, "mnist", n_train=300, n_test=100)
    where = [f"paths.data_dir={data}", "paths.dataset_mirrors=[]", "data.download=false"]
    cpu = ["data=mnist", *where, "data.val_size=100", "trainer.accelerator=cpu"]
    _run([python, "-m", "cnnlab", "train", *cpu, "debug=fast_dev_run"], work)
    assert (work / "outputs").is_dir()  # the current directory, not site-packages
    assert not (_site_packages(python) / "outputs").exists()
    run = work / "run"
    short = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", f"hydra.run.dir={run}"]
    _run([python, "-m", "cnnlab", "train", *cpu, *short], work)
    ckpt = sorted(run.rglob("*.ckpt"))[0]
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    out = _run([python, "-m", "cnnlab", "predict", f"ckpt_path={ckpt}", f"image={image}"], work)
    assert out.stdout.strip()
