"""Every command the README and the docs show is one the command line takes: each is parsed
and composed as its command would (keys, options, values), without running it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cnnlab.commands import COMMANDS, compose_command
from cnnlab.config import PROJECT_ROOT, compose_with_hydra
from cnnlab.options import check_keys, first_job

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
STARTS = ("cnnlab ", "python train.py", "python eval.py")


def commands(doc: Path) -> list[str]:
    """The ``cnnlab ...``, ``python train.py ...`` and ``python eval.py ...`` lines of the
    document's bash blocks (continuations joined, comments dropped)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#", line)[0].strip()
            if line.startswith(STARTS):
                found.append(line)
    return found


CASES = [pytest.param(line, id=f"{doc.name}: {line}") for doc in DOCS for line in commands(doc)]


def test_the_readme_shows_commands():
    assert len(commands(DOCS[0])) >= 15


@pytest.mark.parametrize("line", CASES)
def test_every_documented_command_parses(line):
    words = shlex.split(re.sub(r"<[^>]+>", "RUN", line))  # <run>: what a reader fills in
    if words[0] == "python":  # python train.py / eval.py: cnnlab train / eval
        words = ["cnnlab", words[1].removesuffix(".py"), *words[2:]]
    name, args = words[1], words[2:]
    if name in ("--help", "-h") or {"--help", "-h"} & set(args):
        return  # help is answered before any key is read (tests/test_console.py)
    assert name in COMMANDS, f"{line}: no command {name!r}"
    command = COMMANDS[name]
    if command.run is None:  # a Hydra app: its keys, then the whole composition of one job
        keys = [a for a in args if not a.startswith("hydra.") and a != "-m"]
        check_keys(command.config, keys, name)
        compose_with_hydra(command.config, first_job(keys))
    else:
        compose_command(command, args)
