"""Checkpoints are data, never instructions (issue 11, section 1; section 4's bad values).

Every crafted checkpoint here is a real cnnlab checkpoint edited with torch.load/torch.save
(plain dicts and strings only, so ``weights_only`` loading accepts it) and opened through
the three doors a user has: ``scripts/predict.py``, ``eval.py`` and resuming ``train.py``.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.allowlist import allowed_targets
from cnnlab.checkpoint import load_checkpoint
from cnnlab.cli import run_app
from cnnlab.errors import CheckpointError
from cnnlab.run import evaluate, train

from .conftest import QUICK, make_cfg, subprocess_env, tiny_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny real run (2 epochs): its data dir, run dir and an image to classify."""
    tmp = tmp_path_factory.mktemp("base")
    cfg, metrics = tiny_run(tmp, "trainer.max_epochs=2")
    assert metrics["status"] == "completed"
    data_dir = Path(cfg.paths.data_dir)
    image = tmp / "digit.png"
    Image.fromarray((np.arange(28 * 28) % 256).reshape(28, 28).astype(np.uint8)).save(image)
    return {"data_dir": data_dir, "run_dir": tmp / "run", "image": image}


def craft(base: dict, folder: Path, edit) -> Path:
    """A copy of the base run's last.ckpt, edited by ``edit(ckpt)``, alone in ``folder``."""
    ckpt = torch.load(base["run_dir"] / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt = copy.deepcopy(ckpt)
    edit(ckpt)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "last.ckpt"
    torch.save(ckpt, path)
    torch.load(path, weights_only=True)  # still plain data
    return path


def _config(ckpt: dict) -> dict:
    return ckpt["cnnlab"]["config"]


def _copy_to(marker: Path) -> dict:
    """A Hydra node that, instantiated, copies a file to ``marker``."""
    return {"_target_": "shutil.copyfile", "src": __file__, "dst": str(marker)}


PAYLOADS = {
    # the top-level model target is itself the payload
    "model_target": lambda c, m: _config(c).update(model=_copy_to(m)),
    # a top-level data target, with a nested one building its argument
    "data_target": lambda c, m: _config(c).update(
        data={
            "_target_": "pathlib.Path.write_text",
            "self": {"_target_": "pathlib.Path", "_args_": [str(m)]},
            "data": "pwned",
        }
    ),
    # a nested target under the real model target
    "nested_target": lambda c, m: _config(c)["model"].update(activation=_copy_to(m)),
    "args_key": lambda c, m: _config(c)["model"].update(_args_=[str(m)]),
    "partial_key": lambda c, m: _config(c)["model"].update(_partial_=True),
    "optimizer_in_config": lambda c, m: _config(c).update(optimizer=_copy_to(m)),
    "optimizer_in_hparams": lambda c, m: c["hyper_parameters"].update(optimizer=_copy_to(m)),
    "scheduler_in_hparams": lambda c, m: c["hyper_parameters"].update(scheduler=_copy_to(m)),
}
REFUSAL = {
    "model_target": "its stored model config has _target_='shutil.copyfile', which no conf/model/*.yaml names",
    "data_target": "its stored data config has _target_='pathlib.Path.write_text'",
    "nested_target": "holds the Hydra key model.activation._target_",
    "args_key": "holds the Hydra key model._args_",
    "partial_key": "holds the Hydra key model._partial_",
    "optimizer_in_config": "its stored optimizer config has _target_='shutil.copyfile'",
    "optimizer_in_hparams": "(hyper_parameters): its stored optimizer config has _target_='shutil.copyfile'",
    "scheduler_in_hparams": "(hyper_parameters): its stored scheduler config has _target_='shutil.copyfile'",
}


def _predict(ckpt: Path, image: Path) -> int:
    """cnnlab predict in-process, through the same error ending as on the command line."""
    from cnnlab.commands import run

    return run("predict", [f"ckpt_path={ckpt}", f"image={image}"])


def _exit_code(fn, cfg) -> int:
    try:
        run_app(fn, cfg)
    except SystemExit as e:
        return e.code
    return 0


def _one_line_error(err: str, expected: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert expected in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("door", ["predict", "eval", "resume"])
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_crafted_config_is_refused_in_one_line(base, tmp_path, capsys, payload, door):
    marker = tmp_path / "pwned"
    ckpt = craft(base, tmp_path / "crafted", lambda c: PAYLOADS[payload](c, marker))
    capsys.readouterr()
    if door == "predict":
        code = _predict(ckpt, base["image"])
    elif door == "eval":
        code = _exit_code(
            evaluate, make_cfg(tmp_path, base["data_dir"], f"ckpt_path={ckpt}", config="eval")
        )
    else:
        cfg = make_cfg(
            tmp_path, base["data_dir"], *QUICK, "trainer.max_epochs=3", f"ckpt_path={ckpt}"
        )
        code = _exit_code(train, cfg)
    err = capsys.readouterr().err
    assert code == 2, err
    _one_line_error(err, REFUSAL[payload])
    assert str(ckpt) in err  # the message names the file
    assert not marker.exists()


@pytest.mark.parametrize(
    "script,args",
    [
        ("scripts/predict.py", ["image={image}"]),
        ("eval.py", ["hydra.run.dir={tmp}/eval", "paths.data_dir={data}"]),
        (
            "train.py",
            [
                "hydra.run.dir={tmp}/resume",
                "paths.data_dir={data}",
                "paths.dataset_mirrors=[]",
                "data.download=false",
                "trainer.accelerator=cpu",
                *QUICK,
            ],
        ),
    ],
)
def test_crafted_checkpoint_through_the_command_line(base, tmp_path, script, args):
    marker = tmp_path / "pwned"
    ckpt = craft(base, tmp_path / "crafted", lambda c: PAYLOADS["nested_target"](c, marker))
    fill = {"image": base["image"], "tmp": tmp_path, "data": base["data_dir"]}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / script),
            f"ckpt_path={ckpt}",
            *(a.format(**fill) for a in args),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(PYTHONWARNINGS="ignore"),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    _one_line_error(proc.stderr, f"Error: {ckpt}: refused: its stored config holds the Hydra key")
    assert not marker.exists()


def _callback_state(ckpt: dict) -> dict:
    (key,) = [k for k in ckpt["callbacks"] if k.startswith("ModelCheckpoint")]
    return ckpt["callbacks"][key]


def test_crafted_callback_state_touches_nothing_outside(base, tmp_path):
    """best_model_path/dirpath naming files elsewhere: nothing copied, read or deleted there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("not yours")
    victim = outside / "victim.ckpt"  # a readable checkpoint the resumed run must not test
    victim.write_bytes((base["run_dir"] / "checkpoints" / "best.ckpt").read_bytes())
    run_dir = tmp_path / "resume" / "run"
    own = run_dir / "checkpoints"

    def elsewhere(c):
        _callback_state(c).update(best_model_path=str(secret), dirpath=str(outside))

    def same_dir(c):  # claims this run's folder, while every path points outside it
        _callback_state(c).update(
            dirpath=str(own),
            best_model_path=str(victim),
            best_model_score=torch.tensor(1.0),
            best_k_models={str(victim): torch.tensor(1.0), str(secret): torch.tensor(0.0)},
            kth_best_model_path=str(secret),
            last_model_path=str(secret),
        )

    for name, edit in (("elsewhere", elsewhere), ("same_dir", same_dir)):
        ckpt = craft(base, tmp_path / name, edit)
        cfg = make_cfg(
            tmp_path / "resume",
            base["data_dir"],
            *QUICK,
            "trainer.max_epochs=3",
            f"ckpt_path={ckpt}",
            "skip_completed=false",
        )
        metrics = train(cfg)
        assert metrics["status"] == "completed" and metrics["tested_checkpoint"] == "best.ckpt"
        assert sorted(p.name for p in own.iterdir()) == ["best.ckpt", "last.ckpt"], name
        assert secret.read_text() == "not yours" and victim.is_file()
        for p in own.iterdir():
            p.unlink()


def test_resume_into_a_new_dir_carries_the_best_checkpoint_from_the_same_folder(base, tmp_path):
    old = base["run_dir"] / "checkpoints"
    cfg = make_cfg(
        tmp_path, base["data_dir"], *QUICK, "trainer.max_epochs=2", f"ckpt_path={old / 'last.ckpt'}"
    )
    metrics = train(cfg)  # nothing left to train: tests the carried best checkpoint
    own = tmp_path / "run" / "checkpoints"
    assert (own / "best.ckpt").read_bytes() == (old / "best.ckpt").read_bytes()
    assert metrics["tested_checkpoint"] == "best.ckpt"


@pytest.mark.parametrize(
    "edit,what",
    [
        (lambda c: _config(c).pop("data"), "its stored config has no data section"),
        (lambda c: _config(c).pop("model"), "its stored config has no model section"),
        (lambda c: c["cnnlab"].pop("config"), "its 'cnnlab' run info has no config"),
        (lambda c: c.update(cnnlab="lenet on mnist"), "its 'cnnlab' run info is a str"),
        (lambda c: c["cnnlab"].pop("input_shape"), "its input_shape is None"),
        (lambda c: c["cnnlab"].pop("classes"), "its class list is missing"),
        (lambda c: _config(c)["data"].pop("name"), "its stored data config has no dataset name"),
        (
            lambda c: _config(c)["model"].update(_target_="cnnlab.models.Gone"),
            "its stored model config has _target_='cnnlab.models.Gone', which no conf/model/*.yaml names",
        ),
        (
            lambda c: _config(c)["model"].update(width="${oc.env:HOME}"),
            "model.width='${oc.env:HOME}' is an interpolation",
        ),
    ],
)
def test_checkpoint_of_another_layout_is_one_clear_error(base, tmp_path, edit, what):
    path = craft(base, tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and what in message and "\n" not in message


def test_a_stored_argument_the_class_does_not_take_is_a_checkpoint_error(base, tmp_path, capsys):
    path = craft(base, tmp_path, lambda c: _config(c)["model"].update(depth_of_field=3))
    assert _predict(path, base["image"]) == 2
    _one_line_error(capsys.readouterr().err, "its stored model config does not fit")


def test_allow_list_comes_from_conf(tmp_path):
    assert "cnnlab.models.LeNet5" in allowed_targets("model")
    assert "cnnlab.data.ImageDataModule" in allowed_targets("data")
    assert "torch.optim.SGD" in allowed_targets("optimizer")
    assert "shutil.copyfile" not in allowed_targets("model")
    (tmp_path / "model").mkdir()  # a user's own conf/model/mynet.yaml counts by itself
    (tmp_path / "model" / "mynet.yaml").write_text("_target_: mypkg.MyNet\nwidth: 2\n")
    assert allowed_targets("model", tmp_path) == {"mypkg.MyNet"}


def test_the_allow_list_follows_each_configs_defaults_list():
    from cnnlab.allowlist import allowed_targets

    # conf/data/mnist.yaml sets no _target_ itself: it comes from /data_common via defaults
    assert allowed_targets("data") == {
        "cnnlab.data.ImageDataModule",
        "cnnlab.data.FolderDataModule",
    }
    assert "cnnlab.models.resnet.ResNet" in allowed_targets("model")


@pytest.mark.parametrize(
    "edit,expected",
    [
        # LeNet-5 a million times wider: about 10^16 parameters, sized on the meta device
        (lambda c: _config(c)["model"].update(width=1e6), "stores a model of "),
        (
            lambda c: c["cnnlab"].update(input_shape=[1, 100000, 100000]),
            "its stored input shape [1, 100000, 100000] is not an image size cnnlab trains on",
        ),
        (lambda c: c["cnnlab"].update(input_shape=[4096, 28, 28]), "at most 16 channels"),
    ],
)
def test_a_stored_model_too_large_for_memory_is_refused_in_one_line(
    base, tmp_path, capsys, edit, expected
):
    import time

    path = craft(base, tmp_path, edit)
    started = time.perf_counter()
    assert _predict(path, base["image"]) == 2
    _one_line_error(capsys.readouterr().err, expected)
    cfg = make_cfg(tmp_path, base["data_dir"], f"ckpt_path={path}", config="eval")
    with pytest.raises(SystemExit) as exit_:
        run_app(evaluate, cfg)
    assert exit_.value.code == 2
    _one_line_error(capsys.readouterr().err, expected)
    assert time.perf_counter() - started < 30  # refused from the sizes, before any storage
