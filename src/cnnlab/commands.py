"""The ``cnnlab`` command: one subcommand per task, every one taking ``key=value`` in Hydra's
grammar, its options in conf/<name>.yaml (``cnnlab <command> --help`` reads them there).

``cnnlab train`` and ``cnnlab eval`` run train.py and eval.py, the Hydra apps (run folder,
``-m`` sweeps, ``hydra.*`` overrides); the other commands compose their config in-process and
write their files into ``hydra.run.dir``. Nothing heavy is imported before a command runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cnnlab.cli import EXIT_USER_ERROR
from cnnlab.config import compose_config
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.options import check_keys, defaults_of, help_text, intro

HELP = ("-h", "--help")
# Hydra's own flags: with one of these the command line is Hydra's to read, not checked here
HYDRA_FLAGS = ("--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
               "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
               "--experimental-rerun", "--resolve", "--package", "-p", "--version")  # fmt: skip


@dataclass(frozen=True)
class Command:
    name: str
    config: str  # its options: conf/<config>.yaml
    run: Callable[[DictConfig], int | None] | None  # None: the Hydra app <config>.py
    positional: str | None = None  # the list key that plain (not key=value) arguments fill

    @property
    def summary(self) -> str:
        """The first line of its config's header comment, up to the example."""
        return intro(self.config)[0].split(": ")[0]


