"""Each on-disk format's checks and reader, on files written in the real formats (IDX, CIFAR
pickles, SVHN's MATLAB files); SVHN end to end; installs racing each other."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from cnnlab.data import ImageDataModule
from cnnlab.data import sources as sources_module
from cnnlab.data.formats import md5sum
from cnnlab.data.sources import ensure_dataset
from cnnlab.data.specs import SPECS, get_spec
from cnnlab.errors import DataError
from cnnlab.record import read_metrics
from cnnlab.run import train as run_train
from tests.support.formats import md5_overrides, write_idx
from tests.support.synthetic import write_mnist_like, write_synthetic

from .conftest import make_cfg, patch_md5

# ----------------------------------------------------------------------------- every built-in


@pytest.mark.parametrize("name", list(SPECS))
def test_synthetic_copy_of_every_dataset_passes_its_checks_and_reads_back(
    name, data_dir, monkeypatch
):
    spec = get_spec(name)
    patch_md5(monkeypatch, name, write_synthetic(name, data_dir, n_train=30, n_test=20))
    folder = ensure_dataset(name, data_dir, mirrors=[], download=False)
    assert folder == spec.target_dir(data_dir)
    for train, n in ((True, 30), (False, 20)):
        x, y = spec.read(data_dir, train=train)
        assert x.dtype == torch.uint8 and tuple(x.shape) == (n, *spec.shape)
        assert y.dtype == torch.long and int(y.min()) >= 0 and int(y.max()) < len(spec.classes)


# ----------------------------------------------------------------------------- IDX


def test_idx_images_of_other_dims_with_the_same_byte_count_are_refused(tiny_mnist):
    path = tiny_mnist / "MNIST" / "raw" / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((600, 14, 56), np.uint8))  # 14 * 56 == 28 * 28
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte holds 600x14x56 items"):
        ensure_dataset("mnist", tiny_mnist, mirrors=[], download=False)


def test_idx_file_longer_than_its_header_is_refused(tiny_mnist):
    path = tiny_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0" * 7)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is corrupt: .* 7 more than"):
        ensure_dataset("mnist", tiny_mnist, mirrors=[], download=False)


def test_idx_label_outside_the_classes_names_the_file(tiny_mnist):
    path = tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels = np.zeros(600, np.uint8)
    labels[17] = 10  # MNIST has classes 0..9
    write_idx(path, labels)
    dm = ImageDataModule("mnist", str(tiny_mnist), val_size=100, mirrors=[], download=False)
    dm.prepare_data()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte holds label 10, outside"):
        dm.setup()


def test_cifar_label_outside_the_classes_names_the_batch(data_dir, monkeypatch):
    import pickle

    write_synthetic("cifar10", data_dir, n_train=50, n_test=20)
    batch = data_dir / "cifar-10-batches-py" / "data_batch_2"
    entry = pickle.loads(batch.read_bytes())
    entry["labels"][3] = 12
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2 holds label 12"):
        get_spec("cifar10").read(data_dir, train=True)


def test_md5_is_checked_once_and_again_when_a_file_changes(tiny_cifar, monkeypatch):
    from cnnlab.data import formats

    hashed = []
    real = formats.md5sum
    monkeypatch.setattr(formats, "md5sum", lambda path: hashed.append(path.name) or real(path))
    folder = tiny_cifar / "cifar-10-batches-py"
    ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)
    assert len(hashed) == 7  # five training batches, the test batch, batches.meta
    hashed.clear()
    ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)
    assert hashed == []  # unchanged files: the cache by size and mtime answers

    # the same size, other bytes, a new mtime: hashed again and refused
    batch = folder / "data_batch_3"
    data = bytearray(batch.read_bytes())
    data[-20] ^= 0xFF
    batch.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"data_batch_3 failed its integrity check"):
        ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)
    assert hashed == ["data_batch_3"]


def test_a_broken_verification_record_is_not_trusted(tiny_cifar):
    from cnnlab.data.formats import _record_path

    folder = tiny_cifar / "cifar-10-batches-py"
    ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)
    batch = folder / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-10])  # truncated: another size than the record's
    with pytest.raises(DataError, match=r"test_batch failed its integrity check"):
        ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)
    _record_path(folder).write_text("[not, a, dict")
    with pytest.raises(DataError, match=r"test_batch failed its integrity check"):
        ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)


class _Opens:
    """Unpickling this opens (creates) ``marker``: what a crafted batch could do with os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_batch(path: Path, marker: Path) -> None:
    """A batch laid out as the real ones, whose images would run code when unpickled."""
    entry = pickle.loads(path.read_bytes())
    entry["data"] = _Opens(marker)
    path.write_bytes(pickle.dumps(entry, protocol=2))


