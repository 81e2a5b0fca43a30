"""The README's generated tables match the code, and its links lead somewhere."""

import re
from pathlib import Path

import pytest

from cnnlab.config import PROJECT_ROOT
from tools.docs import model_table, replace_block


def test_readme_model_table_is_current():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert replace_block(readme, "models", model_table()) == readme, (
        "run: python -m tools.update_readme"
    )


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


@pytest.mark.parametrize("doc", ["README.md", "docs/COURSE.md", "docs/PERFORMANCE.md"])
def test_every_relative_link_names_a_file_and_heading_that_exist(doc):
    source = PROJECT_ROOT / doc
    links = _links(source)
    assert links, f"{doc} links nowhere"
    for path, anchor in links:
        target = (source.parent / path).resolve() if path else source
        assert target.exists(), f"{doc} links to {path}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), flags=re.M)
            assert anchor in {_anchor(h) for h in headings}, (
                f"{doc}: no heading #{anchor} in {path}"
            )
