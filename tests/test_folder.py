"""``data=folder``: a user's folder of class sub-folders of images, end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.build import build
from cnnlab.checkpoint import load_checkpoint
from cnnlab.config import PROJECT_ROOT
from cnnlab.data import FolderDataModule
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DataError
from cnnlab.predict import input_normalization, predict
from cnnlab.record import read_metrics
from cnnlab.run import train

from .conftest import FOLDER_CLASSES as CLASSES
from .conftest import make_cfg, write_folder


def _dm(root, **kw):
    kw.setdefault("data_dir", str(root.parent / "data"))  # the decoded-image cache goes there
    return FolderDataModule(root=str(root), mirrors=[], download=False, **kw)


def test_classes_shapes_and_statistics_of_a_train_test_folder(tmp_path):
    write_folder(tmp_path / "imgs" / "train", per_class=6)
    write_folder(tmp_path / "imgs" / "test", per_class=2, seed=1)
    (tmp_path / "imgs" / "train" / "circle" / "notes.txt").write_text("not an image")
    dm = _dm(tmp_path / "imgs", image_size=16, val_size=3)
    assert dm.classes == CLASSES and dm.num_classes == 3 and dm.input_shape == (3, 16, 16)
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 3, 6)
    x, _ = dm.test_set[torch.arange(6)]
    assert x.dtype == torch.uint8 and x.shape == (6, 3, 16, 16)
    # mean/std: numpy's, over every training image resized the same way (PIL bilinear)
    resized = np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR))
            for kind in CLASSES
            for p in sorted((tmp_path / "imgs" / "train" / kind).glob("*.png"))
        ]
    ).astype(np.float64)
    assert np.allclose(dm.mean, (resized / 255).mean(axis=(0, 1, 2)), atol=1e-9)
    assert np.allclose(dm.std, (resized / 255).std(axis=(0, 1, 2)), atol=1e-9)
    labels = dm.train_set.labels.tolist()
    assert labels == sorted(labels) and labels.count(0) == 6  # class order: folder names


def test_any_mode_and_size_becomes_grayscale_or_rgb_of_the_configured_size(tmp_path):
    root = tmp_path / "imgs"
    for kind in ("a", "b"):
        (root / kind).mkdir(parents=True)
        Image.new("RGBA", (33, 17), (255, 0, 0, 128)).save(root / kind / "rgba.png")
        Image.new("L", (8, 8), 200).save(root / kind / "gray.bmp")
        Image.new("P", (40, 40)).save(root / kind / "palette.gif")
        Image.new("RGB", (64, 48), (1, 2, 3)).save(root / kind / "photo.JPG")
    for channels in (1, 3):
        dm = _dm(root, image_size=20, channels=channels, test_size=2, val_size=1)
        dm.setup()
        assert dm.test_set.images.shape == (2, channels, 20, 20)
        assert len(dm.mean) == len(dm.std) == channels


def test_without_a_test_folder_a_seeded_test_split_is_carved(tmp_path):
    write_folder(tmp_path / "imgs", per_class=10)

    def splits(split_seed):
        dm = _dm(tmp_path / "imgs", test_size=0.2, val_size=0.1, split_seed=split_seed)
        dm.setup()
        return dm

    a, b, c = splits(0), splits(0), splits(1)
    assert (len(a.train_set), len(a.val_set), len(a.test_set)) == (
        22,
        2,
        6,
    )  # 30 images: 6 (0.2) to test, 2 (0.1 of 24) to val
    assert torch.equal(a.test_set.images, b.test_set.images)
    assert not torch.equal(a.test_set.images, c.test_set.images)
    # no image is both in the test split and in the training pool
    pool = {bytes(img.numpy()) for img in a.train_set.images}
    assert not pool & {bytes(img.numpy()) for img in a.test_set.images}


def test_folder_training_run_writes_metrics_and_a_checkpoint_that_predicts(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=12)
    cfg = make_cfg(
        tmp_path,
        tmp_path / "data",
        "data=folder",
        f"data.root={root}",
        "model=lenet",
        "data.batch_size=8",
        "trainer.max_epochs=2",
        "logger=none",
    )
    datamodule, _ = build(cfg)  # the model is built before any image is read
    assert datamodule.input_shape == (3, 32, 32) and datamodule.classes == CLASSES
    metrics = train(cfg)
    written = read_metrics(cfg.paths.output_dir)
    assert metrics["status"] == "completed" and written["test/acc"] == metrics["test/acc"]
    assert written["test/loss"] == metrics["test/loss"] and written["epochs"] == 2
    ckpt_path = next((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    info = load_checkpoint(ckpt_path)["cnnlab"]
    assert info["classes"] == list(CLASSES)
    # the checkpoint carries the normalisation its folder's images were given
    dm = _dm(root, split_seed=0, val_size=0.1, test_size=0.2, data_dir=str(tmp_path / "data"))
    dm.setup()
    assert np.allclose(info["normalization"]["mean"], dm.mean)
    assert np.allclose(info["normalization"]["std"], dm.std)
    pred = predict(ckpt_path, root / "cross" / "0.png")
    assert pred.classes == list(CLASSES) and abs(float(pred.probs.sum()) - 1) < 1e-5


def test_decoded_images_are_cached_until_a_file_changes(tmp_path, monkeypatch, caplog):
    import cnnlab.data.folder as folder_module

    root = write_folder(tmp_path / "imgs", per_class=3)
    first = _dm(root, test_size=3, val_size=1)
    first.setup()
    assert len(list((tmp_path / "data" / "folder-cache").glob("*.pt"))) == 1

    def no_decoding(*args):
        raise AssertionError("decoded although the cache is current")

    (cache,) = (tmp_path / "data" / "folder-cache").glob("*.pt")
    with monkeypatch.context() as m, caplog.at_level("INFO", logger="cnnlab.data.folder"):
        m.setattr(folder_module, "read_image", no_decoding)
        again = _dm(root, test_size=3, val_size=1)
        again.setup()
    assert torch.equal(again.test_set.images, first.test_set.images)
    assert f"Read 9 decoded images from {cache}" in caplog.messages
    # a changed image (new content, new mtime) is decoded afresh, not served stale
    changed = root / "stripes" / "0.png"
    Image.new("RGB", (32, 32), (255, 255, 255)).save(changed)
    os.utime(changed, ns=(1, 1))
    fresh = _dm(root, test_size=3, val_size=1)
    fresh.setup()
    white = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    everything = torch.cat([fresh.train_set.images, fresh.test_set.images])
    assert any(torch.equal(img, white) for img in everything)


def test_checkpoints_without_stored_normalization_use_the_dataset_spec():
    info = {"config": {"data": {"name": "cifar10"}}, "input_shape": [3, 32, 32]}
    assert input_normalization(info) == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


@pytest.mark.parametrize(
    "bad", [{"mean": [0.5], "std": [0.2]}, {"mean": [0, 0, 0], "std": [1, 0, 1]}, {"mean": "x"}]
)
def test_damaged_stored_normalization_is_refused(bad):
    info = {"config": {"data": {"name": "folder"}}, "input_shape": [3, 8, 8], "normalization": bad}
    with pytest.raises(CheckpointError, match="normalization"):
        input_normalization(info)


# ----------------------------------------------------------------------------- errors


def _error(fn) -> str:
    with pytest.raises(CnnlabError) as err:
        fn()
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_root_names_the_path_and_the_layout(tmp_path):
    msg = _error(lambda: _dm(tmp_path / "nowhere"))
    assert f"data.root='{tmp_path / 'nowhere'}' does not exist" in msg
    assert "one sub-folder of images per class" in msg


def test_no_root_given_says_how_to_give_one():
    with pytest.raises(ConfigError, match=r"data=folder needs the images' folder: data.root=PATH"):
        FolderDataModule(root=None)


def test_folder_of_loose_images_asks_for_class_folders(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")  # not counted
    (tmp_path / "imgs" / "only-class").mkdir()
    msg = _error(lambda: _dm(tmp_path / "imgs"))
    assert "holds 1 class sub-folder(s) and 1 loose image(s)" in msg


def test_a_root_that_is_a_file_or_a_test_folder_without_train_is_named(tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    msg = _error(lambda: _dm(photo))
    assert msg.startswith(f"data.root='{photo}' is a file, not a folder. data.root must hold")
    write_folder(tmp_path / "imgs" / "test", per_class=1)
    msg = _error(lambda: _dm(tmp_path / "imgs"))
    assert msg.startswith(f"{tmp_path / 'imgs'} has a test/ folder but no train/ folder beside")
    assert msg.endswith("or train/ and test/ folders laid out that way.")


def test_class_folder_without_images_is_named(tmp_path):
    write_folder(tmp_path / "imgs", per_class=2)
    (tmp_path / "imgs" / "empty").mkdir()
    (tmp_path / "imgs" / "empty" / "readme.txt").write_text("nothing")
    msg = _error(lambda: _dm(tmp_path / "imgs"))
    assert f"class folder {tmp_path / 'imgs' / 'empty'} holds no images" in msg
    assert msg.endswith(
        "(.jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp, .gif). "
        "Add images to it or remove it."
    )


def test_a_train_folder_alone_is_carved_and_a_test_folder_must_match_it(tmp_path):
    root = tmp_path / "imgs"
    write_folder(root / "train", per_class=2)
    layout = _dm(root, test_size=1, val_size=1).layout
    assert layout.root == root and layout.test is None and len(layout.train) == 6
    (root / "test" / "circle").mkdir(parents=True)  # a test/ folder without images
    msg = _error(lambda: _dm(root))
    assert msg == f"{root / 'test'} holds no images. Add some, or remove it to carve a test split."
    write_folder(root / "test", per_class=1)
    (root / "test" / "zebra").mkdir()
    msg = _error(lambda: _dm(root))
    assert msg == (
        f"{root / 'test' / 'zebra'} is a class that {root / 'train'} lacks "
        "(circle, cross, stripes). Give train/ and test/ the same class folders."
    )


def test_unreadable_image_is_named(tmp_path):
    write_folder(tmp_path / "imgs", per_class=4)
    bad = tmp_path / "imgs" / "cross" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    dm = _dm(tmp_path / "imgs", test_size=2, val_size=2)
    with pytest.raises(
        DataError,
        match=rf"{bad} cannot be read as an image \(UnidentifiedImageError: .*\)\. "
        r"Delete or replace it",
    ):
        dm.setup()


def test_train_py_reports_a_missing_folder_in_one_line_and_exits_2(tmp_path):
    missing = tmp_path / "my_photos"
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "train.py"),
            "data=folder",
            f"data.root={missing}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "logger=none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"data.root='{missing}' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_image_cache_is_written_atomically_beside_itself_into_an_existing_folder(
    tmp_path, monkeypatch
):
    import tempfile

    images = torch.arange(24, dtype=torch.uint8).view(2, 3, 2, 2)
    cache = tmp_path / "data" / "folder-cache" / "abc.pt"
    cache.parent.mkdir(parents=True)  # there already: the cache of another folder is in it
    # the temporary file is made beside the cache (one file system, so the rename is atomic),
    # never in the system's temporary folder: here one that does not exist
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-tmp"))
    FolderDataModule._write_cache(cache, images)
    assert torch.equal(torch.load(cache, weights_only=True)["images"], images)
    assert list(cache.parent.iterdir()) == [cache]  # the temporary file was renamed


def test_an_image_cache_that_cannot_be_written_is_a_warning_naming_it_and_why(tmp_path, caplog):
    data_dir = tmp_path / "data"
    data_dir.write_text("a file where the data folder should be")
    cache = data_dir / "folder-cache" / "abc.pt"
    with caplog.at_level("WARNING", logger="cnnlab.data.folder"):
        FolderDataModule._write_cache(cache, torch.zeros(1, 1, 2, 2, dtype=torch.uint8))
    assert caplog.messages == [f"Could not write the image cache {cache} (Not a directory)"]
    assert data_dir.read_text() == "a file where the data folder should be"


def test_channel_stats_are_numpys_float64_mean_and_population_std_over_every_chunk():
    from cnnlab.data.folder import channel_stats

    # more images than one 4096-image chunk, so every chunk must be summed in
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5000, 2, 3, 3), dtype=torch.uint8, generator=g)
    images[4096:, 1] = 255  # the last chunk differs from the rest
    mean, std = channel_stats(images)
    as_float = images.numpy().astype(np.float64) / 255
    assert np.allclose(mean, as_float.mean(axis=(0, 2, 3)), rtol=1e-12, atol=0)
    assert np.allclose(std, as_float.std(axis=(0, 2, 3)), rtol=1e-10, atol=0)
    # a constant channel: std 0, kept at 1e-6 so normalising never divides by zero
    assert channel_stats(torch.full((3, 1, 2, 2), 7, dtype=torch.uint8))[1] == (1e-6,)


def test_data_cache_false_writes_no_image_cache(tmp_path, caplog):
    root = write_folder(tmp_path / "imgs", per_class=2)
    dm = _dm(root, test_size=2, val_size=1, cache=False)
    with caplog.at_level("INFO", logger="cnnlab.data.folder"):
        dm.setup()
    assert len(dm.train_set) == 3 and not (tmp_path / "data").exists()
    assert caplog.messages == [f"Decoding 6 images under {root}"]


def _files_and_cache(dm):
    files = dm.layout.train + (dm.layout.test or ())
    return files, dm._cache_path(files)


class _TouchOnLoad:
    """Unpickling this creates a file: what a malicious pickle could do instead."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_an_image_cache_that_is_more_than_tensors_is_never_unpickled(tmp_path, caplog):
    root = write_folder(tmp_path / "imgs", per_class=2)
    dm = _dm(root, test_size=2, val_size=1)
    files, cache = _files_and_cache(dm)
    cache.parent.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    right = torch.zeros((len(files), 3, 32, 32), dtype=torch.uint8)
    torch.save({"images": right, "payload": _TouchOnLoad(marker)}, cache)
    with caplog.at_level("WARNING", logger="cnnlab.data.folder"):
        dm.setup()
    assert not marker.exists()  # loaded weights-only: the payload never ran
    assert any(
        m.startswith(f"Ignoring the unreadable image cache {cache}") for m in caplog.messages
    )
    assert dm.train_set.images.float().mean() > 0  # decoded again, not the cache's zeros


