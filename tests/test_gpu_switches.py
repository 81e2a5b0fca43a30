"""GPU switches, exercised on CPU: channels-last, torch.compile, bf16-mixed, the resident data path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.data.batch_augment import BatchAugmentation
from cnnlab.errors import ConfigError
from cnnlab.lit import ImageClassifier
from cnnlab.memory_format import channels_last
from cnnlab.models import MLP, LeNet5
from cnnlab.run import train

from .conftest import make_cfg

ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}


@pytest.mark.parametrize("switch", [{"channels_last": True}, {"compile": "eager"}])
def test_switches_compute_the_same_function(switch):
    torch.manual_seed(0)
    net = LeNet5((3, 32, 32), 10)
    plain = ImageClassifier(net, 10, ADAM).eval()
    x = torch.randn(4, 3, 32, 32)
    expected = plain(x)
    switched = ImageClassifier(net, 10, ADAM, **switch).eval()
    assert torch.allclose(switched(x), expected, atol=1e-5)
    assert set(switched.state_dict()) == set(plain.state_dict())  # checkpoints stay interchangeable


def _user_net(norm: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3), norm)


@pytest.mark.parametrize(
    "value, net, accelerator, expected",
    [
        ("auto", LeNet5((1, 28, 28), 10), "auto", True),  # convolutions, no batch norm, CPU here
        ("auto", LeNet5((1, 28, 28), 10), "cpu", True),
        ("auto", LeNet5((1, 28, 28), 10, batch_norm=True), "cpu", False),  # C1: 6 channels
        ("auto", _user_net(nn.BatchNorm2d(6)), "cpu", False),  # narrow: 8x slower
        ("auto", _user_net(nn.BatchNorm2d(12)), "cpu", False),
        ("auto", _user_net(nn.BatchNorm2d(20)), "cpu", False),  # not a multiple of 8
        ("auto", _user_net(nn.BatchNorm2d(16)), "cpu", True),  # wide enough: as fast or faster
        ("auto", _user_net(nn.BatchNorm1d(6)), "cpu", True),  # not over image maps
        ("auto", MLP((1, 28, 28), 10), "cpu", False),  # nothing to gain without convolutions
        ("auto", LeNet5((1, 28, 28), 10), "gpu", False),  # not measured on a GPU: as before
        (True, LeNet5((1, 28, 28), 10, batch_norm=True), "cpu", True),  # chosen: as chosen
        (False, LeNet5((1, 28, 28), 10), "cpu", False),
    ],
    ids=[
        "lenet-auto",
        "lenet-cpu",
        "lenet-bn",
        "plain-bn-6",
        "plain-bn-12",
        "plain-bn-20",
        "plain-bn-16",
        "bn1d",
        "mlp",
        "gpu",
        "forced-on",
        "forced-off",
    ],
)
def test_channels_last_auto_is_on_for_cpu_convolutions_without_slow_batch_norm(
    value, net, accelerator, expected
):
    assert channels_last(value, net, accelerator) is expected


def test_a_default_run_trains_and_tests_in_the_layout_auto_chose(tiny_mnist, tmp_path):
    from cnnlab.checkpoint import load_classifier

    cfg = make_cfg(tmp_path, tiny_mnist, "data.val_size=100", "trainer.max_epochs=1")
    metrics = train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / metrics["tested_checkpoint"]
    model, _ = load_classifier(ckpt)  # eval.py and predict.py: the layout it was tested in
    assert model.hparams.channels_last is True
    assert model.net.C1.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ConfigError, match=r"channels_last='yes' must be true, false or auto"):
        train(make_cfg(tmp_path / "bad", tiny_mnist, "channels_last=yes"))


def test_all_switches_train_together_on_cpu(tiny_mnist, tmp_path):
    cfg = make_cfg(
        tmp_path,
        tiny_mnist,
        "data.val_size=100",
        "data.batch_size=50",
        "trainer.max_epochs=1",
        "trainer.precision=bf16-mixed",
        "channels_last=true",
        "compile=eager",
        "data.resident=true",
        "aug=cifar",
    )
    metrics = train(cfg)
    assert metrics["status"] == "completed" and metrics["test/loss"] > 0


def test_batch_augmentation_crops_and_flips_by_indexing():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    flipped = BatchAugmentation(pad=0, flip_p=1.0)(x)
    assert torch.equal(flipped, x.flip(-1))
    cropped = BatchAugmentation(pad=2, flip_p=0.0, seed=3)(x)
    assert cropped.shape == x.shape and cropped.dtype == torch.uint8
    for img, src in zip(
        cropped, x, strict=True
    ):  # every crop is a shifted window of the padded image
        padded = torch.nn.functional.pad(src, (2, 2, 2, 2))
        windows = padded.unfold(1, 4, 1).unfold(2, 4, 1)  # (1, 5, 5, 4, 4)
        assert any(torch.equal(windows[0, i, j], img[0]) for i in range(5) for j in range(5))
    again = BatchAugmentation(pad=2, flip_p=0.5, seed=3)
    assert torch.equal(again(x), BatchAugmentation(pad=2, flip_p=0.5, seed=3)(x))


def test_resident_path_refuses_augmentations_it_cannot_run():
    with pytest.raises(
        ConfigError, match=r"only aug.pad_crop and aug.hflip exist .*; got aug.rotate_limit=10"
    ):
        BatchAugmentation.from_config({"rotate_limit": 10, "affine_p": 0.8})


def test_resident_path_refuses_them_when_the_datamodule_is_built(tmp_path):
    from cnnlab.build import build
    from cnnlab.config import compose_config

    cfg = compose_config("train", ["data.resident=true", "aug=light"], output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"only aug.pad_crop and aug.hflip exist"):
        build(cfg)  # before any data is read, not in setup()


def test_the_on_device_path_does_not_import_albumentations():
    import subprocess
    import sys

    code = (
        "import sys, torch; from cnnlab.data.batch_augment import BatchAugmentation;"
        "BatchAugmentation(2, 0.5)(torch.zeros(2, 1, 8, 8, dtype=torch.uint8));"
        "print(sorted(m for m in ('albumentations', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
