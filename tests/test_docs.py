"""The README's generated tables match the code."""

from cnnlab.config import PROJECT_ROOT
from cnnlab.dev.docs import model_table, replace_block


def test_readme_model_table_is_current():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert replace_block(readme, "models", model_table()) == readme, (
        "run: python scripts/update_readme.py"
    )


def test_lenet_classic_row_reads_61706_on_mnist():
    row = next(line for line in model_table().splitlines() if line.startswith("| `lenet_classic`"))
    assert "| 61,706 |" in row