def test_a_data_folder_cannot_forge_its_way_past_the_md5_check(data_dir, tmp_path):
    """A folder carrying the old in-folder record (size, mtime, the official md5) of a crafted
    batch: the record is not read, the batch is hashed and refused, and nothing runs."""
    spec, marker = get_spec("cifar10"), tmp_path / "marker"
    write_synthetic("cifar10", data_dir, n_train=50, n_test=20)
    folder = spec.target_dir(data_dir)
    _crafted_batch(folder / "data_batch_1", marker)
    official = spec.format.known_md5()  # what the official files hash to (not patched here)
    forged = {}
    for name in spec.files:
        st = (folder / name).stat()
        forged[name] = [st.st_size, st.st_mtime_ns, official[name]]
    (folder / ".cnnlab-verified.json").write_text(json.dumps(forged))
    dm = ImageDataModule("cifar10", str(data_dir), val_size=10, mirrors=[], download=False)
    with pytest.raises(DataError, match=r"data_batch_1 failed its integrity check") as err:
        dm.prepare_data()
        dm.setup()
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_no_cifar_batch_is_unpickled_with_the_full_unpickler(data_dir, tmp_path, monkeypatch):
    """Even a crafted batch whose md5 is trusted is read without building what it names."""
    spec, marker = get_spec("cifar10"), tmp_path / "marker"
    write_synthetic("cifar10", data_dir, n_train=50, n_test=20)
    folder = spec.target_dir(data_dir)
    _crafted_batch(folder / "data_batch_2", marker)
    patch_md5(monkeypatch, "cifar10", {n: md5sum(folder / n) for n in spec.files})
    dm = ImageDataModule("cifar10", str(data_dir), val_size=10, mirrors=[], download=False)
    dm.prepare_data()  # its sum is the expected one
    with pytest.raises(DataError) as err:
        dm.setup()
    assert str(err.value) == (
        f"{folder / 'data_batch_2'} is refused: it names io.open, which a CIFAR batch never "
        f"does (only dicts, lists, strings, ints and a uint8 array), and unpickling it could "
        f"run code. Delete it and fetch the official file again."
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload,refused",
    [
        (b"cos\nsystem\n(S'true'\ntR.", "os.system"),
        (
            b"c_codecs\nencode\n(X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13tR.",
            "_codecs.encode to 'rot13'",
        ),
        (b"cnumpy\nload\n(S'x.npy'\ntR.", "numpy.load"),
    ],
)
def test_the_cifar_unpickler_allows_numpys_array_and_nothing_else(tmp_path, payload, refused):
    from cnnlab.data.formats import cifar_batch

    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02" + payload)
    with pytest.raises(DataError, match=rf"is refused: it names {re.escape(refused)}, which"):
        cifar_batch(path, (3, 32, 32))


@pytest.mark.parametrize(
    "entry",
    [
        [1, 2],
        {"labels": [0]},
        {"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]},
        {"data": np.zeros((2, 3072), np.uint8), "labels": [0]},
        {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]},
        {"data": np.zeros((2, 3072), np.uint8), "labels": ["a", "b"]},
    ],
)
def test_a_pickle_that_is_not_a_cifar_batch_is_named(tmp_path, entry):
    from cnnlab.data.formats import cifar_batch

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR batch: it lacks 'data'"):
        cifar_batch(path, (3, 32, 32))
    path.write_bytes(pickle.dumps(entry, protocol=2)[:-30])
    with pytest.raises(DataError, match=r"data_batch_1 is (not a|refused)"):
        cifar_batch(path, (3, 32, 32))


