"""The one table of config keys that do not change a result, and the three rules that read it."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from cnnlab.checkpoint import PATH_KEYS
from cnnlab.config import CONFIG_DIR, compose_config
from cnnlab.neutral_keys import ANY, NEUTRAL_KEYS, always_neutral, sweep_exclude_keys, switches
from cnnlab.record import fingerprint

MISSING = "<not in the config>"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    composed = compose_config("train", [], output_dir=tmp_path_factory.mktemp("neutral") / "run")
    return OmegaConf.create(OmegaConf.to_container(composed, resolve=True))  # values, no links


def test_sweep_folder_names_leave_out_exactly_the_tables_keys():
    hydra = yaml.safe_load((CONFIG_DIR / "hydra" / "default.yaml").read_text())
    listed = hydra["job"]["config"]["override_dirname"]["exclude_keys"]
    expected = sweep_exclude_keys()
    assert listed == expected, (
        f"conf/hydra/default.yaml's exclude_keys differ from cnnlab.neutral_keys "
        f"(only in the YAML: {sorted(set(listed) - set(expected))}; only in the table: "
        f"{sorted(set(expected) - set(listed))}). Put the key in the table and use: "
        f"exclude_keys: [{', '.join(expected)}]"
    )


def test_every_key_of_the_table_is_in_the_config_and_each_switch_is_off_by_default(cfg):
    for key, neutral in NEUTRAL_KEYS.items():
        value = OmegaConf.select(cfg, key, default=MISSING)
        assert value is not MISSING, f"{key} is in cnnlab.neutral_keys but in no conf/ file"
        if neutral.when is not ANY:
            plain = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            assert plain == neutral.when, (
                f"{key} defaults to {plain!r} in conf/ but cnnlab.neutral_keys says it changes "
                f"nothing at {neutral.when!r}: runs recorded before it would no longer match"
            )


@pytest.mark.parametrize("key", always_neutral())
def test_a_key_of_the_table_changes_no_fingerprint_at_any_value(cfg, key):
    changed = cfg.copy()
    other = {"other": 1} if OmegaConf.is_dict(OmegaConf.select(cfg, key)) else "/somewhere/else"
    with open_dict(changed):
        OmegaConf.update(changed, key, other, merge=False, force_add=True)
    assert fingerprint(changed) == fingerprint(cfg)


@pytest.mark.parametrize("key", list(switches()))
def test_a_switch_changes_the_fingerprint_once_it_is_not_at_its_neutral_value(cfg, key):
    changed = cfg.copy()
    with open_dict(changed):
        OmegaConf.update(changed, key, "on", merge=False, force_add=True)
    assert fingerprint(changed) != fingerprint(cfg)


def test_a_key_outside_the_table_changes_the_fingerprint(cfg):
    for key, value in (("seed", 7), ("data.batch_size", 3), ("threads", 1), ("data.root", "/x")):
        changed = cfg.copy()
        with open_dict(changed):
            OmegaConf.update(changed, key, value, force_add=True)
        assert fingerprint(changed) != fingerprint(cfg), key


def test_early_stopping_is_the_one_callback_that_counts(cfg):
    changed = cfg.copy()
    changed.callbacks.early_stopping.patience = 3
    assert fingerprint(changed) != fingerprint(cfg)


def test_a_checkpoint_supplies_none_of_the_data_places_of_the_table():
    assert PATH_KEYS == ("data_dir", "mirrors", "root")
