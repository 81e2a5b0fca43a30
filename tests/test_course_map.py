"""The course maps, docs/COURSE.md and its Spanish twin docs/CURSO.md, name only things that
exist: every ``train.py`` command composes and builds, every ``cnnlab`` command exists and takes
the keys given, every figure and notebook is there."""

from __future__ import annotations

import re
import shlex

import pytest
from omegaconf import OmegaConf

from cnnlab.build import build
from cnnlab.commands import COMMANDS as COMMANDS_BY_NAME
from cnnlab.config import PROJECT_ROOT, compose_config, validate

COURSE = PROJECT_ROOT / "docs" / "COURSE.md"
CURSO = PROJECT_ROOT / "docs" / "CURSO.md"
TEXT = COURSE.read_text()
MAPS = (COURSE, CURSO)
COMMANDS = sorted(
    {c for doc in MAPS for c in re.findall(r"`((?:python|make|cnnlab) [^`]+)`", doc.read_text())}
)


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


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python eval.py")])
def test_eval_commands_compose(command):
    args = [re.sub(r"<(\w+)>", r"\1", a) for a in shlex.split(command)[2:]]  # <run>: a folder
    cfg = compose_config("eval", args, output_dir=".")
    for arg in args:
        key, _, value = arg.partition("=")
        assert str(OmegaConf.select(cfg, key)) == value


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("cnnlab ")])
def test_cnnlab_commands_exist_and_take_these_keys(command):
    words = [re.sub(r"<(\w+)>", r"\1", w) for w in shlex.split(command)[1:]]
    assert words[0] in COMMANDS_BY_NAME, f"cnnlab has no command {words[0]}"
    cfg = compose_config(COMMANDS_BY_NAME[words[0]].config, [w for w in words[1:] if "=" in w])
    for arg in words[1:]:
        key, _, value = arg.partition("=")
        chosen = OmegaConf.select(cfg, key)
        if value and not key.startswith("hydra.") and not OmegaConf.is_config(chosen):
            assert str(chosen).lower() == value.lower()  # a plain key=value, not a group


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("make ")])
def test_make_targets_exist(command):
    target = shlex.split(command)[1]
    assert re.search(rf"^{re.escape(target)}:", (PROJECT_ROOT / "Makefile").read_text(), re.M)


@pytest.mark.parametrize("doc", MAPS, ids=lambda d: d.name)
def test_linked_figures_and_notebooks_exist(doc):
    links = re.findall(r"\]\(([^)#]+)\)", doc.read_text())
    assert any(link.endswith(".png") for link in links)
    assert sum(link.endswith(".ipynb") for link in links) == 4
    for link in links:
        assert (doc.parent / link).exists(), f"{doc.name} links to a missing {link}"


def test_both_maps_have_the_same_rows_and_notebooks():
    def column(doc, i):  # the i-th cell of each row of the topic table
        rows = doc.read_text().split("## ")[-1].splitlines()
        cells = [re.split(r"(?<!\\)\|", r.strip().strip("|")) for r in rows if r.startswith("| ")]
        return [c[i].strip() for c in cells if "---" not in c[0]][1:]

    assert len(column(COURSE, 3)) == len(column(CURSO, 3)) == 20

    def notebooks(doc):  # each topic's notebook numbers, row by row
        return [re.findall(r"\b0\d\b", cell) for cell in column(doc, 3)]

    assert notebooks(COURSE) == notebooks(CURSO)


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


def test_every_deck_topic_is_on_the_spanish_map_in_the_decks_terms():
    text = CURSO.read_text()
    for term in (
        "Convolución",
        "relleno (padding)",
        "paso (stride)",
        "Kernel / filtro",
        "ReLU",
        "Agrupación (pooling)",
        "Capa totalmente conectada",
        "Softmax y entropía cruzada",
        "Abandono (dropout)",
        "Normalización por lotes",
        "Aumento de datos",
        "Perceptrón y funciones de activación",
        "LeNet-5",
        "AlexNet",
        "VGG",
        "MLP frente a CNN",
        "El ejercicio de CIFAR-10",
        "La bitácora de experimentos",
    ):
        assert f"**{term}**" in text, term
    # its figures of the course are the Spanish ones, made with lang=es
    assert "lang=es" in text and "](es/kernels.png)" in text


def test_the_readme_links_the_course_maps():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "](docs/COURSE.md)" in readme and "](docs/CURSO.md)" in readme


# words of everyday Spanish prose that English text does not use
SPANISH_WORDS = {
    "que",
    "los",
    "las",
    "una",
    "con",
    "para",
    "del",
    "cada",
    "la",
    "el",
    "de",
    "y",
    "se",
}


@pytest.mark.parametrize("notebook", sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb")), ids=str)
def test_every_notebook_explains_each_step_in_english_and_spanish(notebook):
    import json

    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "markdown"]
    assert len(cells) >= 5
    for cell in cells:
        text = "".join(cell["source"])
        english, sep, spanish = text.partition("> **ES** · ")
        assert sep, f"{notebook.name}: a markdown cell without its Spanish part:\n{text[:200]}"
        words = set(spanish.lower().replace(">", " ").split())
        assert len(words & SPANISH_WORDS) >= 2, f"{notebook.name}: not Spanish: {spanish[:200]}"
        assert len(spanish) > 0.3 * len(english), f"{notebook.name}: a token translation"
