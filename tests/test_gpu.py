"""On a CUDA GPU only (skipped elsewhere: CI has none). The resident data path keeps every
tensor on the device, and whole runs train there. Run on a lent H200 with the command in
docs/MUTATION.md ("GPU checks"); they close the `device` mutants a CPU cannot tell apart."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.batch_augment import BatchAugmentation
from cnnlab.data.specs import get_spec, normalize

from .conftest import make_cfg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_pad_crop_and_flip_draw_and_run_on_the_gpu():
    pad, n, h, w = 2, 64, 6, 7
    x = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))
    aug = BatchAugmentation(pad, 0.5, seed=3)
    out = aug(x.cuda(), key=(1, 2, 0))
    assert out.device.type == "cuda" and out.is_contiguous()
    assert torch.equal(out, aug(x.cuda(), key=(1, 2, 0)))  # repeatable on the device
    assert not torch.equal(out, aug(x.cuda(), key=(1, 3, 0)))
    # each image is one crop of its zero-padded self, flipped or not (checked on the CPU)
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    flips = set()
    for i, image in enumerate(out.cpu()):
        found = [
            flip
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            if torch.equal(
                image, (lambda c: c.flip(-1) if flip else c)(padded[i, :, dy : dy + h, dx : dx + w])
            )
        ]
        assert len(found) == 1, i
        flips.add(found[0])
    assert flips == {False, True}


def test_normalisation_runs_on_the_images_device():
    spec = get_spec("cifar10")
    x = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    on_gpu = normalize(x.cuda(), spec.mean, spec.std)
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), normalize(x, spec.mean, spec.std), atol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        ("data.resident=true", "aug=cifar"),  # the whole split and its augmentation on the GPU
        ("trainer.precision=bf16-mixed", "channels_last=true"),
    ],
)
def test_a_whole_run_trains_on_the_gpu(overrides, tiny_cifar, tmp_path):
    from cnnlab.run import train

    cfg = make_cfg(
        tmp_path, tiny_cifar, "data=cifar10", "model=lenet", "data.val_size=100",
        "data.batch_size=50", "trainer.max_epochs=4", "trainer.accelerator=gpu", *overrides,
    )  # fmt: skip
    metrics = train(cfg)
    assert metrics["status"] == "completed"
    assert metrics["test/acc"] > 0.5, metrics  # 10 classes: chance is 0.1
