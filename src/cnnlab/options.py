"""A command's options as conf/ states them: each key's default and description (the comment
beside it in the YAML, or the comment block above it), the config groups with their choices, and
the close key for a typo. Read from the YAML files themselves, so the help never drifts from
them; nothing here imports torch."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from cnnlab.config import CONFIG_DIR, compose_with_hydra
from cnnlab.errors import ConfigError

_KEY_LINE = re.compile(
    r"^(?P<indent> *)(?P<key>[A-Za-z_][\w@/.-]*):(?P<value>[^#]*?)\s*(#\s?(?P<note>.*))?$"
)
_COMMENT = re.compile(r"^(?P<indent> *)#\s?(?P<text>.*)$")
_ENTRY = re.compile(
    r"^ *- +(override +)?(?P<name>[\w/@.]+)(: *(?P<option>[\w/.-]*))? *(#\s?(?P<note>.*))?$"
)


@dataclass
class Key:
    name: str  # dotted, as on the command line
    default: str  # as composed (interpolations unresolved)
    note: str  # the YAML's comment on it


@dataclass
class Group:
    name: str
    default: str  # the option chosen by default (null: none)
    choices: list[str]
    note: str


def notes(path: Path, prefix: str = "") -> dict[str, str]:
    """``dotted key -> comment`` of one YAML file: the comment on the key's line (with the
    comment lines right below it that are indented past the key), else the comment block right
    above the key. Keys under ``defaults:`` are group entries: see ``entry_notes``."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the nodes the line is inside
    above: list[str] = []  # the comment block just read
    last: tuple[str, int] | None = None  # the key an inline comment may continue
    for line in path.read_text().splitlines():
        comment = _COMMENT.match(line)
        if comment:
            indent = len(comment["indent"])
            if last and indent > last[1] and found.get(last[0]):
                found[last[0]] += " " + comment["text"].strip()
            else:
                last = None
                above.append(comment["text"].strip())
            continue
        match = _KEY_LINE.match(line)
        if not match or not line.strip():
            above, last = ([] if not line.strip() else above), None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if stack[0][1] == "defaults":
            above, last = [], None
            continue
        dotted = ".".join(filter(None, [prefix, *(k for _, k in stack)]))
        note = (match["note"] or "").strip() or " ".join(above)
        parent = dotted.rpartition(".")[0]
        if not note and parent in found and not any(k.startswith(parent + ".") for k in found):
            note = found[parent]  # a node's comment (`ema:  # ...`) speaks of its first key too
        found.setdefault(dotted, note)
        last = (dotted, indent) if match["note"] else None
        above = []
    return found


def entry_notes(path: Path) -> dict[str, str]:
    """The comments on a file's defaults-list entries: ``group -> comment``."""
    found: dict[str, str] = {}
    above: list[str] = []
    inside = False
    for line in path.read_text().splitlines():
        if line.startswith("defaults:"):
            inside = True
            continue
        if inside and line and not line.startswith(" "):
            break
        comment = _COMMENT.match(line)
        if inside and comment:
            above.append(comment["text"].strip())
            continue
        entry = _ENTRY.match(line) if inside else None
        if entry:
            group = entry["name"].split("@")[0]
            found[group] = (entry["note"] or "").strip() or " ".join(above)
        above = []
    return found


def _defaults(path: Path) -> list:
    return (yaml.safe_load(path.read_text()) or {}).get("defaults") or []


def defaults_of(config_name: str) -> list:
    """The defaults list of conf/<config_name>.yaml, as written."""
    return _defaults(CONFIG_DIR / f"{config_name}.yaml")


def _package(path: Path, default: str) -> str:
    head = path.read_text().split("\n", 1)[0]
    if head.startswith("# @package"):
        package = head.split()[-1]
        return "" if package == "_global_" else package
    return default


def _files(config_name: str, choices: dict) -> Iterator[tuple[Path, str]]:
    """The YAML files a config is made of, with the key prefix their keys land under."""

    def walk(path: Path, prefix: str) -> Iterator[tuple[Path, str]]:
        yield path, prefix
        for entry in _defaults(path):
            if isinstance(entry, str) and entry != "_self_":
                name, _, package = entry.partition("@")  # /absolute or beside this file
                base = CONFIG_DIR if name.startswith("/") else path.parent
                package = prefix if package in ("", "_here_") else package
                yield from walk(base / f"{name.lstrip('/')}.yaml", package)
            elif isinstance(entry, dict):
                ((group, _),) = entry.items()
                group = group.removeprefix("override ").split("@")[0]
                option = choices.get(group)
                file = CONFIG_DIR / group / f"{option}.yaml"
                if option and file.is_file():
                    yield from walk(file, _package(file, group.replace("/", ".")))

    yield from walk(CONFIG_DIR / f"{config_name}.yaml", "")


def _leaves(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, str]]:
    for key in node:
        full = f"{prefix}{key}"
        if OmegaConf.is_missing(node, key):
            yield full, "???"
            continue
        if OmegaConf.is_interpolation(node, key):
            yield full, str(node._get_node(key)._value())
            continue
        value = node[key]
        if isinstance(value, DictConfig) and len(value):
            yield from _leaves(value, full + ".")
        elif isinstance(value, (DictConfig, ListConfig)):
            plain = OmegaConf.to_container(value, resolve=False)
            yield full, yaml.safe_dump(plain, default_flow_style=True, width=1000).strip()
        elif value is None or isinstance(value, bool) or value == "":
            yield full, {None: "null", True: "true", False: "false", "": "''"}[value]
        else:
            yield full, str(value)


