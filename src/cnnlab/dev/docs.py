"""Tables the README shows, generated from the code so they cannot drift from it."""

from __future__ import annotations

import re
from pathlib import Path

from cnnlab.build import build
from cnnlab.config import CONFIG_DIR, compose_config
from cnnlab.data.specs import SPECS
from cnnlab.models import count_params, model_title


def _dataset_columns() -> dict[str, list[str]]:
    """Built-in datasets grouped by what decides a net's size (input shape, class count)."""
    columns: dict[tuple, list[str]] = {}
    for name, spec in SPECS.items():
        columns.setdefault((spec.shape, len(spec.classes)), []).append(name)
    return {names[0]: names for names in columns.values()}


def model_configs() -> list[str]:
    """Every ``model=`` option: the YAML files in conf/model (a new one appears by itself)."""
    return sorted(
        p.stem for p in (CONFIG_DIR / "model").glob("*.yaml") if not p.stem.startswith("_")
    )


def model_table() -> str:
    """Markdown: one row per model config, trainable parameters per dataset."""
    columns = _dataset_columns()
    header = (
        "| `model=` | net | "
        + " | ".join("`data=" + "`, `".join(names) + "`" for names in columns.values())
        + " |"
    )
    lines = [header, "|" + " --- |" * (2 + len(columns))]
    for model in model_configs():
        counts, title = [], ""
        for data in columns:
            _, classifier = build(
                compose_config("train", [f"model={model}", f"data={data}"], output_dir=".")
            )
            counts.append(f"{count_params(classifier.net):,}")
            title = model_title(classifier.net)
        lines.append(f"| `{model}` | {title} | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    """Replace what lies between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {name}:start/end --> block in the text")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def bad_inputs_table(root: Path) -> str:
    """Markdown: every case of ``cnnlab.dev.bad_inputs`` run for real (minutes), in ``root``."""
    from concurrent.futures import ThreadPoolExecutor

    from cnnlab.dev.bad_inputs import CASES, Workspace, run_case, table

    ws = Workspace(root)
    ws.prepare()
    with ThreadPoolExecutor(max_workers=2) as pool:
        return table(list(pool.map(lambda case: run_case(case, ws), CASES)))


def update_readme(path: Path = CONFIG_DIR.parent / "README.md", bad_inputs: bool = False) -> bool:
    """Regenerate the README's generated blocks (the bad-input table too when asked: it runs
    every case); return whether anything changed."""
    text = path.read_text()
    new = replace_block(text, "models", model_table())
    if bad_inputs:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            new = replace_block(new, "bad_inputs", bad_inputs_table(Path(tmp)))
    if new != text:
        path.write_text(new)
    return new != text