def output_folder() -> Path:
    """The folder a command writes into: ``hydra.run.dir``, as composed."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _int(cfg: DictConfig, key: str, minimum: int, maximum: int | None = None) -> int:
    value = cfg[key]
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{key}={value!r} must be an integer {bound}.")
    return value


def _bool(cfg: DictConfig, key: str) -> bool:
    if not isinstance(cfg[key], bool):
        raise ConfigError(f"{key}={cfg[key]!r}: use {key}=true or {key}=false.")
    return cfg[key]


def _text(cfg: DictConfig, key: str) -> str:
    """A path or name; '' when null (YAML may read ``out=1`` as a number: it is text here)."""
    value = cfg[key]
    if isinstance(value, bool):  # invert=true: the word as written
        return str(value).lower()
    return "" if value is None else str(value)


def predict(cfg: DictConfig) -> int:
    from cnnlab.startup import heavy_imports

    with heavy_imports():
        from cnnlab.predict import predict
        from cnnlab.viz.figures import bar_figure, input_and_cam_figure, save
        from cnnlab.viz.grids import image_grid, save_png
        from cnnlab.viz.labels import check_lang, label

    topk = _int(cfg, "topk", 1)
    cam_class, cam_layer = _text(cfg, "cam_class"), _text(cfg, "cam_layer")
    cam = _bool(cfg, "cam") or bool(cam_class or cam_layer)
    lang = check_lang(cfg.lang)
    image = _text(cfg, "image")
    prediction = predict(
        _text(cfg, "ckpt_path"), image, _text(cfg, "invert"), cam, cam_class, cam_layer
    )
    print("Prepared: " + "; ".join(prediction.prepared.steps))
    top = prediction.top(topk)
    width = max(len(name) for name, _ in top)
    for name, p in top:
        print(f"{name:<{width}}  {p:7.2%}  {'#' * round(40 * p)}")
    if cfg.show:
        seen = save_png(
            image_grid(prediction.prepared.image, nrow=1, upscale=8), _text(cfg, "show")
        )
        print(f"Input as the net saw it: {seen}")
    if cfg.chart:
        names, probs = zip(*top, strict=True)
        title = label("top_title", lang, k=len(top), image=image)
        fig = bar_figure(
            list(names), list(probs), title, label("probability", lang), label("class", lang)
        )
        print(f"Chart: {save(fig, _text(cfg, 'chart'))}")
    if cam:
        ex = prediction.explanation
        name = prediction.classes[int(ex.targets[0])]
        p = float(prediction.probs[int(ex.targets[0])])
        where = f" at {ex.layer}" if ex.layer else ""
        out = _text(cfg, "cam_out") or output_folder() / f"{Path(image).stem}_cam.png"
        fig = input_and_cam_figure(
            prediction.seen[0], ex.maps[0], f"{name} {p:.0%}", f"{ex.method}{where}: {name}", lang
        )
        print(f"{ex.method}{where} of {name}: {save(fig, out)}")
    return 0


def export(cfg: DictConfig) -> int:
    from cnnlab.export import export

    fmt = _text(cfg, "format")
    path = export(_text(cfg, "ckpt_path"), fmt, _text(cfg, "out") or None, _bool(cfg, "overwrite"))
    print(f"Saved {path} ({fmt}): uint8 images -> class probabilities")
    if fmt == "torchscript":
        print("Load: m = torch.jit.load(path); m(images) are probabilities, m.classes their names")
    else:
        print(
            "Load: s = onnxruntime.InferenceSession(path); class names: "
            "json.loads(s.get_modelmeta().custom_metadata_map['classes'])"
        )
    return 0


def kernels(cfg: DictConfig) -> int:
    from cnnlab.viz.figures import save
    from cnnlab.viz.kernels import demo_figures
    from cnnlab.viz.labels import check_lang

    stride, size, padding = _int(cfg, "stride", 1), _int(cfg, "size", 1), _int(cfg, "padding", 0)
    rgb, lang = _bool(cfg, "rgb"), check_lang(cfg.lang)
    figures = demo_figures(
        _text(cfg, "image"), _text(cfg, "kernels"), rgb, stride, padding, size, lang
    )
    for name, figure in figures:
        print(f"Saved {save(figure, output_folder() / name)}")
    return 0


def activations(cfg: DictConfig) -> int:
    from cnnlab.viz.activations import activations_figure
    from cnnlab.viz.figures import save
    from cnnlab.viz.labels import check_lang

    figure = activations_figure(lang=check_lang(cfg.lang))
    print(f"Saved {save(figure, output_folder() / 'activations.png')}")
    return 0


def inspect(cfg: DictConfig) -> int:
    from cnnlab.checkpoint import load_classifier
    from cnnlab.data.specs import normalize
    from cnnlab.predict import input_normalization, open_image, prepare_input
    from cnnlab.viz.network import save_network_figures

    model, info = load_classifier(_text(cfg, "ckpt_path"))
    prepared = prepare_input(open_image(_text(cfg, "image")), info, _text(cfg, "invert"))
    print(f"Prepared: {'; '.join(prepared.steps)}")
    x = normalize(prepared.image, *input_normalization(info))
    for path in save_network_figures(model.net, x, output_folder()):
        print(f"Saved {path}")
    return 0


def demo(cfg: DictConfig) -> int:
    from cnnlab.startup import heavy_imports

    port = _int(cfg, "port", 1, 65535)
    with heavy_imports():
        from cnnlab.demo import serve

    blocks = serve(_text(cfg, "ckpt_path"), _text(cfg, "host"), port)
    print(f"The demo page: {blocks.local_url} (Ctrl-C stops it)", flush=True)
    blocks.block_thread()
    return 0


def compare(cfg: DictConfig) -> int:
    from cnnlab.compare import find_runs, plot, table, to_csv, to_markdown

    paths = [Path(str(p)) for p in cfg.runs]
    if not paths:
        raise ConfigError(
            "No runs to compare: give run or sweep folders (cnnlab compare PATH ...)."
        )
    runs = find_runs(paths)
    if not runs:
        raise CnnlabError(f"No metrics.json under {', '.join(map(str, paths))}.")
    sort, descending, group = (
        _text(cfg, "sort"),
        not _bool(cfg, "ascending"),
        not _bool(cfg, "per_run"),
    )
    header, rows = table(runs, paths, sort, descending, group=group)
    print(to_markdown(header, rows))
    if cfg.csv:
        full = table(runs, paths, sort, descending, with_path=True, group=group)
        print(f"\nCSV: {to_csv(*full, Path(_text(cfg, 'csv')))}")
    if cfg.plot:
        print(f"Plot: {plot(runs, Path(_text(cfg, 'plot')), sort, group=group)}")
    return 0


def prepare_data(cfg: DictConfig) -> int:
    import logging

    from cnnlab.data.sources import DEFAULT_MIRRORS, SPECS, ensure_dataset

    names = [str(n) for n in cfg.datasets] or list(SPECS)
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not a dataset; choose from {', '.join(SPECS)}.")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    failed = 0
    for name in names:
        try:
            folder = ensure_dataset(
                name, _text(cfg, "data_dir"), DEFAULT_MIRRORS, _bool(cfg, "download")
            )
            print(f"ok    {name}: verified in {folder}")
        except CnnlabError as e:
            failed += 1
            print(f"FAIL  {name}: {e}", file=sys.stderr)
    return 1 if failed else 0


def search(cfg: DictConfig) -> int:
    from cnnlab.search import best_trial, from_config, launch, open_study, write_report

    plain = OmegaConf.to_container(cfg, resolve=True)
    found = from_config(plain)
    where = found.storage or f"{found.dir}/study.journal"
    print(
        f"Search {found.name!r}: {found.n_trials} trials in all, {plain['workers']} worker(s) "
        f"({plain['launcher']}); study in {where}; trials in {found.dir}/trial_<n>",
        flush=True,
    )
    failures = launch(found, plain["workers"], plain["launcher"], plain["slurm"])
    study = open_study(found)
    print(write_report(study, found))
    if best_trial(study, found) is None:
        failures.append("no trial completed: the failed trials' errors are listed above")
    for line in failures:
        print(f"Error: {line}", file=sys.stderr)
    return 1 if failures else 0


# the keys a train-style command adds to train's: not train overrides to repeat
_OWN = ("min_lr", "max_lr", "steps", "task_name", "hydra.")


def lr_find(cfg: DictConfig) -> int:
    from cnnlab.config import overrides
    from cnnlab.lr_find import find_lr

    finding = find_lr(cfg, cfg.min_lr, cfg.max_lr, cfg.steps)
    print(
        f"Suggested learning rate: {finding.suggestion:.3g} (steepest fall of the loss over "
        f"{len(finding.lrs)} steps from {finding.min_lr:g} to {finding.max_lr:g})"
    )
    print(f"Override: {finding.override}")
    kept = [o for o in overrides() if not o.startswith(("optimizer.lr=", *_OWN))]
    print("Train with it: " + " ".join(["cnnlab train", *kept, finding.override]))
    print(f"Plot: {Path(cfg.paths.output_dir) / 'lr_find.png'}")
    return 0


def summary(cfg: DictConfig) -> int:
    from cnnlab.build import build
    from cnnlab.models import layer_table, model_title

    datamodule, model = build(cfg)
    title = f"{model_title(model.net)} on {datamodule.spec.title}"
    print(layer_table(model.net, datamodule.input_shape, title))
    return 0


def augment(cfg: DictConfig) -> int:
    from hydra.core.hydra_config import HydraConfig

    from cnnlab.build import build
    from cnnlab.viz.figures import augmentation_figure, save
    from cnnlab.viz.grids import augmentation_rows

    datamodule, _ = build(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    rows = augmentation_rows(datamodule, n=10, repeats=4)
    title = f"aug={HydraConfig.get().runtime.choices.get('aug')} on {datamodule.spec.title}"
    print(f"Saved {save(augmentation_figure(rows, title), output_folder() / 'augmentation.png')}")
    return 0


def _serve(module: str, *args: str) -> None:
    """Replace this process with a server's own command line (its Ctrl-C, its exit status)."""
    argv = [sys.executable, "-m", module, *args]
    os.execv(sys.executable, argv)