def describe(config_name: str, overrides: Sequence[str] = ()) -> tuple[list[Group], list[Key]]:
    """The groups (with their choices) and the keys of a command's composed config."""
    cfg = compose_with_hydra(config_name, overrides)
    choices = dict(cfg.hydra.runtime.choices)
    described: dict[str, str] = {}
    groups: list[Group] = []
    for path, prefix in _files(config_name, choices):
        for key, note in notes(path, prefix).items():
            if note and not described.get(key):
                described[key] = note
        for group, note in entry_notes(path).items():
            if group in choices and not group.startswith("hydra"):  # Hydra's: --hydra-help
                options = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
                groups.append(Group(group, str(choices[group]).lower(), options, note))
    keys = [
        Key(name, default, described.get(name, ""))
        for name, default in _leaves(cfg)
        if not name.startswith("hydra.") or name == "hydra.run.dir"
    ]
    return groups, keys


def intro(config_name: str) -> list[str]:
    """The comment block at the top of conf/<config_name>.yaml: what the command does."""
    lines = []
    for line in (CONFIG_DIR / f"{config_name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def help_text(command: str, config_name: str, every_key: bool, tail: str = "") -> str:
    """``cnnlab <command> --help``: what it does, its groups, its keys. ``every_key``: also the
    keys its groups bring (train's); else the keys of conf/<config_name>.yaml only."""
    groups, keys = describe(config_name)
    if not every_key:
        own = notes(CONFIG_DIR / f"{config_name}.yaml")
        keys = [k for k in keys if k.name in own]
        groups = [g for g in groups if len(g.choices) > 1]
    keys = [k for k in keys if not k.name.endswith("_target_")]  # the class, not an option
    out = [f"cnnlab {command}: " + "\n  ".join(intro(config_name)), ""]
    if groups:
        out.append("Config groups (group=option; the default first):")
        width = max(len(g.name) for g in groups)
        for g in groups:
            others = [c for c in g.choices if c != g.default]
            line = f"  {g.name:<{width}}  {' | '.join([g.default, *others])}"
            out.append(line + (f"  ({g.note})" if g.note else ""))
        out.append("")
    if keys:
        out.append("Keys (key=value: the default, then what it is):")
        width = min(max(len(k.name) for k in keys), 34)
        for k in keys:
            out.append(f"  {k.name:<{width}}  {k.default}" + (f"  # {k.note}" if k.note else ""))
    if tail:
        out += ["", tail]
    return "\n".join(out)


def _all_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    for key in node:
        full = f"{prefix}{key}"
        yield full
        if not OmegaConf.is_interpolation(node, key) and not OmegaConf.is_missing(node, key):
            value = node[key]
            if isinstance(value, DictConfig):
                yield from _all_keys(value, full + ".")


def first_job(argv: Sequence[str]) -> list[str]:
    """The overrides as one job of them: a sweep ``a=1,2`` is its first value; ``-m`` goes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for arg in argv:
        if arg.startswith("-"):
            continue
        try:
            (override,) = OverridesParser.create().parse_overrides([arg])
        except Exception:  # Hydra reports a malformed override itself, as it always has
            return []
        if override.is_sweep_override():
            try:
                first = next(iter(override.sweep_string_iterator()))
            except Exception:  # an interval: no first value to compose with
                continue
            arg = f"{override.get_key_element()}={first}"
        out.append(arg)
    return out


def check_keys(config_name: str, argv: Sequence[str], command: str) -> None:
    """A key or option that conf/ does not have: ConfigError naming the closest one there is.

    Other composition errors are left to the command (Hydra's own messages)."""
    overrides = first_job(argv)
    try:
        compose_with_hydra(config_name, overrides)
        return
    except ConfigError as e:
        message = str(e)
    key = re.match(r"Could not override '([^']+)'", message)
    option = re.search(r"Could not find '([^']+)/([^'/]+)'", message)
    fix = f"`cnnlab {command} --help` lists them"
    if key:
        name = key[1]
        rest = [o for o in overrides if o.split("=")[0].lstrip("+~") != name]
        try:
            cfg = compose_with_hydra(config_name, rest)
        except ConfigError:
            cfg = compose_with_hydra(config_name, [])
        close = difflib.get_close_matches(name, list(_all_keys(cfg)), n=1, cutoff=0.8)
        hint = f"did you mean {close[0]}? " if close else ""
        value = next((o.partition("=")[2] for o in overrides if o.startswith(name + "=")), "...")
        raise ConfigError(
            f"{name} is not a key of cnnlab {command}: {hint}({fix}; +{name}={value} adds a new key)."
        ) from None
    if option:
        group, wrong = option[1], option[2]
        choices = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        close = difflib.get_close_matches(wrong, choices, n=1, cutoff=0.6)
        hint = f": did you mean {group}={close[0]}?" if close else ""
        raise ConfigError(
            f"{group}={wrong} is not an option{hint} (options: {', '.join(choices)})."
        ) from None