def test_a_checked_file_edited_to_the_same_size_and_mtime_is_hashed_again(tiny_cifar):
    """The record of checked sums cannot be fooled by an edit that restores size and mtime
    (os.utime): it is keyed by the file's change time too, which no program sets back."""
    folder = tiny_cifar / "cifar-10-batches-py"
    ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)
    batch = folder / "data_batch_4"
    before = batch.stat()
    data = bytearray(batch.read_bytes())
    data[-30] ^= 0xFF  # one image byte: same size, still a valid pickle
    batch.write_bytes(bytes(data))
    os.utime(batch, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (batch.stat().st_size, batch.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(DataError, match=r"data_batch_4 failed its integrity check"):
        ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)


def test_the_record_of_checked_sums_lives_in_cnnlabs_cache_not_the_data_folder(
    tiny_cifar, tmp_path, monkeypatch
):
    from cnnlab.data import formats

    folder = tiny_cifar / "cifar-10-batches-py"
    before = sorted(p.name for p in folder.iterdir())
    monkeypatch.setenv(formats.CACHE_DIR_ENV, str(tmp_path / "cache"))
    ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)
    assert sorted(p.name for p in folder.iterdir()) == before
    (record,) = (tmp_path / "cache" / "verified").glob("*.json")
    files = json.loads(record.read_text())["files"]
    st = (folder / "test_batch").stat()
    assert files["test_batch"] == [
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        md5sum(folder / "test_batch"),
    ]
    monkeypatch.delenv(formats.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert formats.cache_dir() == tmp_path / "xdg" / "cnnlab"


# ----------------------------------------------------------------------------- SVHN


def _write_svhn_mat(path, n, seed):
    """SVHN's layout, written here independently of cnnlab: X (32, 32, 3, N), y (N, 1) in 1..10."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
    y[0, 0], y[1, 0] = 10, 3
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_svhn_mat_files_read_as_nchw_with_label_10_as_digit_0(data_dir, monkeypatch):
    # dropped straight into data_dir, as downloaded: installed into data_dir/svhn
    x_train, y_train = _write_svhn_mat(data_dir / "train_32x32.mat", 40, 0)
    x_test, y_test = _write_svhn_mat(data_dir / "test_32x32.mat", 15, 1)
    patch_md5(
        monkeypatch,
        "svhn",
        {f: _md5(data_dir / f) for f in ("train_32x32.mat", "test_32x32.mat")},
    )
    folder = ensure_dataset("svhn", data_dir, mirrors=[], download=False)
    assert folder == data_dir / "svhn" and (folder / "train_32x32.mat").is_file()
    spec = get_spec("svhn")
    for train, x, y in ((True, x_train, y_train), (False, x_test, y_test)):
        images, labels = spec.read(data_dir, train=train)
        assert images.dtype == torch.uint8 and images.shape == (len(y), 3, 32, 32)
        # image i, channel c, row h, column w is X[h, w, c, i]
        assert np.array_equal(images.numpy(), x.transpose(3, 2, 0, 1))
        assert labels.tolist() == [0 if v == 10 else int(v) for v in y[:, 0]]
    assert spec.read(data_dir, train=True)[1][:2].tolist() == [0, 3]


def test_svhn_corrupt_file_fails_its_md5_check(tiny_svhn):
    path = tiny_svhn / "svhn" / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"test_32x32.mat failed its integrity check"):
        ensure_dataset("svhn", tiny_svhn, mirrors=[], download=False)


def test_svhn_label_outside_1_to_10_names_the_file(data_dir, monkeypatch):
    x, y = _write_svhn_mat(data_dir / "svhn" / "train_32x32.mat", 20, 0)
    y[5, 0] = 11
    scipy.io.savemat(data_dir / "svhn" / "train_32x32.mat", {"X": x, "y": y})
    with pytest.raises(DataError, match=r"train_32x32.mat holds label 11"):
        get_spec("svhn").read(data_dir, train=True)


def _matlab_object(x):
    from scipy.io.matlab import MatlabObject

    fields = np.zeros((1, 1), dtype=[("X", "O")])
    fields[0, 0]["X"] = x
    return MatlabObject(fields, "payload")  # a MATLAB class instance (mxOBJECT_CLASS)


@pytest.mark.parametrize(
    "make,found",
    [
        (_matlab_object, r"its X is a MatlabObject"),
        (lambda x: {"images": x}, r"its X is a ndarray of \[\('images', 'O'\)\]"),  # a struct
        (lambda x: np.array([x, x[:1]], dtype=object), r"its X is a ndarray of object"),  # a cell
    ],
)
def test_svhn_files_holding_matlab_objects_structs_or_cells_are_refused(data_dir, make, found):
    x, y = _write_svhn_mat(data_dir / "svhn" / "test_32x32.mat", 4, 0)
    scipy.io.savemat(data_dir / "svhn" / "test_32x32.mat", {"X": make(x), "y": y})
    with pytest.raises(
        DataError, match=rf"test_32x32.mat is not a readable SVHN .mat file \({found}"
    ):
        get_spec("svhn").read(data_dir, train=False)


def test_a_matlab_7_3_file_is_named_not_a_stack_trace(data_dir):
    path = data_dir / "svhn" / "train_32x32.mat"
    path.parent.mkdir(parents=True)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116)
    path.write_bytes(header + b"\0" * 8 + b"\x00\x02IM" + b"\0" * 400)
    with pytest.raises(
        DataError, match=r"train_32x32.mat is not a readable SVHN .mat file \(Please"
    ):
        get_spec("svhn").read(data_dir, train=True)


def test_svhn_missing_names_the_files_and_where_to_put_them(data_dir):
    with pytest.raises(DataError) as err:
        ensure_dataset("svhn", data_dir, mirrors=[], download=False)
    msg = str(err.value)
    assert msg.startswith("SVHN not found. Tried:")
    assert "train_32x32.mat and test_32x32.mat (from http://ufldl.stanford.edu" in msg
    assert str(data_dir / "svhn") in msg


def test_training_on_svhn_completes(tmp_path, tiny_svhn):
    cfg = make_cfg(
        tmp_path,
        tiny_svhn,
        "data=svhn",
        "model=lenet",
        "data.val_size=100",
        "data.batch_size=50",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "logger=none",
    )
    metrics = run_train(cfg)
    assert metrics["status"] == "completed" and metrics["data"] == "svhn"
    written = read_metrics(cfg.paths.output_dir)
    assert written["test/acc"] == metrics["test/acc"] and written["steps"] == 4
    assert written["test/acc"] * 200 == pytest.approx(round(written["test/acc"] * 200), abs=1e-4)


# ----------------------------------------------------------------------------- racing installs


def test_two_processes_installing_the_same_files_at_once_both_succeed(
    tmp_path, data_dir, monkeypatch
):
    """Another process installs the same file while this one is half-way through writing it
    (two sweep runs preparing an empty data_dir): both must end with the verified files."""
    mirror = tmp_path / "mirror"
    write_mnist_like(None, folder=mirror / "mnist", compress=True)
    copy = shutil.copyfileobj
    calls = []

    def interleaved(fin, fout, length=0):
        calls.append(fout.name)
        if len(calls) == 1:  # the other process runs its whole install now
            assert ensure_dataset("mnist", data_dir, mirrors=[str(mirror)], download=False)
        return copy(fin, fout, length)

    monkeypatch.setattr(sources_module.shutil, "copyfileobj", interleaved)
    folder = ensure_dataset("mnist", data_dir, mirrors=[str(mirror)], download=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted(get_spec("mnist").files)
    assert len(calls) > 4  # the two installs did overlap


# ----------------------------------------------------------------------------- download, baseline


@pytest.mark.parametrize("name", list(SPECS))
def test_download_asks_torchvision_for_both_splits_into_the_layout(name, tmp_path):
    calls = []

    class Recorder:
        def __init__(self, **kwargs):
            calls.append(kwargs)

    fmt = get_spec(name).format
    real = fmt.tv_class
    object.__setattr__(fmt, "tv_class", Recorder)  # a frozen dataclass: swapped for this test
    try:
        fmt.download(tmp_path)
    finally:
        object.__setattr__(fmt, "tv_class", real)
    if name == "svhn":
        root = str(tmp_path / "svhn")
        assert calls == [{"root": root, "split": s, "download": True} for s in ("train", "test")]
    else:
        expected = [{"root": str(tmp_path), "train": t, "download": True} for t in (True, False)]
        assert calls == expected


def test_the_torchvision_baseline_reads_the_same_files(tiny_mnist):
    fmt = get_spec("mnist").format
    ds = fmt.torchvision_dataset(tiny_mnist, train=False, transform=lambda img: img.size)
    assert len(ds) == 200 and ds[0][0] == (28, 28)  # the transform is applied
    x, y = get_spec("mnist").read(tiny_mnist, train=False)
    assert int(ds[5][1]) == int(y[5])


def test_cifar100_style_batches_with_fine_labels_read(data_dir):
    import pickle

    write_synthetic("cifar10", data_dir, n_train=50, n_test=20)
    folder = data_dir / "cifar-10-batches-py"
    entry = pickle.loads((folder / "test_batch").read_bytes())
    entry["fine_labels"] = entry.pop("labels")
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    _, y = get_spec("cifar10").read(data_dir, train=False)
    assert y.tolist() == entry["fine_labels"] and y.dtype == torch.long


def test_how_to_get_names_the_files_and_the_folder(tmp_path):
    cifar = get_spec("cifar10")
    text = cifar.format.how_to_get(tmp_path)
    assert text.startswith(f"put cifar-10-python.tar.gz (from {cifar.format.tv_class.url}) into")
    files = ", ".join(cifar.files)
    assert f"extracted files ({files}) into {tmp_path / 'cifar-10-batches-py'}/" in text


def test_torchvision_reads_the_synthetic_cifar_and_svhn_copies_as_cnnlab_does(
    data_dir, monkeypatch
):
    # the benchmark's baseline: torchvision's own datasets over the same files
    for name in ("cifar10", "svhn"):
        patch_md5(monkeypatch, name, write_synthetic(name, data_dir, n_train=30, n_test=20))
        spec = get_spec(name)
        for train, n in ((True, 30), (False, 20)):
            ds = spec.format.torchvision_dataset(data_dir, train=train)
            x, y = spec.read(data_dir, train=train)
            assert len(ds) == n
            image, label = ds[7]
            assert np.array_equal(np.asarray(image), x[7].permute(1, 2, 0).numpy())
            assert label == int(y[7])
        if name == "cifar10":  # batches.meta names the classes
            assert tuple(ds.classes) == spec.classes


def test_download_urls_and_hints_name_the_official_files():
    from torchvision import datasets as tvd

    mnist, svhn = get_spec("mnist"), get_spec("svhn")
    assert mnist.format.download_url() == tvd.MNIST.mirrors[0] + "train-images-idx3-ubyte.gz"
    assert svhn.format.download_url() == "http://ufldl.stanford.edu/housenumbers/train_32x32.mat"
    assert mnist.format.known_md5() == dict(tvd.MNIST.resources)
    assert svhn.format.how_to_get(Path("d")) == (
        "put train_32x32.mat and test_32x32.mat (from "
        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat and "
        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat) into d/svhn/"
    )
    assert mnist.format.how_to_get(Path("d")) == (
        "put the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into d/MNIST/raw/"
    )


class _Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did: every ``str`` and ``bytes`` as a Python 2 byte string
    (the BINSTRING opcodes), the way the real CIFAR-10 batches hold their keys and their
    images' raw bytes. Python 3's own pickler writes ``str`` as BINUNICODE and ``bytes`` (at
    protocol 2) as a call to ``_codecs.encode``, neither of which depends on how ``pickle.load``
    decodes byte strings."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def _python2_pickle(obj) -> bytes:
    out = io.BytesIO()
    _Python2Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def test_cifar_batches_pickled_by_python_2_read_as_the_real_ones_do(data_dir, monkeypatch):
    """The real CIFAR-10 batches are Python 2 pickles (``\\x80\\x02}q\\x01(U\\x04data...``): their
    image bytes come back only with ``encoding="latin1"`` (the default, ASCII, fails on bytes
    over 127; ``"bytes"`` turns the keys into bytes)."""
    patch_md5(monkeypatch, "cifar10", write_synthetic("cifar10", data_dir, n_train=40, n_test=20))
    spec = get_spec("cifar10")
    expected = {train: spec.read(data_dir, train=train) for train in (True, False)}
    folder = spec.target_dir(data_dir)
    for name in spec.files:
        entry = pickle.loads((folder / name).read_bytes())
        raw = _python2_pickle(entry)
        # the real batches were written by numpy 1, whose array module numpy 2 moved
        (folder / name).write_bytes(
            raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        )
    raw = (folder / "test_batch").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    assert raw.startswith(b"\x80\x02}q\x00(U\x0bbatch_label")  # Python 2's layout
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(raw)
    assert b"data" in pickle.loads(raw, encoding="bytes")
    for train in (True, False):
        x, y = spec.read(data_dir, train=train)
        assert torch.equal(x, expected[train][0]) and torch.equal(y, expected[train][1])
        assert x.dtype == torch.uint8 and int(x.max()) > 127
    # torchvision's reader (the benchmark's baseline) reads them too
    patch_md5(monkeypatch, "cifar10", {n: md5sum(folder / n) for n in spec.files})
    ds = spec.format.torchvision_dataset(data_dir, train=False)
    assert np.array_equal(np.asarray(ds[3][0]), expected[False][0][3].permute(1, 2, 0).numpy())
    assert tuple(ds.classes) == spec.classes


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_the_torchvision_baseline_applies_its_transform(name, data_dir, monkeypatch):
    patch_md5(monkeypatch, name, write_synthetic(name, data_dir, n_train=20, n_test=10))
    spec = get_spec(name)
    for train, n in ((True, 20), (False, 10)):
        ds = spec.format.torchvision_dataset(data_dir, train=train, transform=np.asarray)
        x, _ = spec.read(data_dir, train=train)
        image, _ = ds[4]
        assert isinstance(image, np.ndarray) and len(ds) == n
        assert np.array_equal(image, x[4].permute(1, 2, 0).numpy())


# ----------------------------------------------------------------------------- image files
# image_to_uint8 prepares every image of data=folder and of predict.py: what it does to a
# pixel is what a trained net saw, so each rule is checked on hand-made pixels.


def _to_uint8(img, channels=3, size=None):
    from cnnlab.data.images import image_to_uint8

    out = image_to_uint8(img, channels, size or (img.height, img.width))
    assert out.dtype == torch.uint8 and out.shape[0] == channels
    return out


def test_an_alpha_channel_is_composited_onto_black():
    from PIL import Image

    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 128], [255, 255, 255, 0]]], np.uint8)
    out = _to_uint8(Image.fromarray(rgba, "RGBA"))
    expected = np.round(rgba[..., :3] * (rgba[..., 3:] / 255)).transpose(2, 0, 1)
    assert np.abs(out.numpy().astype(int) - expected).max() <= 1
    assert out[:, 0, 2].tolist() == [0, 0, 0]  # fully transparent white is black, exactly
    la = Image.fromarray(np.array([[[200, 255], [200, 0]]], np.uint8), "LA")
    assert _to_uint8(la, channels=1).flatten().tolist() == [200, 0]


def test_a_transparent_palette_entry_or_colour_key_is_black_too():
    from PIL import Image

    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 255, 255, 10, 20, 30] + [0] * 762)
    pal.putpixel((1, 0), 1)
    assert _to_uint8(pal).reshape(3, 2).T.tolist() == [[255, 255, 255], [10, 20, 30]]
    pal.info["transparency"] = 0  # a GIF's or PNG's transparent palette entry
    assert _to_uint8(pal).reshape(3, 2).T.tolist() == [[0, 0, 0], [10, 20, 30]]
    pa = pal.convert("PA")
    assert _to_uint8(pa).reshape(3, 2).T.tolist() == [[0, 0, 0], [10, 20, 30]]
    grey = Image.fromarray(np.array([[90, 200]], np.uint8))
    grey.info["transparency"] = 200  # a PNG's tRNS colour key
    assert _to_uint8(grey, channels=1).flatten().tolist() == [90, 0]


@pytest.mark.parametrize("dtype", [">u2", "<u2", "<i4", "<f4"])  # I;16B, I;16, I, F
def test_16_bit_and_float_images_are_stretched_to_8_bits(dtype):
    from PIL import Image

    values = np.array([[1000, 60000], [3000, 40000]], dtype=dtype)
    img = Image.fromarray(values)
    assert img.mode in ("I;16B", "I;16", "I", "F")
    v = values.astype(np.float64)
    expected = np.floor(255 * (v - v.min()) / (v.max() - v.min()))  # min -> 0, max -> 255
    assert _to_uint8(img, channels=1)[0].numpy().tolist() == expected.tolist()
    flat = Image.fromarray(np.full((2, 2), 7, dtype=dtype))  # no range: black, not 0 / 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN cast to uint8 is undefined (and warns)
        assert _to_uint8(flat, channels=1).flatten().tolist() == [0, 0, 0, 0]


def test_a_float_image_with_a_range_below_one_is_stretched_to_8_bits_too():
    from PIL import Image

    values = np.array([[0.1, 0.35, 0.6]], dtype="<f4")  # a range of 0.5
    v = values.astype(np.float64)
    expected = np.floor(255 * (v - v.min()) / (v.max() - v.min()))
    out = _to_uint8(Image.fromarray(values), channels=1)[0].numpy()
    assert out.tolist() == expected.tolist() == [[0, 127, 255]]


def test_colour_becomes_luminance_and_grey_becomes_three_equal_channels():
    from PIL import Image

    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 150, 200]]], np.uint8)
    grey = _to_uint8(Image.fromarray(rgb), channels=1).flatten().numpy()
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]  # ITU-R 601-2, as PIL's "L"
    assert np.abs(grey - luma).max() <= 0.5 + 1e-9
    out = _to_uint8(Image.fromarray(rgb[..., 0]), channels=3)
    assert out.tolist() == [rgb[..., 0].tolist()] * 3


def test_images_are_resized_to_height_by_width_with_the_antialiased_bilinear_recipe():
    from PIL import Image

    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (120, 90), dtype=np.uint8))
    out = _to_uint8(big, channels=1, size=(10, 6))  # (H, W) from a 90-wide, 120-high image
    assert out.shape == (1, 10, 6)
    # the recipe is part of what every folder-trained net saw: a change to the filter or the
    # reducing gap changes the pixels (each was checked to), so it must be deliberate
    recipe = big.resize((6, 10), Image.Resampling.BILINEAR, reducing_gap=3.0)
    assert out[0].numpy().tolist() == np.asarray(recipe).tolist()
    for other in (
        big.resize((6, 10)),
        big.resize((6, 10), Image.Resampling.BILINEAR),
        big.resize((6, 10), Image.Resampling.BILINEAR, reducing_gap=4.0),
    ):
        assert np.asarray(other).tolist() != np.asarray(recipe).tolist()
    # an image already at its size is left alone; one at the transposed size is not
    same = _to_uint8(big, channels=1, size=(120, 90))
    assert same[0].numpy().tolist() == np.asarray(big).tolist()
    assert _to_uint8(big, channels=1, size=(90, 120)).shape == (1, 90, 120)


# ----------------------------------------------------------------------------- synthetic copies
# The tests and the benchmark train on synthetic files written in each real format; each
# writer is checked against what the real files hold (torchvision's documentation of them).


def test_synthetic_cifar_batches_are_written_as_the_real_ones_are(tmp_path):
    folder = tmp_path / "deep" / "er" / "cifar-10-batches-py"  # parents are created
    write_synthetic("cifar10", None, n_train=50, n_test=20, folder=folder)
    raw = (folder / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02"  # a protocol-2 pickle, as the official files (Python 2's)
    batch = pickle.loads(raw)
    assert sorted(batch) == ["batch_label", "data", "filenames", "labels"]
    assert batch["batch_label"] == "data_batch_1" and batch["data"].dtype == np.uint8
    assert batch["data"].shape == (10, 3072) and len(batch["filenames"]) == 10
    assert all(isinstance(v, int) for v in batch["labels"])
    meta_raw = (folder / "batches.meta").read_bytes()
    assert meta_raw[:2] == b"\x80\x02"
    meta = pickle.loads(meta_raw)
    assert meta == {
        "label_names": list(get_spec("cifar10").classes),
        "num_cases_per_batch": 10000,
        "num_vis": 3072,
    }


def test_synthetic_svhn_files_store_digit_0_as_label_10_in_a_column(tmp_path):
    folder = tmp_path / "deep" / "svhn"
    sums = write_synthetic("svhn", None, n_train=40, n_test=20, folder=folder)
    assert sorted(sums) == ["test_32x32.mat", "train_32x32.mat"]
    mat = scipy.io.loadmat(folder / "train_32x32.mat")
    assert mat["X"].shape == (32, 32, 3, 40) and mat["X"].dtype == np.uint8
    assert mat["y"].shape == (40, 1) and mat["y"].dtype == np.uint8
    assert set(mat["y"].flatten().tolist()) <= set(range(1, 11))  # 1..10: no label 0
    x, y = get_spec("svhn").format.read(folder, get_spec("svhn"), train=True)
    assert y.tolist() == [0 if v == 10 else v for v in mat["y"].flatten().tolist()]
    assert 0 in y.tolist() and 1 in y.tolist()


@pytest.mark.parametrize(
    ("mat", "says"),
    [
        ({"X": np.zeros((32, 32, 3, 4), np.float32), "y": np.ones((4, 1))}, "float32"),
        ({"X": np.zeros((28, 28, 3, 4), np.uint8), "y": np.ones((4, 1))}, "(3, 28, 28)"),
        ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.ones((3, 1))}, "and 3 labels"),
    ],
)
def test_an_svhn_file_of_the_wrong_type_shape_or_count_is_named(tmp_path, mat, says):
    spec = get_spec("svhn")
    folder = tmp_path / "svhn"
    folder.mkdir()
    scipy.io.savemat(folder / "train_32x32.mat", mat)
    with pytest.raises(DataError) as err:
        spec.format.read(folder, spec, train=True)
    message = str(err.value)
    assert message.startswith(f"{folder / 'train_32x32.mat'} holds 4 images of ")
    assert says in message and message.endswith(
        "not SVHN's (3, 32, 32) uint8 images. Fetch it again."
    )


@pytest.mark.parametrize("damage", ["empty", "cut header", "cut data", "garbled", "random"])
def test_a_damaged_svhn_file_is_named_whatever_scipy_trips_over(tmp_path, damage):
    spec = get_spec("svhn")
    write_synthetic("svhn", None, n_train=40, n_test=20, folder=tmp_path / "svhn")
    path = tmp_path / "svhn" / "train_32x32.mat"
    raw, noise = path.read_bytes(), np.random.default_rng(0).integers(0, 256, 5000, np.uint8)
    path.write_bytes(
        {
            "empty": b"",
            "cut header": raw[:40],
            "cut data": raw[: len(raw) // 2],
            "garbled": raw[:128] + noise.tobytes(),
            "random": noise.tobytes(),
        }[damage]
    )
    with pytest.raises(DataError, match=r"train_32x32.mat is not a readable SVHN \.mat file \("):
        spec.format.read(tmp_path / "svhn", spec, train=True)


def test_svhn_md5_overrides_keep_torchvisions_sum_for_a_file_not_given():
    from torchvision.datasets import SVHN

    fmt = get_spec("svhn").format
    ((target, attribute, lists),) = md5_overrides(fmt, {"train_32x32.mat": "0" * 32})
    assert (target, attribute) == (SVHN, "split_list")
    assert lists["train"][2] == "0" * 32
    assert lists["test"] == list(SVHN.split_list["test"])  # url, name, torchvision's md5


def test_torchvisions_baseline_dataset_never_downloads(tmp_path, monkeypatch):
    import urllib.request

    opened = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: opened.append(a))
    for name in ("mnist", "cifar10"):
        with pytest.raises(RuntimeError, match="not found"):
            get_spec(name).format.torchvision_dataset(tmp_path, train=True)
    assert opened == []


def test_a_verification_record_that_is_not_a_mapping_is_ignored(tiny_cifar):
    from cnnlab.data.formats import _record_path

    folder = tiny_cifar / "cifar-10-batches-py"
    _record_path(folder).parent.mkdir(parents=True, exist_ok=True)
    _record_path(folder).write_text("[1, 2, 3]")  # valid JSON, not what was written
    ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)  # checked again
    assert isinstance(json.loads(_record_path(folder).read_text()), dict)


def test_a_verification_record_that_cannot_be_written_is_skipped(tiny_cifar, monkeypatch):
    from cnnlab.data.formats import _record_path

    folder = tiny_cifar / "cifar-10-batches-py"
    _record_path(folder).unlink(missing_ok=True)

    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_text", read_only)
    ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)  # no error
    assert not _record_path(folder).exists()


def test_synthetic_write_idx_gzips_only_when_asked_and_returns_the_file_written(tmp_path):
    import gzip

    from tests.support import synthetic

    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    plain = synthetic.write_idx(tmp_path / "a-idx3-ubyte", array)
    assert plain == tmp_path / "a-idx3-ubyte" and plain.is_file()
    header = struct.pack(">BBBB3I", 0, 0, 0x08, 3, 2, 3, 4)  # uint8, 3 dims, big-endian sizes
    assert plain.read_bytes() == header + array.tobytes()
    gz = synthetic.write_idx(tmp_path / "b-idx3-ubyte", array, compress=True)
    assert gz == tmp_path / "b-idx3-ubyte.gz" and not (tmp_path / "b-idx3-ubyte").exists()
    assert gzip.decompress(gz.read_bytes()) == header + array.tobytes()


def test_write_cifar_like_is_write_synthetic_of_cifar10_with_its_defaults(tmp_path):
    from tests.support.synthetic import write_cifar_like

    sums = write_cifar_like(tmp_path / "a")
    assert sums == write_synthetic("cifar10", tmp_path / "b", n_train=500, n_test=200, seed=0)
    x, _ = get_spec("cifar10").read(tmp_path / "a", train=True)
    assert len(x) == 500 and len(get_spec("cifar10").read(tmp_path / "a", train=False)[0]) == 200
    assert write_cifar_like(tmp_path / "c", 30, 10, seed=5) == write_synthetic(
        "cifar10", tmp_path / "d", 30, 10, seed=5
    )
    assert write_cifar_like(tmp_path / "e", 30, 10, seed=6) != write_synthetic(
        "cifar10", tmp_path / "f", 30, 10, seed=5
    )


@pytest.mark.parametrize(
    "head,shown",
    [
        (b"", "empty"),  # an empty file
        (b"\x00\x00\x08", "000008"),  # shorter than the magic number
        (b"\x01\x00\x08\x01", "01000801"),  # first byte not 0
        (b"\x00\x01\x08\x01", "00010801"),  # second byte not 0
        (b"\x00\x00\x0a\x01", "00000a01"),  # an item type IDX does not have
    ],
)
def test_a_bad_idx_magic_number_is_named_as_read(tmp_path, head, shown):
    from cnnlab.data.formats import check_idx

    path = tmp_path / "train-labels-idx1-ubyte"
    # after a whole magic number, one size: a header that is whole but for the magic
    path.write_bytes(head if len(head) < 4 else head + struct.pack(">I", 0))
    with pytest.raises(DataError) as err:
        check_idx(path)
    assert str(err.value) == (
        f"{path} is not an IDX file (bad magic number {shown}). Delete it and fetch it again."
    )


@pytest.mark.parametrize("ndim,dims", [(1, b""), (3, struct.pack(">2I", 600, 28))])
def test_an_idx_file_cut_inside_its_header_is_named(tmp_path, ndim, dims):
    from cnnlab.data.formats import check_idx

    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, ndim]) + dims)  # fewer than the 4 * ndim bytes of sizes
    with pytest.raises(DataError) as err:
        check_idx(path)
    assert str(err.value) == (
        f"{path} is truncated inside its header. Delete it and fetch it again."
    )


def test_a_label_outside_the_classes_names_the_first_one_and_the_valid_range(tmp_path):
    from cnnlab.data.formats import check_labels

    path = tmp_path / "data_batch_1"
    with pytest.raises(DataError) as err:
        check_labels(torch.tensor([3, 12, -1, 0]), 10, path)
    assert str(err.value) == (
        f"{path} holds label 12, outside the dataset's 10 classes (0..9): it is corrupt or "
        f"from another dataset. Fetch it again."
    )


def test_idx_images_of_other_dims_are_named_with_the_dims_expected(tmp_path):
    from cnnlab.data.formats import check_idx

    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 14, 56), np.uint8))
    with pytest.raises(DataError) as err:
        check_idx(path, (28, 28))
    assert str(err.value) == (
        f"{path} holds 6x14x56 items of type 0x08, not the Nx28x28 unsigned bytes this "
        f"dataset has: it is from another dataset. Fetch the right file."
    )


def test_an_idx_label_file_of_more_than_one_dim_is_refused(tiny_mnist):
    path = tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    write_idx(path, np.zeros((600, 1), np.uint8))  # as many bytes as 600 labels
    with pytest.raises(DataError, match=r"holds 600x1 items of type 0x08, not the N unsigned"):
        ensure_dataset("mnist", tiny_mnist, mirrors=[], download=False)


# -- synthetic data writers (synthetic.py survivors) -----------------------------------------------
def _idx_arrays(folder: Path) -> list[np.ndarray]:
    from cnnlab.data.formats import read_idx

    return [np.asarray(read_idx(folder / f)) for f in get_spec("mnist").files]


def test_synthetic_writers_default_sizes_and_their_seed(tmp_path):
    """write_synthetic writes 500 training and 200 test images by default, write_mnist_like
    600 and 200; both from seed 0 unless given one, which reaches the images."""
    default = _idx_arrays(Path(write_mnist_like(None, folder=tmp_path / "a")))
    assert [len(a) for a in default] == [600, 600, 200, 200]
    write_synthetic("mnist", tmp_path / "b")
    assert [len(a) for a in _idx_arrays(get_spec("mnist").target_dir(tmp_path / "b"))] == [
        500,
        500,
        200,
        200,
    ]
    seeded = _idx_arrays(Path(write_mnist_like(None, folder=tmp_path / "c", seed=0)))
    assert all(np.array_equal(x, y) for x, y in zip(default, seeded, strict=True))
    other = _idx_arrays(Path(write_mnist_like(None, folder=tmp_path / "d", seed=1)))
    assert not np.array_equal(other[0], default[0]) and not np.array_equal(other[2], default[2])
    write_synthetic("mnist", tmp_path / "e", 600, 200, seed=1)
    by_hand = _idx_arrays(get_spec("mnist").target_dir(tmp_path / "e"))
    assert all(np.array_equal(x, y) for x, y in zip(other, by_hand, strict=True))
    write_synthetic("mnist", tmp_path / "f", 500, 200, seed=0)
    assert all(
        np.array_equal(x, y)
        for x, y in zip(
            _idx_arrays(get_spec("mnist").target_dir(tmp_path / "b")),
            _idx_arrays(get_spec("mnist").target_dir(tmp_path / "f")),
            strict=True,
        )
    )


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_every_synthetic_image_carries_its_class_bar_inside_the_frame(shape):
    from tests.support.synthetic import make_images

    images, labels = make_images(400, shape, 10, seed=3)
    assert set(labels.tolist()) == set(range(10))
    bright = (images >= 180).all(axis=3)  # (N, H, W): the bar adds 180 to noise below 60
    full_line = bright.all(axis=2).any(axis=1) | bright.all(axis=1).any(axis=1)
    assert full_line.all()  # every image, of every class, has a whole row or column of bar
    # a bar is two lines wide (h // 12), horizontal for even classes, vertical for odd ones
    rows, cols = bright.all(axis=2).sum(axis=1), bright.all(axis=1).sum(axis=1)
    assert (rows[labels % 2 == 0] == 2).all() and (cols[labels % 2 == 0] == 0).all()
    assert (cols[labels % 2 == 1] == 2).all() and (rows[labels % 2 == 1] == 0).all()
    if shape[0] == 3:  # a colour cue too: class k is 20 levels brighter in channel k % 3
        for k in range(10):
            level = images[labels == k].mean(axis=(0, 1, 2))
            assert all(level[k % 3] - level[c] > 15 for c in range(3) if c != k % 3), (k, level)
    # one place per class: the mean images of any two classes differ
    means = np.stack([images[labels == k].mean(axis=0) for k in range(10)])
    assert min(np.abs(means[a] - means[b]).max() for a in range(10) for b in range(a)) > 100
