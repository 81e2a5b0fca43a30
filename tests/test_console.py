"""The ``cnnlab`` command: every subcommand listed, each ``--help`` showing the keys with the
defaults and comments of its YAML, a typo'd key named with its fix before anything runs, and
``cnnlab train`` making the same run folder as ``python train.py``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.config import PROJECT_ROOT, compose_config, create
from cnnlab.errors import ConfigError
from tests.conftest import QUICK, one_line_error, subprocess_env, write_mnist_like

EVERY_COMMAND = (
    "train", "eval", "predict", "export", "search", "lr-find", "summary", "kernels",
    "activations", "inspect", "compare", "augment", "tensorboard", "prepare-data", "demo",
    "mlflow-ui",
)  # fmt: skip
# command -> (its YAML, a key of it); the key's default and comment are read from the YAML here
KEY_OF = {
    "train": ("train.yaml", "seed"),
    "eval": ("eval.yaml", "lang"),
    "predict": ("predict.yaml", "topk"),
    "export": ("export.yaml", "overwrite"),
    "search": ("search.yaml", "n_trials"),
    "lr-find": ("lr_find.yaml", "steps"),
    "summary": ("summary.yaml", None),
    "kernels": ("kernels.yaml", "stride"),
    "activations": ("activations.yaml", "lang"),
    "inspect": ("inspect.yaml", "invert"),
    "compare": ("compare.yaml", "sort"),
    "augment": ("augment.yaml", "task_name"),
    "tensorboard": ("tensorboard.yaml", "port"),
    "prepare-data": ("prepare_data.yaml", "download"),
    "demo": ("demo.yaml", "host"),
    "mlflow-ui": ("mlflow_ui.yaml", "port"),
}


def cnnlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=cwd,
    )  # fmt: skip


def yaml_key(name: str, key: str) -> tuple[str, str]:
    """(default, comment) of a top-level ``key: value  # comment`` line, read off the file."""
    text = (PROJECT_ROOT / "conf" / name).read_text()
    line = re.search(rf"^{re.escape(key)}: *([^#\n]*?) *# *(.*)$", text, re.M)
    assert line, f"{name} has no commented key {key}"
    return line[1], line[2]


def test_cnnlab_help_lists_every_command():
    proc = cnnlab("--help")
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert listed == set(EVERY_COMMAND)


def test_an_unknown_command_is_named_with_the_close_one():
    one_line_error(cnnlab("predcit"), r"'predcit' is not a cnnlab command; did you mean predict\?")


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_each_command_help_shows_the_yaml_default_and_comment(command, capsys):
    from cnnlab.commands import COMMANDS, command_help

    text = command_help(COMMANDS[command])
    name, key = KEY_OF[command]
    first = (PROJECT_ROOT / "conf" / name).read_text().splitlines()[0].lstrip("# ")
    assert text.startswith(f"cnnlab {command}: {first}")
    if key is None:  # summary: train's keys, pointed to
        assert "every key and group of cnnlab train" in text
        return
    default, comment = yaml_key(name, key)
    assert re.search(
        rf"^  {re.escape(key)} +{re.escape(default)}  # {re.escape(comment)}$", text, re.M
    )


def test_train_help_lists_the_groups_it_composes_not_search():
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), "--help"],
        capture_output=True, text=True, timeout=120, env=subprocess_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    groups = dict(re.findall(r"^  (\w+) +(\w+ \|[^(\n]*)", proc.stdout, re.M))
    assert groups["model"].split(" | ")[0] == "lenet" and "vgg11" in groups["model"]
    assert "search" not in groups
    assert re.search(r"^  trainer\.max_epochs +10$", proc.stdout, re.M)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_predict_help_is_answered_without_torch(flag):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cnnlab", "predict", flag],
        capture_output=True, text=True, timeout=120, env=subprocess_env(),
    )  # fmt: skip
    assert proc.returncode == 0 and "ckpt_path" in proc.stdout, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "cnnlab.commands" in imported  # importtime did report the imports
    assert "torch" not in imported


@pytest.mark.parametrize("entry", ["cnnlab", "train.py"])
def test_a_typo_names_the_close_key_in_one_line_and_leaves_no_run_folder(entry, tmp_path):
    args = ["trainer.max_epoch=3", f"hydra.run.dir={tmp_path / 'run'}"]
    if entry == "cnnlab":
        proc = cnnlab("train", *args, cwd=tmp_path)
    else:
        proc = subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "train.py"), *args],
            capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=tmp_path,
        )  # fmt: skip
    one_line_error(
        proc, r"trainer\.max_epoch is not a key of cnnlab train: did you mean trainer\.max_epochs\?"
    )
    assert not (tmp_path / "run").exists()


def test_a_small_command_names_the_close_key_too(tmp_path):
    one_line_error(cnnlab("kernels", "strid=2", cwd=tmp_path), r"stride\?")
    one_line_error(
        cnnlab("train", "model=lenett"),
        r"model=lenett is not an option: did you mean model=lenet\?",
    )


def test_a_key_added_under_the_trainer_names_the_argument_it_meant():
    """Hydra's own hint for a typo, ``+trainer.max_epoch=3``, ends in one clear line too."""
    cfg = compose_config("train", ["+trainer.max_epoch=3"], output_dir=".")
    with pytest.raises(ConfigError, match=r"^trainer\.max_epoch is not an argument of "
                       r"pytorch_lightning\.Trainer: did you mean trainer\.max_epochs\?"):  # fmt: skip
        create(cfg.trainer)


def test_python_m_cnnlab_train_makes_the_run_folder_train_py_makes(tmp_path):
    data = tmp_path / "data"
    write_mnist_like(data, "mnist", n_train=600, n_test=200)
    common = [f"paths.data_dir={data}", "paths.dataset_mirrors=[]", "data.download=false",
              "trainer.accelerator=cpu", "+trainer.fast_dev_run=true", *QUICK]  # fmt: skip
    made = {}
    for entry in ("cnnlab", "train.py"):
        run = tmp_path / entry
        args = [*common, f"hydra.run.dir={run}"]
        if entry == "cnnlab":
            proc = cnnlab("train", *args, cwd=tmp_path)
        else:
            proc = subprocess.run(
                [sys.executable, str(PROJECT_ROOT / "train.py"), *args], capture_output=True,
                text=True, timeout=300, env=subprocess_env(), cwd=tmp_path,
            )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        files = (p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
        metrics = json.loads((run / "metrics.json").read_text())
        made[entry] = (
            sorted(re.sub(r"tfevents\..*", "tfevents", f) for f in files),  # time, host, pid
            metrics["status"],
            metrics["overrides"],
        )
    assert {"metrics.json", ".hydra/config.yaml", "train.log"} <= set(made["cnnlab"][0])
    assert made["cnnlab"] == made["train.py"]


def test_shell_completion_completes_commands_and_train_keys():
    """``eval "$(cnnlab -sc install=bash)"``: the script asks ``cnnlab -sc query=bash``."""

    def query(line: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "cnnlab", "-sc", "query=bash"], capture_output=True,
            text=True, timeout=120, env=subprocess_env(COMP_LINE=line),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split()

    assert query("cnnlab lr") == ["lr-find"]
    assert query("cnnlab train trainer.max_ep") == ["trainer.max_epochs="]
    assert "data=cifar10" in query("cnnlab eval data=")