@pytest.mark.parametrize(
    "stored",
    [
        torch.full((6, 3, 16, 16), 7, dtype=torch.uint8),  # another image size
        torch.full((6, 3, 32, 32), 7, dtype=torch.int16),  # not uint8
        torch.full((5, 3, 32, 32), 7, dtype=torch.uint8),  # another number of images
    ],
)
def test_an_image_cache_of_the_wrong_shape_or_type_is_decoded_afresh(tmp_path, stored):
    root = write_folder(tmp_path / "imgs", per_class=2)
    dm = _dm(root, test_size=2, val_size=1)
    _, cache = _files_and_cache(dm)
    cache.parent.mkdir(parents=True)
    torch.save({"images": stored}, cache)
    dm.setup()
    images = torch.cat([dm.train_set.images, dm.test_set.images])
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 32, 32)
    assert not (images == 7).all()  # the real images, not the stored sevens
    # the stale cache was replaced by the decoded images
    assert torch.load(cache, weights_only=True)["images"].shape == (6, 3, 32, 32)


def test_the_spec_counts_the_training_pool_that_val_size_and_folds_are_checked_against(tmp_path):
    import re

    root = write_folder(tmp_path / "imgs", per_class=4)  # 12 images, no test/ folder
    dm = _dm(root, test_size=3, val_size=8)  # 3 carved off for testing, 9 left
    spec = dm.spec
    assert (spec.name, spec.title, spec.train_size, spec.test_size) == (
        "folder",
        f"images in {root}",
        9,
        3,
    )
    with pytest.raises(
        ConfigError,
        match=r"data\.val_size=9 must be a count in \[1, 9\) .*"
        + re.escape(f"images in {root}'s training split has 9 images"),
    ):
        _dm(root, test_size=3, val_size=9)
    # with train/ and test/ folders the whole of train/ is the pool
    split = tmp_path / "split"
    write_folder(split / "train", per_class=4)
    write_folder(split / "test", per_class=1, seed=1)
    dm = _dm(split, val_size=11)
    assert (dm.spec.train_size, dm.spec.test_size) == (12, 3)
    with pytest.raises(ConfigError, match=r"must be a count in \[1, 12\)"):
        _dm(split, val_size=12)


