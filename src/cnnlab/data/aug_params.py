"""The ``aug.*`` keys: their defaults (read from ``conf/aug_common.yaml``, the one place
they are written down) and their checks, shared by both augmentation paths."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from cnnlab.config import CONFIG_DIR
from cnnlab.errors import ConfigError

log = logging.getLogger(__name__)

# key -> default (every transform off); the YAML documents what each key does
PARAMS: dict[str, float] = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "aug_common.yaml"))
PROBABILITIES = (
    "hflip",
    "affine_p",
    "elastic_p",
    "grid_distortion_p",
    "brightness_contrast_p",
    "cutout_p",
)
# a transform's strength -> the probability that switches it on
_SWITCHED_BY = {
    "shift_limit": "affine_p",
    "scale_limit": "affine_p",
    "rotate_limit": "affine_p",
    "brightness_contrast": "brightness_contrast_p",
    "cutout_holes": "cutout_p",
}


def aug_params(cfg: Mapping[str, Any], warn: bool = True) -> dict[str, float]:
    """Every key with its value (defaults filled in); ConfigError for unknown or bad values.

    A strength set while its probability is 0 does nothing; that is almost always a
    forgotten ``_p`` (``aug=none aug.rotate_limit=20``), so it is said out loud.
    """
    unknown = set(cfg) - set(PARAMS) - {"name"}
    if unknown:
        raise ConfigError(
            f"Unknown augmentation key(s) {', '.join(sorted('aug.' + k for k in unknown))}. "
            f"Valid: {', '.join('aug.' + k for k in PARAMS)}."
        )
    out = {k: cfg.get(k, default) for k, default in PARAMS.items()}
    for key, value in out.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"aug.{key}={value!r} must be a number >= 0.")
        if key in PROBABILITIES and value > 1:
            raise ConfigError(f"aug.{key}={value!r} is a probability: use a value in [0, 1].")
    for key, switch in _SWITCHED_BY.items():
        if warn and out[key] and not out[switch]:
            log.warning(
                "aug.%s=%s has no effect while aug.%s=0: set aug.%s (e.g. 0.8) to apply it.",
                key,
                out[key],
                switch,
                switch,
            )
    return out


def switched_on(p: Mapping[str, float]) -> set[str]:
    """The transforms checked parameters turn on (a probability > 0 and a strength > 0)."""
    on = {
        "pad_crop": p["pad_crop"] > 0,
        "hflip": p["hflip"] > 0,
        "affine": p["affine_p"] > 0
        and bool(p["shift_limit"] or p["scale_limit"] or p["rotate_limit"]),
        "elastic": p["elastic_p"] > 0,
        "grid_distortion": p["grid_distortion_p"] > 0,
        "brightness_contrast": p["brightness_contrast_p"] > 0 and p["brightness_contrast"] > 0,
        "cutout": p["cutout_p"] > 0 and p["cutout_holes"] >= 1,
    }
    return {name for name, is_on in on.items() if is_on}
