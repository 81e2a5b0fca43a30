"""Configs compose in-process for every data x model pair, and bad values fail early."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from cnnlab.build import build
from cnnlab.config import CONFIG_DIR, compose_config, validate
from cnnlab.data.specs import SPECS
from cnnlab.errors import ConfigError

DATA = sorted(p.stem for p in (CONFIG_DIR / "data").glob("[!_]*.yaml"))
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
GROUP_OPTIONS = [
    (group, p.stem)
    for group in ("experiment", "debug", "optimizer", "scheduler", "trainer", "logger", "callbacks")
    for p in sorted((CONFIG_DIR / group).glob("[!_]*.yaml"))
]


def test_the_groups_that_must_exist_do():
    assert sorted([*SPECS, "folder"]) == DATA  # a spec entry is a data= option, and folder
    assert {"mlp", "lenet", "lenet_classic", "alexnet", "vgg11", "vgg16", "resnet20"} <= set(MODELS)
    assert {"resnet56", "resnet18"} <= set(MODELS)


@pytest.mark.parametrize("data,model", list(itertools.product(DATA, MODELS)))
def test_every_data_model_pair_composes_and_builds(data, model, tmp_path):
    extra = []
    if data == "folder":  # ten class folders of one image each: listed, never read, by build
        for k in range(10):
            (tmp_path / "imgs" / f"class{k}").mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / f"class{k}" / "a.png")
        extra = [f"data.root={tmp_path / 'imgs'}"]
    cfg = compose_config("train", [f"data={data}", f"model={model}", *extra], output_dir=tmp_path)
    validate(cfg)
    datamodule, classifier = build(cfg)
    logits = classifier.net.eval()(torch.zeros(2, *datamodule.input_shape))
    assert logits.shape == (2, len(datamodule.classes)) == (2, 10)
    assert cfg.data.name == data


@pytest.mark.parametrize("group,option", GROUP_OPTIONS)
def test_every_group_option_composes(group, option, tmp_path):
    cfg = compose_config("train", [f"{group}={option}"], output_dir=tmp_path)
    validate(cfg)
    # the option's own values are in the composed config, where its package puts them
    path = CONFIG_DIR / group / f"{option}.yaml"
    own = OmegaConf.load(path)
    root = cfg if "@package _global_" in path.read_text() else cfg[group]
    leaves = [
        (key, value)
        for key, value in _leaves(OmegaConf.to_container(own, resolve=False))
        if not key.startswith(("defaults", "hydra."))
        and not (isinstance(value, str) and "${" in value)
    ]
    wrong = [(k, v) for k, v in leaves if OmegaConf.select(root, k, default="<missing>") != v]
    assert wrong == []
    if cfg.trainer.accelerator != "gpu":  # CI has no GPU; the GPU config is checked on a device
        instantiate(cfg.trainer, logger=False)


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def test_defaults(tmp_path):
    cfg = compose_config("train", output_dir=tmp_path)
    assert (cfg.model._target_, cfg.data.name, cfg.aug.name) == (
        "cnnlab.models.LeNet5",
        "mnist",
        "none",
    )
    assert cfg.seed == 42 and cfg.callbacks.model_checkpoint.monitor == "val/acc"
    assert cfg.callbacks.model_checkpoint.save_last is True
    assert cfg.paths.output_dir == str(tmp_path)
    assert cfg.data.data_dir.endswith("/data")


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path / "elsewhere"))
    assert compose_config("train").data.data_dir == str(tmp_path / "elsewhere")


def test_unknown_model_lists_the_options():
    with pytest.raises(ConfigError, match="Could not find 'model/resnet'") as err:
        compose_config("train", ["model=resnet"])
    assert "lenet" in str(err.value) and "vgg" in str(err.value)


@pytest.mark.parametrize(
    "override,match",
    [
        ("trainer.max_epochs=0", r"trainer.max_epochs=0 must be a positive integer"),
        ("optimizer.lr=0", r"optimizer.lr=0 must be a positive number"),
        ("seed=-1", r"seed=-1 must be an integer in \[0, 2\*\*32\)"),
        (
            "scheduler=warmup_cosine scheduler.warmup_epochs=5 trainer.max_epochs=2",
            r"^scheduler.warmup_epochs=5 must be a number in \[0, 2\], at most the run's epochs",
        ),
    ],
)
def test_bad_values_fail_before_any_work(override, match):
    with pytest.raises(ConfigError, match=match):
        validate(compose_config("train", override.split()))


@pytest.mark.parametrize(
    "override,match",
    [
        ("data.batch_size=-8", r"data.batch_size=-8 must be a positive integer"),
        ("data.val_size=0", r"data.val_size=0 must be a count in \[1, 60000\) or a fraction"),
        ("model.dropout=1.5", r"model.dropout=1.5 is outside \[0, 1\)"),
    ],
)
def test_values_a_component_owns_fail_when_it_is_built(override, match):
    cfg = compose_config("train", [override])
    validate(cfg)
    with pytest.raises(ConfigError, match=match):
        build(cfg)


def test_seed_zero_is_valid():
    cfg = compose_config("train", ["seed=0"])
    validate(cfg)
    datamodule, _ = build(cfg)
    assert cfg.seed == 0 and datamodule.seed == 0  # not replaced by a default as "unset"


def test_help_lists_only_real_options():
    import subprocess
    import sys

    from cnnlab.config import PROJECT_ROOT

    from .conftest import subprocess_env

    out = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), "--help"],
        capture_output=True, text=True, timeout=120, env=subprocess_env(),
    ).stdout  # fmt: skip
    others = sorted(n for n in [*SPECS, "folder"] if n != "mnist")  # the default comes first
    data_line = r"^  data +mnist \| " + r" \| ".join(others) + "$"
    assert re.search(data_line, out, re.M)
    assert re.search(r"^  aug +none \| cifar \| light \| strong$", out, re.M)
    assert "_common" not in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize(
    "trainer,alternative", [("gpu", "trainer=cpu"), ("ddp", "trainer=ddp_cpu")]
)
def test_a_gpu_trainer_without_a_gpu_is_refused_before_anything_is_built(
    tmp_path, monkeypatch, trainer, alternative
):
    from cnnlab.run import train

    def never(cfg):
        raise AssertionError("built a model for a trainer that cannot run")

    monkeypatch.setattr("cnnlab.run.build", never)
    cfg = compose_config("train", [f"trainer={trainer}"], output_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=(
        rf"^trainer.accelerator=gpu needs a CUDA GPU, and this machine has none \(.*\)\. "
        rf"Train on the CPU with {alternative}"
    )):  # fmt: skip
        train(cfg)
    assert not (tmp_path / "run" / "metrics.json").exists()