def test_class_folders_are_walked_into_sub_folders_and_links_skipping_hidden_ones(tmp_path):
    from cnnlab.data.folder import scan_folder

    root, elsewhere = tmp_path / "imgs", tmp_path / "elsewhere"
    for rel in (
        *("a/1.png", "a/sub/2.png", "a/.hidden/3.png", "a/._1.png"),  # ._1.png: macOS metadata
        *("b/x.png", "b/deep/er/y.png", ".git/z.png"),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")  # listing opens no image
    (elsewhere / "4.png").parent.mkdir()
    (elsewhere / "4.png").write_bytes(b"")
    (root / "a" / "linked").symlink_to(elsewhere, target_is_directory=True)
    layout = scan_folder(root)
    assert layout.classes == ("a", "b")
    assert [(str(p.relative_to(root)), label) for p, label in layout.train] == [
        ("a/1.png", 0),
        ("a/linked/4.png", 0),
        ("a/sub/2.png", 0),
        ("b/x.png", 1),
        ("b/deep/er/y.png", 1),
    ]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"root": ""}, r"^data=folder needs the images' folder: data\.root=PATH \(data\.root must"),
        ({"root": " ??? "}, r"^data=folder needs the images' folder"),
        ({"image_size": 0}, r"^data\.image_size=0 must be a positive integer \(e\.g\. 32\)\.$"),
        ({"image_size": True}, r"^data\.image_size=True must be a positive integer"),
        ({"image_size": 8.0}, r"^data\.image_size=8\.0 must be a positive integer"),
        ({"channels": 2}, r"^data\.channels=2 must be 3 \(RGB\) or 1 \(grayscale\)\.$"),
        ({"channels": True}, r"^data\.channels=True must be 3"),
        ({"test_size": 0}, r"^data\.test_size=0 must be a count in \[1, 6\) or a fraction"),
    ],
)
def test_bad_folder_settings_are_config_errors_naming_the_key(tmp_path, kwargs, match):
    write_folder(tmp_path / "imgs", per_class=2)
    kwargs = {"root": str(tmp_path / "imgs"), **kwargs}
    with pytest.raises(ConfigError, match=match) as err:
        FolderDataModule(mirrors=[], download=False, data_dir=str(tmp_path), val_size=1, **kwargs)
    if "test_size" in kwargs:  # the folder is named as the thing holding the images
        assert f"{tmp_path / 'imgs'} has 6 images and at least one must remain" in str(err.value)