def tensorboard(cfg: DictConfig) -> int:
    port = _int(cfg, "port", 1, 65535)
    logdir, host, every = _text(cfg, "logdir"), _text(cfg, "host"), _int(cfg, "reload_interval", 1)
    _serve(
        "tensorboard.main", "--logdir", logdir, "--host", host, "--port", str(port),
        "--reload_interval", str(every),
    )  # fmt: skip
    return 0


def mlflow_ui(cfg: DictConfig) -> int:
    port = _int(cfg, "port", 1, 65535)
    db, host = _text(cfg, "db"), _text(cfg, "host")
    _serve("mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}", "--host", host, "--port", str(port))  # fmt: skip
    return 0


COMMANDS = {
    c.name: c
    for c in (
        Command("train", "train", None),
        Command("eval", "eval", None),
        Command("predict", "predict", predict),
        Command("export", "export", export),
        Command("search", "search", search),
        Command("lr-find", "lr_find", lr_find),
        Command("summary", "summary", summary),
        Command("augment", "augment", augment),
        Command("kernels", "kernels", kernels),
        Command("activations", "activations", activations),
        Command("inspect", "inspect", inspect),
        Command("compare", "compare", compare, positional="runs"),
        Command("prepare-data", "prepare_data", prepare_data, positional="datasets"),
        Command("tensorboard", "tensorboard", tensorboard),
        Command("mlflow-ui", "mlflow_ui", mlflow_ui),
        Command("demo", "demo", demo),
    )
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: cnnlab <command> [key=value ...]   (cnnlab <command> --help: its keys)", ""]
    lines += [f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS.values()]
    return "\n".join(lines)


def command_help(command: Command) -> str:
    if command.run is None:  # a Hydra app
        tail = (
            "Hydra: -m runs a sweep (key=a,b,c); hydra.run.dir=PATH is the run folder; "
            "--hydra-help lists Hydra's own flags."
        )
        return help_text(command.name, command.config, every_key=True, tail=tail)
    tail = ""
    if "train" in defaults_of(command.config):
        tail = "Also every key and group of cnnlab train (cnnlab train --help)."
    return help_text(command.name, command.config, every_key=False, tail=tail)


def before_app(name: str, argv: list[str]) -> None:
    """What a Hydra app does first: ``--help`` from conf/, and a typo'd key or option refused in
    one line, exit 2, before Hydra makes the run folder."""
    command = COMMANDS[name]
    if any(a in HELP for a in argv):
        print(command_help(command))
        sys.exit(0)
    if any(a.split("=")[0] in HYDRA_FLAGS for a in argv):
        return
    try:
        check_keys(command.config, argv, name)
    except CnnlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def compose_command(command: Command, argv: list[str]) -> DictConfig:
    """The config of one run of ``command``: its key=value, plain arguments and required keys."""
    rest, plain, flags = [], [], []
    for arg in argv:
        if "=" in arg or arg.startswith("~"):  # ~key: Hydra's deletion of a key
            rest.append(arg)
        elif command.positional and not arg.startswith("-"):
            plain.append(arg)
        else:
            flags.append(arg)
    try:
        cfg = compose_config(command.config, rest)
    except ConfigError:
        check_keys(command.config, rest, command.name)  # the close key, when that is the error
        raise
    for arg in flags:  # --per-run: the key per_run=true
        key = arg.lstrip("-").replace("-", "_")
        hint = f"; use {key}=..." if key in cfg else ""
        raise ConfigError(
            f"Unexpected argument {arg!r}: cnnlab {command.name} takes key=value{hint} "
            f"(cnnlab {command.name} --help lists them)."
        )
    if plain:
        cfg[command.positional] = [*cfg[command.positional], *plain]
    missing = [k for k in cfg if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ConfigError(
            f"Missing {', '.join(f'{k}=...' for k in missing)} "
            f"(cnnlab {command.name} --help lists the keys)."
        )
    return cfg


def run(name: str, argv: list[str]) -> int:
    """Run one command with its arguments; returns the exit status."""
    command = COMMANDS[name]
    if command.run is None:  # the Hydra app (cnnlab.apps), as train.py / eval.py start it
        from cnnlab.apps import start

        start(command.config, argv)
        return 0
    if any(a in HELP for a in argv):
        print(command_help(command))
        return 0
    try:
        return command.run(compose_command(command, argv)) or 0
    except CnnlabError as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


def alias(name: str) -> None:
    """A script in scripts/ that is another name for ``cnnlab <name>``."""
    sys.exit(run(name, sys.argv[1:]))


def complete(argv: list[str]) -> int:
    """Hydra's shell completion for ``cnnlab <command>``: ``eval "$(cnnlab -sc install=bash)"``.

    The completion script asks ``cnnlab -sc query=bash`` with the line typed in COMP_LINE:
    the command word is completed here; the rest is Hydra's, asked of that command's app (train
    for the commands that compose train's config, and to install the script)."""
    words = os.environ.get("COMP_LINE", "").split()
    typed = os.environ.get("COMP_LINE", "").endswith(" ")
    if any(a.startswith("query=") for a in argv) and len(words) + typed <= 2:
        prefix = words[1] if len(words) > 1 else ""
        print(" ".join(c for c in COMMANDS if c.startswith(prefix)))
        return 0
    name = words[1] if len(words) > 1 and words[1] in COMMANDS else "train"
    app = "eval" if COMMANDS[name].config == "eval" else "train"
    if words:  # the app reads the line after its own name: drop "cnnlab"
        os.environ["COMP_LINE"] = os.environ["COMP_LINE"].split(None, 1)[-1]
    from cnnlab.apps import APPS

    sys.argv = ["cnnlab", *argv]  # the name the installed completion answers to
    APPS[app]()
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-sc", "--shell-completion"):
        sys.exit(complete(argv))
    if not argv or argv[0] in HELP:
        print(usage())
        sys.exit(0 if argv else EXIT_USER_ERROR)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" did you mean {close[0]}?" if close else ""
        print(f"Error: {name!r} is not a cnnlab command;{hint} (cnnlab --help lists them)",
              file=sys.stderr)  # fmt: skip
        sys.exit(EXIT_USER_ERROR)
    sys.exit(run(name, rest))
