"""What a config read back from a checkpoint may build: only the classes ``conf/`` names.

A checkpoint stores its run's config as plain data, and plain data with a ``_target_`` key
is still an instruction to Hydra: ``{"_target_": "pathlib.Path.write_text", ...}`` writes a
file when instantiated, whether it sits at the top or nested under a harmless model. So a
stored config never reaches ``instantiate``. Its one top-level ``_target_`` must be a class
that a YAML file of the matching ``conf/`` group names (a user's own ``conf/model/mynet.yaml``
counts by itself), every other value must be plain (numbers, strings, lists, mappings), and
no other Hydra key (``_args_``, ``_partial_``, ``_recursive_``, ``_convert_``, a nested
``_target_``...) may appear anywhere. The class is then called directly with those values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hydra.utils import get_object

from cnnlab.config import CONFIG_DIR
from cnnlab.errors import CheckpointError, CnnlabError

# the config groups whose classes a checkpoint may name
GROUPS = ("model", "data", "optimizer", "scheduler")

_HYDRA_KEY = re.compile(r"^_\w*_$")


def allowed_targets(group: str, config_dir: Path = CONFIG_DIR) -> set[str]:
    """Every ``_target_`` a YAML file of ``conf/<group>/`` sets, itself or through the configs
    its defaults list includes (read afresh: new files count)."""
    targets = set()
    for path in sorted((config_dir / group).glob("*.yaml")):
        target = _target_of(path, config_dir)
        if target is not None:
            targets.add(target)
    return targets


def _target_of(path: Path, config_dir: Path, depth: int = 0) -> str | None:
    """The ``_target_`` a config file ends up with: its own, else its defaults' (the last wins)."""
    try:
        node = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(node, dict) or depth > 8:
        return None
    if isinstance(node.get("_target_"), str):
        return node["_target_"]
    found = None
    for entry in node.get("defaults") or []:
        if not isinstance(entry, str) or entry == "_self_":
            continue  # overrides of other groups do not set this file's target
        name = entry.split("@", 1)[0]  # "/data_common@_here_" -> "/data_common"
        base = config_dir / name.lstrip("/") if name.startswith("/") else path.parent / name
        found = _target_of(base.with_suffix(".yaml"), config_dir, depth + 1) or found
    return found


def check_stored(node: Any, group: str, where: str) -> dict[str, Any]:
    """``node`` (a stored ``group`` config) if it only names an allowed class with plain values.

    ``where`` names the file in the CheckpointError, which names the offending key.
    """
    if not isinstance(node, dict):
        raise CheckpointError(
            f"{where}: its stored {group} config is a {type(node).__name__}, not a mapping; refused."
        )
    allowed = allowed_targets(group)
    target = node.get("_target_")
    if not isinstance(target, str) or target not in allowed:
        raise CheckpointError(
            f"{where}: its stored {group} config has _target_={target!r}, which no "
            f"conf/{group}/*.yaml names (allowed: {', '.join(sorted(allowed))}); refused. "
            f"A checkpoint may only build the project's own {group} classes."
        )
    for key, value in node.items():
        if key != "_target_":
            _check_plain(key, value, f"{group}.{key}", where)
    return node


def _check_plain(key: Any, value: Any, keypath: str, where: str) -> None:
    if not isinstance(key, str):
        raise CheckpointError(f"{where}: refused: {keypath} has a non-string key {key!r}.")
    if _HYDRA_KEY.match(key):
        raise CheckpointError(
            f"{where}: refused: its stored config holds the Hydra key {keypath} (a checkpoint "
            f"may only name a class from conf/ at the top of a config, with plain values)."
        )
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        if "${" in value:  # stored configs are resolved; an interpolation would run a resolver
            raise CheckpointError(
                f"{where}: refused: {keypath}={value!r} is an interpolation, not a plain value."
            )
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(str(i), item, f"{keypath}[{i}]", where)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k, v, f"{keypath}.{k}", where)
        return
    raise CheckpointError(
        f"{where}: refused: {keypath} is a {type(value).__name__}, not a plain value."
    )


def build_stored(node: Any, group: str, where: str, **kwargs: Any) -> Any:
    """Call the allowed class a stored config names with its plain values (plus ``kwargs``)."""
    node = check_stored(node, group, where)
    target = node["_target_"]
    try:
        cls = get_object(target)
    except Exception as e:
        raise CheckpointError(
            f"{where}: its {group} class {target} cannot be imported ({type(e).__name__}: {e})."
        ) from None
    args = {k: v for k, v in node.items() if k != "_target_"}
    try:
        return cls(**args, **kwargs)
    except CnnlabError:
        raise
    except TypeError as e:  # an argument the class does not take (another version's config)
        raise CheckpointError(
            f"{where}: its stored {group} config does not fit {target} ({e})."
        ) from None