def test_the_smallest_settings_are_accepted_and_a_fifth_is_carved_for_testing_by_default(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=5)  # 15 images: 3 to test
    dm = _dm(root, image_size=1, channels=1, val_size=1)
    assert dm.input_shape == (1, 1, 1) and dm.spec.test_size == 3


# ----------------------------------------------------------------------------- links (issue 33)


def test_a_link_loop_inside_a_class_folder_counts_each_image_once(tmp_path, caplog):
    from cnnlab.data.folder import scan_folder

    root = write_folder(tmp_path / "imgs", per_class=8)  # 24 images
    (root / "circle" / "up").symlink_to(root, target_is_directory=True)  # back up to the root
    (root / "cross" / "here").symlink_to(".", target_is_directory=True)  # to itself
    (root / "stripes" / "sub").mkdir()
    (root / "stripes" / "sub" / "back").symlink_to("..", target_is_directory=True)
    (root / "stripes" / "again.png").symlink_to("0.png")  # a second name of one file
    with caplog.at_level("WARNING", logger="cnnlab.data.folder"):
        layout = scan_folder(root)
    assert len(layout.train) == 24
    assert [label for _, label in layout.train] == [0] * 8 + [1] * 8 + [2] * 8
    assert len({p.resolve() for p, _ in layout.train}) == 24
    assert f"Not walking {root / 'circle' / 'up'} again" in caplog.text
    dm = _dm(root, val_size=2, test_size=4)
    assert dm.spec.train_size + dm.spec.test_size == 24


