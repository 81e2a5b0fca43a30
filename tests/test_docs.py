"""The README's generated tables match the code, and its links lead somewhere."""

import re
from pathlib import Path

import pytest

from cnnlab.config import PROJECT_ROOT
from tools.docs import README_BLOCKS, model_table, replace_block


@pytest.mark.parametrize("block", list(README_BLOCKS))
def test_readme_generated_table_is_current(block):
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert replace_block(readme, block, README_BLOCKS[block]()) == readme, (
        "run: python -m tools.update_readme"
    )


def test_generated_tables_follow_conf_and_specs():
    from tools.docs import datasets_table, groups_table, switches_table

    groups = {row.split(" | ")[0].strip("| `"): row for row in groups_table().splitlines()[2:]}
    # every folder of conf/ that train.py composes is a row, its YAML files the options
    assert set(groups) == {"aug", "callbacks", "data", "debug", "experiment", "logger", "model",
                           "optimizer", "paths", "regulariser", "scheduler", "sweep", "trainer"}  # fmt: skip
    assert "| `model` | lenet | " in groups["model"] and "`simple_cnn_bn`" in groups["model"]
    assert "search" not in groups  # the search's presets are not options of train.py
    lenet = next(r for r in switches_table().splitlines() if r.startswith("| `lenet` "))
    assert lenet == "| `lenet` | `0.0` | `False` | `relu` | `max` | `1.0` | `flatten` |"
    classic = next(r for r in switches_table().splitlines() if r.startswith("| `lenet_classic` "))
    assert classic.count(" - ") == 4  # no dropout, batch_norm, width or head switch
    assert "| `svhn` | SVHN | 3 x 32 x 32 | 10 | 73,257 / 26,032 | - |" in datasets_table()


def test_lenet_classic_row_reads_61706_on_mnist():
    row = next(line for line in model_table().splitlines() if line.startswith("| `lenet_classic`"))
    assert "| 61,706 |" in row


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _links(doc: Path) -> list[tuple[str, str]]:
    """(path, anchor) of each relative link and image in ``doc`` (code blocks left out)."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    found = re.findall(r"\]\(([^)\s]+)\)", text)
    return [tuple((t.split("#", 1) + [""])[:2]) for t in found if "://" not in t]


DOCS = sorted(p.relative_to(PROJECT_ROOT).as_posix() for p in (PROJECT_ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("doc", ["README.md", *DOCS])
def test_every_relative_link_names_a_file_and_heading_that_exist(doc):
    source = PROJECT_ROOT / doc
    links = _links(source)
    assert links or doc != "README.md", "no link found in the README: is the pattern right?"
    for path, anchor in links:
        target = (source.parent / path).resolve() if path else source
        assert target.exists(), f"{doc} links to {path}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), flags=re.M)
            assert anchor in {_anchor(h) for h in headings}, (
                f"{doc}: no heading #{anchor} in {path}"
            )
