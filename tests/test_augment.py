"""Augmentation presets: shapes kept, training split only, repeatable under a seed."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from cnnlab.config import compose_config
from cnnlab.data import ImageDataModule
from cnnlab.data.augment import build_augmentation
from cnnlab.data.sources import get_spec
from cnnlab.errors import ConfigError


def aug_cfg(preset: str, *overrides: str) -> dict:
    return dict(compose_config("train", [f"aug={preset}", *overrides]).aug)


def batch(shape, n=16, seed=0):
    c, h, w = shape
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("preset", ["light", "strong", "cifar"])
@pytest.mark.parametrize("data", ["mnist", "cifar10"])
def test_presets_keep_shape_and_dtype_and_change_images(preset, data):
    spec = get_spec(data)
    aug = build_augmentation(aug_cfg(preset), spec, seed=0)
    x = batch(spec.shape)
    y = aug(x, np.arange(16))
    assert y.shape == x.shape and y.dtype == np.uint8
    assert (y != x).any(axis=(1, 2, 3)).sum() >= 8  # most images changed


def test_none_builds_nothing():
    assert build_augmentation(aug_cfg("none"), get_spec("mnist")) is None


def test_repeatable_under_a_seed_and_one_draw_per_image():
    spec = get_spec("mnist")
    x = np.repeat(batch(spec.shape, n=1), 8, axis=0)  # the same image eight times
    positions = np.arange(100, 108)

    def run(seed, pos=positions):
        return build_augmentation(aug_cfg("light", "aug.affine_p=1.0"), spec, seed=seed)(x, pos)

    a = run(0)
    assert np.array_equal(a, run(0))  # same seed, same batch: same result, in any process
    assert not np.array_equal(a, run(1))  # another seed
    assert not np.array_equal(a, run(0, positions + 8))  # another batch
    assert len({img.tobytes() for img in a}) == 8  # every copy drew its own transform


def test_each_batch_of_positions_draws_its_own_transforms_whatever_their_integer_type():
    spec = get_spec("mnist")
    aug = build_augmentation(aug_cfg("light", "aug.affine_p=1.0"), spec, seed=3)
    x = np.repeat(batch(spec.shape, n=1), 2, axis=0)
    # ten batches, ten seeds: no two batches share a draw
    draws = {aug(x, np.arange(i, i + 2)).tobytes() for i in range(0, 20, 2)}
    assert len(draws) == 10
    # the positions' values seed the draw, not how they are stored
    positions = np.array([7, 11])
    expected = aug(x, positions.astype(np.int64))
    assert np.array_equal(aug(x, positions.astype(np.int32)), expected)
    assert np.array_equal(aug(x, [7, 11]), expected)


def test_every_parameter_is_overridable():
    aug = build_augmentation(
        aug_cfg("light", "aug.rotate_limit=20", "aug.hflip=0.5"), get_spec("mnist")
    )
    names = [type(t).__name__ for t in aug.compose.transforms]
    assert names == ["HorizontalFlip", "Affine"]
    affine = aug.compose.transforms[1]
    assert tuple(affine.rotate) == (-20, 20)


def test_the_affine_and_elastic_steps_take_their_ranges_from_the_keys():
    aug = build_augmentation(
        aug_cfg(
            "none",
            "aug.affine_p=0.7",
            "aug.shift_limit=0.1",
            "aug.scale_limit=0.2",
            "aug.rotate_limit=15",
            "aug.elastic_p=0.3",
        ),
        get_spec("cifar10"),  # 32x32
    )
    affine, elastic = aug.compose.transforms
    assert affine.translate_percent == {"x": (-0.1, 0.1), "y": (-0.1, 0.1)}
    assert affine.scale == {"x": (0.8, 1.2), "y": (0.8, 1.2)}
    assert tuple(affine.rotate) == (-15, 15) and affine.p == 0.7
    assert affine.border_mode == cv2.BORDER_CONSTANT and affine.fill == 0  # black, not mirrored
    assert type(elastic).__name__ == "ElasticTransform" and elastic.p == 0.3
    assert (elastic.alpha, elastic.sigma) == (32 * 0.5, 32 * 0.12)


def test_grid_brightness_and_cutout_steps_take_their_settings_from_the_keys():
    keys = [
        "aug.grid_distortion_p=0.4",
        "aug.brightness_contrast=0.25",
        "aug.brightness_contrast_p=0.6",
        "aug.cutout_holes=3",
        "aug.cutout_p=0.3",  # not albumentations' default p (0.5): the key must be passed on
    ]
    grid, light, cutout = build_augmentation(
        aug_cfg("none", *keys, "aug.cutout_size=0.5"), get_spec("mnist")
    ).compose.transforms
    assert (grid.num_steps, grid.distort_limit, grid.p) == (5, (-0.3, 0.3), 0.4)
    assert (light.brightness_limit, light.contrast_limit) == ((-0.25, 0.25), (-0.25, 0.25))
    assert light.p == 0.6
    assert (cutout.num_holes_range, cutout.fill, cutout.p) == ((1, 3), 0, 0.3)
    assert cutout.hole_height_range == cutout.hole_width_range == (0.25, 0.5)
    # a hole's side is kept within [0.01, 1] of the image
    for size, side in (("1.5", 1.0), ("0.001", 0.01)):
        *_, cutout = build_augmentation(
            aug_cfg("none", *keys, f"aug.cutout_size={size}"), get_spec("mnist")
        ).compose.transforms
        assert cutout.hole_height_range == cutout.hole_width_range == (side / 2, side)


def test_pad_crop_takes_each_image_from_its_zero_padded_self_at_every_offset():
    from cnnlab.data.augment import build_augmentation as build

    spec = get_spec("mnist")
    aug = build(aug_cfg("none", "aug.pad_crop=2"), spec, seed=0)
    assert [type(t).__name__ for t in aug.compose.transforms] == ["PadIfNeeded", "RandomCrop"]
    x = np.random.default_rng(0).integers(1, 256, (200, 6, 5, 1), dtype=np.uint8)
    spec_small = dataclasses.replace(spec, shape=(1, 6, 5))
    out = build(aug_cfg("none", "aug.pad_crop=2"), spec_small, seed=0)(x, np.arange(200))
    offsets = set()
    for img, src in zip(out, x, strict=True):
        found = _crop_and_flip_of(
            torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(src).permute(2, 0, 1), 2
        )
        assert [f for *_, f in found] == [False]  # one crop of the zero-padded image, no flip
        offsets.add(found[0][:2])
    assert offsets == {(dy, dx) for dy in range(5) for dx in range(5)}
    # no seed given: seed 0
    assert np.array_equal(
        build(aug_cfg("none", "aug.pad_crop=2"), spec_small)(x, np.arange(200)), out
    )


@pytest.mark.parametrize(
    "override,match",
    [
        ("+aug.rotation=5", r"Unknown augmentation key\(s\) aug.rotation. Valid: aug.pad_crop"),
        ("aug.hflip=1.5", r"aug.hflip=1.5 is a probability"),
        ("aug.rotate_limit=-3", r"aug.rotate_limit=-3 must be a number >= 0"),
    ],
)
def test_bad_values_are_named(override, match):
    with pytest.raises(ConfigError, match=match):
        build_augmentation(aug_cfg("light", override), get_spec("mnist"))


def test_only_training_batches_are_augmented(tiny_mnist):
    dm = ImageDataModule(
        "mnist", str(tiny_mnist), val_size=100, mirrors=[], download=False, aug=aug_cfg("strong")
    )
    dm.setup()
    assert dm.train_set.transform is not None
    assert dm.val_set.transform is None and dm.test_set.transform is None
    pos = torch.arange(32)
    x, _ = dm.train_set[pos]
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.uint8
    assert not torch.equal(x, dm.train_set.images[dm.train_set.indices[pos]])
    v, _ = dm.val_set[pos]
    assert torch.equal(v, dm.val_set.images[dm.val_set.indices[pos]])
    assert dm._workers() > 0  # per-sample augmentation runs in worker processes by default


def test_defaults_have_one_source_the_common_yaml():
    from omegaconf import OmegaConf

    from cnnlab.config import CONFIG_DIR
    from cnnlab.data.aug_params import PARAMS

    assert OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "aug_common.yaml")) == PARAMS
    assert dict(compose_config("train", ["aug=none"]).aug) == {**PARAMS, "name": "none"}


@pytest.mark.parametrize(
    "override,switch",
    [("aug.rotate_limit=20", "affine_p"), ("aug.brightness_contrast=0.3", "brightness_contrast_p")],
)
def test_a_strength_without_its_probability_is_warned_about(override, switch, caplog):
    assert build_augmentation(aug_cfg("none", override), get_spec("mnist")) is None
    assert f"has no effect while aug.{switch}=0" in caplog.text


def test_a_strength_with_its_probability_is_not_warned_about(caplog):
    build_augmentation(aug_cfg("light", "aug.rotate_limit=20"), get_spec("mnist"))
    assert "has no effect" not in caplog.text


# -- whole batches on their device (the GPU-resident path): crops and flips by indexing ------


def _crop_and_flip_of(out: torch.Tensor, image: torch.Tensor, pad: int) -> list[tuple]:
    """Every (dy, dx, flipped) for which ``out`` is that crop of the zero-padded ``image``."""
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image, (pad,) * 4)
    found = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            found += [
                (dy, dx, f) for f in (False, True) if torch.equal(out, crop.flip(-1) if f else crop)
            ]
    return found


def test_batch_augmentation_crops_each_image_from_its_padded_self_and_flips_some():
    from cnnlab.data.batch_augment import BatchAugmentation

    # non-zero random pixels: every crop and flip of an image is different, so each output
    # image is explained by exactly one (offset, flip)
    x = torch.randint(
        1, 256, (300, 2, 6, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    out = BatchAugmentation(pad=2, flip_p=0.3, seed=7)(x, key=(3, 1, 0))
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.is_contiguous()
    draws = []
    for i in range(len(x)):
        (draw,) = _crop_and_flip_of(out[i], x[i], pad=2)
        draws.append(draw)
    dys, dxs, flips = zip(*draws, strict=True)
    assert set(dys) == set(dxs) == {0, 1, 2, 3, 4}  # every offset in [-pad, pad], both axes
    assert sum(dy != dx for dy, dx, _ in draws) > 150  # drawn independently per axis
    assert 60 <= sum(flips) <= 120  # Binomial(300, 0.3): mean 90, sd 7.9
    again = BatchAugmentation(pad=2, flip_p=0.3, seed=7)
    assert torch.equal(again(x, key=(3, 1, 0)), out)  # (seed, key) fixes the draw
    assert not torch.equal(again(x, key=(4, 1, 0)), out)
    assert not torch.equal(BatchAugmentation(2, 0.3, seed=8)(x, key=(3, 1, 0)), out)
    # no seed given: seed 0, as from_config's default
    unseeded = BatchAugmentation(2, 0.3)(x, key=(3, 1, 0))
    assert torch.equal(unseeded, BatchAugmentation(2, 0.3, seed=0)(x, key=(3, 1, 0)))
    assert not torch.equal(unseeded, BatchAugmentation(2, 0.3, seed=1)(x, key=(3, 1, 0)))


def test_batch_augmentation_without_padding_only_flips_and_without_flips_only_crops():
    from cnnlab.data.batch_augment import BatchAugmentation

    x = torch.randint(
        1, 256, (100, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    flipped = BatchAugmentation(pad=0, flip_p=1.0)(x)
    assert torch.equal(flipped, x.flip(-1))
    cropped = BatchAugmentation(pad=1, flip_p=0.0)(x)
    assert all(_crop_and_flip_of(cropped[i], x[i], 1)[0][2] is False for i in range(100))
    assert not torch.equal(cropped, x)


def test_batch_augmentation_from_config_takes_crops_and_flips_and_refuses_the_rest():
    from cnnlab.data.batch_augment import BatchAugmentation

    assert BatchAugmentation.from_config(aug_cfg("none")) is None
    aug = BatchAugmentation.from_config(aug_cfg("none", "aug.pad_crop=3"), seed=5)
    assert (aug.pad, aug.flip_p, aug.seed) == (3, 0.0, 5)
    aug = BatchAugmentation.from_config(aug_cfg("none", "aug.hflip=0.5", "aug.mixup_alpha=0.2"))
    assert (aug.pad, aug.flip_p) == (0, 0.5) and isinstance(aug.pad, int)
    with pytest.raises(ConfigError) as err:
        BatchAugmentation.from_config(aug_cfg("none", "aug.pad_crop=4", "aug.elastic_p=0.5"))
    assert "only aug.pad_crop and aug.hflip exist" in str(err.value)
    assert "got aug.elastic_p=0.5. Use aug=cifar or aug=none" in str(err.value)
    with pytest.raises(ConfigError, match=r"got aug.cutout_size=0.5\. Use"):
        BatchAugmentation.from_config(aug_cfg("none", "aug.cutout_size=0.5"))


def test_unknown_keys_are_named_sorted_beside_every_valid_key():
    from cnnlab.data.aug_params import PARAMS, aug_params

    with pytest.raises(ConfigError) as e:
        aug_params({"zoom": 1, "blur": 2, "name": "mine"})
    valid = ", ".join(f"aug.{k}" for k in PARAMS)
    assert str(e.value) == f"Unknown augmentation key(s) aug.blur, aug.zoom. Valid: {valid}."


@pytest.mark.parametrize("value", [True, "often", None])
def test_a_setting_that_is_not_a_number_is_refused_by_name(value):
    from cnnlab.data.aug_params import aug_params

    with pytest.raises(ConfigError) as e:
        aug_params({"rotate_limit": value})
    assert str(e.value) == f"aug.rotate_limit={value!r} must be a number >= 0."


def test_the_forgotten_probability_warning_says_which_key_to_set(caplog):
    from cnnlab.data.aug_params import aug_params

    aug_params({"rotate_limit": 20, "cutout_holes": 2, "cutout_p": 0.0})
    assert caplog.messages == [
        "aug.rotate_limit=20 has no effect while aug.affine_p=0: set aug.affine_p (e.g. 0.8) "
        "to apply it.",
        "aug.cutout_holes=2 has no effect while aug.cutout_p=0: set aug.cutout_p (e.g. 0.8) "
        "to apply it.",
    ]


@pytest.mark.parametrize(
    "keys,on",
    [
        ({"pad_crop": 1}, {"pad_crop"}),  # one pixel of padding is padding
        ({"affine_p": 0.5, "shift_limit": 0.1}, {"affine"}),
        ({"affine_p": 0.5, "scale_limit": 0.1}, {"affine"}),  # any one strength alone
        ({"affine_p": 0.5, "rotate_limit": 10}, {"affine"}),
        ({"affine_p": 0.5}, set()),  # a probability without a strength
        ({"cutout_p": 0.5, "cutout_holes": 1}, {"cutout"}),
        ({"cutout_holes": 2}, set()),  # holes without a probability
        ({"brightness_contrast_p": 0.5, "brightness_contrast": 0}, set()),  # nothing to vary
    ],
)
def test_a_transform_is_switched_on_by_its_probability_and_any_one_strength(keys, on):
    from cnnlab.data.aug_params import aug_params, switched_on

    assert switched_on(aug_params(keys, warn=False)) == on