def test_two_links_to_one_folder_list_it_once(tmp_path):
    from cnnlab.data.folder import scan_folder

    root, shared = tmp_path / "imgs", tmp_path / "shared"
    write_folder(root, per_class=2)
    write_folder(shared, per_class=3)
    (root / "cross" / "x").symlink_to(shared / "cross", target_is_directory=True)
    (root / "cross" / "y").symlink_to(shared / "cross", target_is_directory=True)
    layout = scan_folder(root)
    crosses = [str(p.relative_to(root)) for p, label in layout.train if label == 1]
    assert crosses == ["cross/0.png", "cross/1.png", *(f"cross/x/{i}.png" for i in range(3))]


def test_a_dangling_link_is_named_in_one_line(tmp_path):
    from cnnlab.data.folder import scan_folder

    root = write_folder(tmp_path / "imgs", per_class=2)
    link = root / "circle" / "gone.png"
    link.symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError) as err:
        scan_folder(root)
    assert str(err.value) == (
        f"{link} is a link to {tmp_path / 'nowhere.png'}, which cannot be opened (No such file "
        f"or directory). Remove the link or restore what it points to."
    )


def test_one_file_in_two_classes_is_refused(tmp_path):
    from cnnlab.data.folder import scan_folder

    root = write_folder(tmp_path / "imgs", per_class=2)
    os.link(root / "circle" / "0.png", root / "stripes" / "9.png")  # a hard link: one file
    with pytest.raises(DataError, match=r"stripes/9.png is the same file as .*circle/0.png, in"):
        scan_folder(root)


