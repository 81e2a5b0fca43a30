"""Tables the README shows, generated from the code so they cannot drift from it."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from cnnlab.build import build
from cnnlab.config import CONFIG_DIR, compose_config
from cnnlab.data.specs import SPECS
from cnnlab.models import count_params, model_title
from tools import CHECKOUT


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


# the switches most nets share: the columns of the switches table (another key is a net's own)
SWITCHES = ("dropout", "batch_norm", "activation", "pool", "width", "head")
# groups of conf/ that are not options of train.py: Hydra's own settings, the search's presets
NOT_TRAIN_GROUPS = ("hydra", "search")


def switches_table() -> str:
    """Markdown: each model config's default for each shared switch ("-": it has none)."""
    lines = ["| `model=` | " + " | ".join(f"`{k}`" for k in SWITCHES) + " |"]
    lines.append("|" + " --- |" * (1 + len(SWITCHES)))
    for model in model_configs():
        node = compose_config("train", [f"model={model}"]).model
        cells = [f"`{node[k]}`" if k in node else "-" for k in SWITCHES]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _options(group: Path) -> list[str]:
    return sorted(p.stem for p in group.glob("*.yaml") if not p.stem.startswith("_"))


def groups_table() -> str:
    """Markdown: every config group of ``train.py`` with its default and its options."""
    defaults: dict[str, str] = {}
    for entry in OmegaConf.load(CONFIG_DIR / "train.yaml").defaults:
        if isinstance(entry, dict) or OmegaConf.is_dict(entry):
            ((key, value),) = dict(entry).items()
            defaults[key.split("@")[0]] = "-" if value is None else str(value)
    lines = ["| group | default | options |", "| --- | --- | --- |"]
    for group in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir()):
        if group.name in NOT_TRAIN_GROUPS:
            continue
        options = ", ".join(f"`{o}`" for o in _options(group))
        lines.append(f"| `{group.name}` | {defaults.get(group.name, '-')} | {options} |")
    return "\n".join(lines)


def datasets_table() -> str:
    """Markdown: every built-in dataset (``SPECS``), plus ``data=folder``."""
    lines = ["| `data=` | dataset | images (C x H x W) | classes | train / test | offline copy |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for name, spec in SPECS.items():
        c, h, w = spec.shape
        lines.append(
            f"| `{name}` | {spec.title} | {c} x {h} x {w} | {len(spec.classes)} | "
            f"{spec.train_size:,} / {spec.test_size:,} | "
            + (f"Debian's `{spec.debian_package}`" if spec.debian_package else "-")
            + " |"
        )
    lines.append(
        "| `folder` | your images (`data.root=PATH`) | any, resized | one per folder | yours | yours |"
    )
    return "\n".join(lines)


# the README's generated blocks: <!-- name:start --> ... <!-- name:end --> -> what writes it
README_BLOCKS = {
    "models": model_table,
    "switches": switches_table,
    "groups": groups_table,
    "datasets": datasets_table,
}
# the page that holds the bad-input table (relative to the project root)
TROUBLESHOOTING = "docs/TROUBLESHOOTING.md"


def replace_block(text: str, name: str, body: str) -> str:
    """Replace what lies between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {name}:start/end --> block in the text")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def bad_inputs_table(root: Path) -> str:
    """Markdown: every case of ``tests.support.bad_inputs`` run for real (minutes), in ``root``."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.bad_inputs import CASES, Workspace, run_case, table

    ws = Workspace(root)
    ws.prepare()
    with ThreadPoolExecutor(max_workers=2) as pool:
        return table(list(pool.map(lambda case: run_case(case, ws), CASES)))


def update_readme(path: Path = CHECKOUT / "README.md", bad_inputs: bool = False) -> bool:
    """Regenerate the README's generated blocks, and the bad-input table of
    docs/TROUBLESHOOTING.md when asked (it runs every case); return whether anything changed."""
    changed = _update(path, {name: make() for name, make in README_BLOCKS.items()})
    if bad_inputs:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            table_text = bad_inputs_table(Path(tmp))
        changed |= _update(path.parent / TROUBLESHOOTING, {"bad_inputs": table_text})
    return changed


def _update(path: Path, blocks: dict[str, str]) -> bool:
    text = path.read_text()
    new = text
    for name, body in blocks.items():
        new = replace_block(new, name, body)
    if new != text:
        path.write_text(new)
    return new != text
