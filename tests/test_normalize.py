"""``data.normalize=dataset|half|none``: what the net is fed, and that the checkpoint makes
eval, predict and export feed the same (issue 14, section 2).

Expected inputs are written out here from the raw uint8 pixels, (x / 255 - 0.5) / 0.5 and
x / 255, never through cnnlab's own normalisation code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.build import build
from cnnlab.checkpoint import build_datamodule, load_checkpoint
from cnnlab.data import ImageDataModule
from cnnlab.data.folder import FolderDataModule
from cnnlab.errors import ConfigError
from cnnlab.predict import predict

from .conftest import tiny_run, write_folder


def test_a_half_run_feeds_inputs_in_minus_one_to_one_and_its_checkpoint_repeats_it(tmp_path):
    cfg, metrics = tiny_run(tmp_path, "data.normalize=half", "trainer.max_epochs=1", "logger=none")
    assert metrics["status"] == "completed"
    # what training fed the net: a batch through the DataModule's own batch hook
    datamodule, _ = build(cfg)
    datamodule.setup("fit")
    x, _ = next(iter(datamodule.train_dataloader()))
    fed, _ = datamodule.on_after_batch_transfer((x, None), 0)
    raw = x.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(fed.numpy(), (raw - 0.5) / 0.5, atol=1e-6)
    assert fed.min() >= -1 and fed.max() <= 1
    # the batch's statistics follow from the pixels' own: mean 2m - 1, std 2s
    assert float(fed.mean()) == pytest.approx(2 * raw.mean() - 1, abs=1e-5)
    assert float(fed.std(unbiased=False)) == pytest.approx(2 * raw.std(), abs=1e-5)

    ckpt_path = tmp_path / "run" / "checkpoints" / "best.ckpt"
    info = load_checkpoint(ckpt_path)["cnnlab"]
    assert info["normalization"] == {"mean": [0.5], "std": [0.5]}
    # eval rebuilds the DataModule from the stored config: the same constants
    again = build_datamodule(info, str(ckpt_path), str(cfg.paths.data_dir), [])
    assert (again.mean, again.std) == ((0.5,), (0.5,))
    # predict prepares a file as the run prepared its data
    image = tmp_path / "digit.png"
    Image.fromarray(x[0, 0].numpy()).save(image)
    pred = predict(ckpt_path, image)
    seen_raw = pred.prepared.image.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(pred.seen.numpy(), seen_raw * 2 - 1, atol=1e-6)


def test_none_keeps_pixels_in_zero_to_one_and_dataset_is_the_default(tiny_mnist):
    def fed(**kwargs):
        dm = ImageDataModule(
            "mnist", str(tiny_mnist), val_size=100, mirrors=[], download=False, **kwargs
        )
        dm.setup()
        x, _ = dm.test_set[torch.arange(8)]
        return x.numpy().astype(np.float64) / 255, dm.normalize(x).numpy()

    raw, plain = fed(normalize="none")
    np.testing.assert_allclose(plain, raw, atol=1e-6)
    raw, default = fed()
    np.testing.assert_allclose(default, (raw - 0.1307) / 0.3081, atol=1e-5)


def test_a_folder_keeps_fixed_constants_instead_of_its_own_statistics(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=4)

    def stats(mode):
        dm = FolderDataModule(
            root=str(root), data_dir=str(tmp_path / "data"), val_size=1, test_size=2,
            normalize=mode, cache=False,
        )  # fmt: skip
        dm.setup()
        return dm.mean, dm.std

    assert stats("half") == ((0.5,) * 3, (0.5,) * 3)
    assert stats("none") == ((0.0,) * 3, (1.0,) * 3)
    own_mean, own_std = stats("dataset")  # the images' own: neither of the constants
    assert len(own_mean) == 3 and all(0.05 < s < 0.5 for s in own_std)


def test_an_unknown_mode_is_refused_naming_it_and_the_valid_ones(tiny_mnist):
    with pytest.raises(ConfigError) as e:
        ImageDataModule("mnist", str(tiny_mnist), normalize="0.5", mirrors=[], download=False)
    message = str(e.value)
    assert "data.normalize='0.5'" in message and "\n" not in message
    assert all(mode in message for mode in ("dataset", "half", "none"))