# ----------------------------------------------------------------------------- cache by content


def test_an_edit_keeping_size_and_mtime_is_decoded_afresh(tmp_path, monkeypatch):
    """An uncompressed BMP edited in place keeps its size; os.utime restores its time."""
    root = write_folder(tmp_path / "imgs", per_class=3)
    bmp = root / "cross" / "plain.bmp"
    Image.new("RGB", (32, 32), (0, 0, 0)).save(bmp)
    first = _dm(root, test_size=3, val_size=1)
    first.setup()
    before = bmp.stat()
    Image.new("RGB", (32, 32), (255, 255, 255)).save(bmp)
    os.utime(bmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (bmp.stat().st_size, bmp.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    fresh = _dm(root, test_size=3, val_size=1)
    fresh.setup()
    white = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    images = [fresh.train_set.images, fresh.test_set.images]  # every image, in some split
    assert any(torch.equal(img, white) for img in torch.cat(images))
    assert len(list((tmp_path / "data" / "folder-cache").glob("*.pt"))) == 2


def test_the_cache_key_is_the_files_content_hashed_in_order(tmp_path):
    import hashlib

    from cnnlab.data.folder import content_digests

    files = []
    for i in range(300):  # several threads' shares
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(bytes([i % 7]) * (i % 5) * 1000)
    expected = [hashlib.sha256(f.read_bytes()).digest() for f in files]
    assert content_digests(files) == expected and expected[0] == expected[35]


# ----------------------------------------------------------------------------- classes by name


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A real LeNet-5 trained on a folder (classes circle, cross, stripes: the folder names)."""
    tmp = tmp_path_factory.mktemp("folder_run")
    root = write_folder(tmp / "imgs", per_class=12)
    cfg = make_cfg(
        tmp,
        tmp / "data",
        "data=folder",
        f"data.root={root}",
        "model=lenet",
        "data.batch_size=8",
        "optimizer.lr=0.003",
        "trainer.max_epochs=4",
        "logger=none",
    )
    metrics = train(cfg)
    return root, tmp / "run" / "checkpoints" / "best.ckpt", metrics


def _reordered(ckpt: Path, order: list[int], out: Path) -> Path:
    """The same net with its classes in another order: the output layer's rows and the class
    names permuted together (what a run given data.classes in that order would have learned)."""
    state = torch.load(ckpt, weights_only=True)
    for key in ("net.output.weight", "net.output.bias"):
        state["state_dict"][key] = state["state_dict"][key][order]
    names = state["cnnlab"]["classes"]
    state["cnnlab"]["classes"] = state["hyper_parameters"]["class_names"] = [
        names[i] for i in order
    ]
    torch.save(state, out)
    return out


def _evaluate_folder(tmp_path, ckpt, root, *extra):
    from cnnlab.run import evaluate

    cfg = make_cfg(
        tmp_path, tmp_path / "data", f"ckpt_path={ckpt}", "data=folder", f"data.root={root}",
        "trainer.accelerator=cpu", *extra, config="eval",
    )  # fmt: skip
    return evaluate(cfg)


def test_a_folder_is_scored_by_class_name_not_by_position(folder_run, tmp_path):
    root, ckpt, trained = folder_run
    assert load_checkpoint(ckpt)["cnnlab"]["classes"] == list(CLASSES)
    assert trained["test/acc"] > 0.6  # it learned: scored by position, it would not
    again = _evaluate_folder(tmp_path, ckpt, root)
    assert again["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    # the same classes in another order (stripes, circle, cross): the same answers, by name
    moved = _reordered(ckpt, [2, 0, 1], tmp_path / "reordered.ckpt")
    result = _evaluate_folder(tmp_path, moved, root)
    assert result["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert list(result["test/acc_per_class"]) == ["stripes", "circle", "cross"]
    per_class = again["test/acc_per_class"]
    assert result["test/acc_per_class"] == {k: per_class[k] for k in ("stripes", "circle", "cross")}


def test_a_folder_of_other_class_names_is_refused_listing_both(folder_run, tmp_path):
    root, ckpt, _ = folder_run
    other = tmp_path / "other"
    for old, new in (("circle", "ring"), ("cross", "cross"), ("stripes", "bars")):
        shutil.copytree(root / old, other / new)
    with pytest.raises(DataError) as err:
        _evaluate_folder(tmp_path, ckpt, other)
    assert str(err.value) == (
        f"{other} has class folders bars, cross, ring but the model's classes (data.classes) are "
        f"circle, cross, stripes (unknown bars, ring; missing circle, stripes). Name the class "
        f"folders as the model's classes; data.classes_subset=true accepts folders for some of "
        f"them only."
    )


def test_a_subset_of_the_classes_is_scored_when_asked_for(folder_run, tmp_path):
    root, ckpt, _ = folder_run
    part = tmp_path / "part"
    for kind in ("cross", "stripes"):
        shutil.copytree(root / kind, part / kind)
    ckpt = _reordered(ckpt, [2, 0, 1], tmp_path / "reordered.ckpt")  # stripes, circle, cross
    with pytest.raises(DataError, match=r"\(missing circle\)"):
        _evaluate_folder(tmp_path, ckpt, part, "data.test_size=8")
    result = _evaluate_folder(tmp_path, ckpt, part, "data.test_size=8", "data.classes_subset=true")
    cm = torch.tensor(result["test/confusion_matrix"])
    assert cm.sum() == 8 and cm[1].sum() == 0  # no circle among the test images
    # labels by name: each row is the true class of the checkpoint's order
    names = ["stripes", "circle", "cross"]
    dm = _dm(part, classes=names, classes_subset=True, test_size=8, val_size=0.1)
    dm.setup()
    assert cm.sum(dim=1).tolist() == torch.bincount(dm.test_set.labels, minlength=3).tolist()
    assert result["test/acc"] == pytest.approx(float(cm.diag().sum() / cm.sum()), abs=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"classes": "cat"}, r"^data\.classes='cat' must be a list of distinct class names"),
        ({"classes": ["a", "a"]}, r"^data\.classes=\['a', 'a'\] must be a list of distinct"),
        ({"classes": []}, r"^data\.classes=\[\] must be a list"),
        ({"classes_subset": "yes"}, r"^data\.classes_subset='yes' must be true or false\.$"),
    ],
)
def test_bad_class_lists_are_config_errors(tmp_path, kwargs, match):
    write_folder(tmp_path / "imgs", per_class=2)
    with pytest.raises(ConfigError, match=match):
        _dm(tmp_path / "imgs", val_size=1, **kwargs)


def test_a_root_whose_name_is_not_utf8_is_refused_in_one_line(tmp_path):
    """A name of other bytes (Latin-1's 0xff) reaches Python as a lone surrogate; written into
    the model summary it would end the run in a UnicodeEncodeError after the data was read."""
    name = os.fsencode(tmp_path) + b"/photos-\xff"
    root = Path(os.fsdecode(name))
    write_folder(root, per_class=2)
    with pytest.raises(ConfigError) as err:
        _dm(root, val_size=1)
    assert str(err.value).startswith(f"data.root={name!r} is not UTF-8 text, and cnnlab writes")
