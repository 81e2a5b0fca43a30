"""docs/COURSE.md, the course map, names only things that exist: every ``train.py`` command
composes and builds, every script exists and takes the keys given, every figure and notebook is there."""

from __future__ import annotations

import re
import shlex

import pytest

from cnnlab.config import PROJECT_ROOT, compose_config, validate
from cnnlab.run import build

COURSE = PROJECT_ROOT / "docs" / "COURSE.md"
TEXT = COURSE.read_text()
COMMANDS = sorted(set(re.findall(r"`((?:python|make) [^`]+)`", TEXT)))
# scripts that take train.py's overrides besides their own keys
TRAIN_STYLE = {
    "summary.py": (),
    "show_augmentation.py": ("out",),
    "lr_find.py": ("min_lr", "max_lr", "steps", "out_dir"),
}


def _first_of_each_sweep(overrides: list[str]) -> list[str]:
    """A multirun's ``key=a,b,c`` as the first job's ``key=a`` (compose takes one value)."""
    return [re.sub(r"=([^\[\],]+),.*$", r"=\1", o) for o in overrides]


def _compose(overrides: list[str]):
    return compose_config("train", _first_of_each_sweep(overrides), output_dir=".")


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python train.py")])
def test_train_commands_compose(command):
    args = [a for a in shlex.split(command)[2:] if a != "-m"]
    cfg = _compose(args)
    validate(cfg)
    build(cfg)  # the model and data classes with these values; no data is read
    for arg in args:
        key, _, value = arg.partition("=")
        if "." in key and "," not in value:  # a plain key=value lands in the config
            assert str(cfg[key.split(".")[0]][key.split(".", 1)[1]]).lower() == value.lower()


@pytest.mark.parametrize("command", [c for c in COMMANDS if "scripts/" in c or "eval.py" in c])
def test_scripts_exist_and_take_these_keys(command):
    words = shlex.split(command)
    script = PROJECT_ROOT / words[1]
    assert script.is_file(), f"{words[1]} does not exist"
    own = [w.split("=")[0] for w in words[2:] if "=" in w and not w.startswith("-")]
    flags = [w for w in words[2:] if w.startswith("--")]
    source = script.read_text()
    if script.name in TRAIN_STYLE:
        rest = [w for w in words[2:] if w.split("=")[0] not in TRAIN_STYLE[script.name]]
        _compose(rest)
        return
    for key in [*own, *flags]:
        assert f'"{key}"' in source or f"'{key}'" in source or f"{key}=" in source, (
            f"{script.name} takes no {key}"
        )


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("make ")])
def test_make_targets_exist(command):
    target = shlex.split(command)[1]
    assert re.search(rf"^{re.escape(target)}:", (PROJECT_ROOT / "Makefile").read_text(), re.M)


def test_linked_figures_and_notebooks_exist():
    links = re.findall(r"\]\(([^)#]+)\)", TEXT)
    assert any(link.endswith(".png") for link in links)
    assert sum(link.endswith(".ipynb") for link in links) == 4
    for link in links:
        assert (COURSE.parent / link).exists(), f"COURSE.md links to a missing {link}"


def test_every_deck_topic_is_on_the_map():
    for term in (
        "Convolución",
        "Kernels / filtros",
        "ReLU",
        "Agrupación / pooling",
        "Capa densa / totalmente conectada",
        "Softmax y entropía cruzada",
        "Abandono / dropout",
        "Normalización por lotes",
        "Aumento de datos",
        "Perceptrón y funciones de activación",
        "LeNet-5",
        "AlexNet",
        "VGG",
        "MLP vs CNN",
        "CIFAR-10",
    ):
        assert f"**{term}**" in TEXT, term


def test_the_readme_links_the_course_map():
    assert "](docs/COURSE.md)" in (PROJECT_ROOT / "README.md").read_text()
