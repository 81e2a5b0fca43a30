"""Finding, installing and checking dataset files (data_dir, OS mirrors, download)."""

from __future__ import annotations

import gzip
import os
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from cnnlab.data.sources import ensure_dataset, get_spec
from cnnlab.data.synthetic import write_cifar_like, write_mnist_like
from cnnlab.errors import DataError

from .conftest import patch_cifar_md5


def test_files_in_torchvision_layout_are_used_in_place(tiny_mnist):
    folder = ensure_dataset("mnist", tiny_mnist, mirrors=[], download=False)
    assert folder == tiny_mnist / "MNIST" / "raw"


def test_gzipped_files_dropped_in_data_dir_are_unpacked_into_layout(data_dir):
    write_mnist_like(data_dir, folder=data_dir, compress=True)
    folder = ensure_dataset("mnist", data_dir, mirrors=[], download=False)
    raw = (folder / "train-images-idx3-ubyte").read_bytes()
    with gzip.open(data_dir / "train-images-idx3-ubyte.gz") as f:
        assert raw == f.read()


def test_os_mirror_is_used_when_data_dir_is_empty(tmp_path, data_dir):
    mirror = tmp_path / "mirror"
    write_mnist_like(None, "fashion_mnist", folder=mirror / "fashion-mnist", compress=True)
    folder = ensure_dataset("fashion_mnist", data_dir, mirrors=[str(mirror)], download=False)
    assert folder == data_dir / "FashionMNIST" / "raw"
    assert sorted(p.name for p in folder.iterdir()) == sorted(get_spec("fashion_mnist").files)


def test_missing_data_names_every_place_tried_and_the_fix(tmp_path, data_dir):
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        ensure_dataset(
            "fashion_mnist", data_dir, mirrors=[str(tmp_path / "nomirror")], download=False
        )
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert msg.startswith("Fashion-MNIST not found. Tried:")
    assert str(data_dir / "FashionMNIST" / "raw") in msg
    assert str(tmp_path / "nomirror" / "fashion-mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte.gz" in msg
    assert "data.download=false" in msg


def test_failed_download_is_reported_not_raised(data_dir, monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\n<urlopen error [Errno -2] Name or service not known>"
        )

    monkeypatch.setattr(get_spec("mnist").format.tv_class, "download", offline)
    monkeypatch.setattr(socket, "getaddrinfo", _resolves)
    with pytest.raises(DataError, match=r"download from https?://\S+: <urlopen error"):
        ensure_dataset("mnist", data_dir, mirrors=[], download=True)


def _resolves(host, *args, **kwargs):
    """getaddrinfo of a network that works: any name resolves."""
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 443))]


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_offline_download_fails_fast_after_one_lookup_and_leaves_no_folders(
    name, tmp_path, monkeypatch
):
    lookups, opened = [], []

    def no_dns(host, *args, **kwargs):  # what a machine without network answers
        lookups.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    def no_urlopen(*args, **kwargs):
        opened.append(args)
        raise urllib.error.URLError(socket.gaierror(socket.EAI_AGAIN, "no network"))

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(urllib.request, "urlopen", no_urlopen)
    data_dir = tmp_path / "data"  # not there yet, as on a first run
    messages = []
    start = time.perf_counter()
    for _ in range(2):  # the second attempt meets the same data_dir, so the same message
        with pytest.raises(DataError) as err:
            ensure_dataset(name, data_dir, mirrors=[], download=True)
        messages.append(str(err.value))
    assert time.perf_counter() - start < 3
    assert messages[0] == messages[1]
    host = urllib.parse.urlsplit(get_spec(name).format.download_url()).hostname
    assert lookups == [host, host] and opened == []  # one lookup per call, no mirror tried
    (line,) = [x for x in messages[0].splitlines() if "download from" in x]
    assert f"no network: {host} cannot be resolved (Temporary failure in name resolution)" in line
    assert not data_dir.exists() and list(tmp_path.iterdir()) == []


def test_a_resolver_that_hangs_counts_as_offline(data_dir, monkeypatch):
    import cnnlab.data.sources as sources

    monkeypatch.setattr(sources, "DNS_TIMEOUT_S", 0.2)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(3))
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"no network: looking up \S+ took over 0.2 s"):
        ensure_dataset("mnist", data_dir, mirrors=[], download=True)
    assert time.perf_counter() - start < 2


def test_a_failed_download_takes_back_the_empty_folders_it_made(data_dir, monkeypatch):
    opened = []

    def refused(*args, **kwargs):  # the name resolved, the server did not answer
        opened.append(args)
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(socket, "getaddrinfo", _resolves)
    monkeypatch.setattr(urllib.request, "urlopen", refused)
    (data_dir / "notes.txt").write_text("the user's")
    with pytest.raises(DataError, match=r"download from https?://\S+: .*Connection refused"):
        ensure_dataset("mnist", data_dir, mirrors=[], download=True)
    assert opened  # torchvision did try (each of its mirrors)
    assert sorted(p.name for p in data_dir.iterdir()) == ["notes.txt"]  # no empty MNIST/raw


def test_truncated_idx_file_is_named(tiny_mnist):
    path = tiny_mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte is truncated or corrupt: header says 200x28x28"
    ):
        ensure_dataset("mnist", tiny_mnist, mirrors=[], download=False)


def test_not_an_idx_file_is_named(tiny_mnist):
    path = tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_text("<html>404 Not Found</html>")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte is not an IDX file"):
        ensure_dataset("mnist", tiny_mnist, mirrors=[], download=False)


def test_corrupt_gzip_is_named(data_dir):
    write_mnist_like(data_dir, folder=data_dir, compress=True)
    gz = data_dir / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz could not be read"):
        ensure_dataset("mnist", data_dir, mirrors=[], download=False)
    assert not (data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


def test_image_and_label_counts_must_match(tiny_mnist, tmp_path):
    other = write_mnist_like(None, folder=tmp_path / "other", n_train=50)
    os.replace(
        other / "train-labels-idx1-ubyte", tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    )
    with pytest.raises(DataError, match="holds 600 images but .* holds 50 labels"):
        ensure_dataset("mnist", tiny_mnist, mirrors=[], download=False)


def test_cifar_batches_pass_their_md5_check(tiny_cifar):
    assert (
        ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False).name
        == "cifar-10-batches-py"
    )


def test_corrupt_cifar_batch_fails_its_md5_check(tiny_cifar):
    path = tiny_cifar / "cifar-10-batches-py" / "data_batch_3"
    blob = bytearray(path.read_bytes())
    blob[500] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(
        DataError, match=r"data_batch_3 failed its integrity check \(md5 [0-9a-f]{32}, expected"
    ):
        ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False)


def test_cifar_tarball_in_data_dir_is_extracted(tmp_path, data_dir, monkeypatch):
    staging = tmp_path / "staging"
    sums = write_cifar_like(staging)
    patch_cifar_md5(monkeypatch, sums)
    with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    folder = ensure_dataset("cifar10", data_dir, mirrors=[], download=False)
    assert (folder / "test_batch").is_file()


def test_unwritable_data_dir_is_reported(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    mirror = tmp_path / "mirror"
    write_mnist_like(None, folder=mirror / "mnist", compress=True)
    with pytest.raises(DataError, match=r"data_dir is not writable: .*data.data_dir=PATH"):
        ensure_dataset("mnist", blocker / "data", mirrors=[str(mirror)], download=False)


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(
        DataError, match="Unknown dataset 'imagenet'. Valid: cifar10, fashion_mnist, mnist, svhn"
    ):
        get_spec("imagenet")
