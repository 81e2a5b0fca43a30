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
from pathlib import Path

import pytest

from cnnlab.data.sources import ensure_dataset, get_spec
from cnnlab.data.specs import SPECS
from cnnlab.errors import DataError
from tests.support.synthetic import write_cifar_like, write_mnist_like

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


@pytest.mark.parametrize("name", sorted(SPECS))
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
        DataError, match=f"Unknown dataset 'imagenet'. Valid: {', '.join(sorted(SPECS))}"
    ):
        get_spec("imagenet")


# -- every place tried, in order, and what each says --------------------------------------

MNIST_FILES = get_spec("mnist").files


def test_the_not_found_message_lists_every_place_in_order_then_the_fixes(tmp_path, data_dir):
    mirror = tmp_path / "mirror"
    with pytest.raises(DataError) as err:
        ensure_dataset("mnist", data_dir, mirrors=[str(mirror)], download=False)
    raw = data_dir / "MNIST" / "raw"
    assert str(err.value) == "\n".join(
        [
            "MNIST not found. Tried:",
            f"  - {raw}: no such directory",
            f"  - {data_dir}: missing {', '.join(MNIST_FILES)}",
            f"  - {data_dir / 'MNIST'}: no such directory",
            f"  - {data_dir / 'mnist'}: no such directory",
            f"  - {mirror / 'MNIST'}: no such directory",
            f"  - {mirror / 'mnist'}: no such directory",
            "  - download: disabled (data.download=false)",
            f"Fix: put the four IDX files ({', '.join(f + '.gz' for f in MNIST_FILES)}) into {raw}/",
            "     or run once with internet access (data.download=true, or `make data`)",
        ]
    )


def test_the_not_found_message_names_the_datasets_that_are_here(tmp_path, data_dir):
    mirror = tmp_path / "mirror"  # as Debian's dataset-fashion-mnist lays it out
    write_mnist_like(None, folder=mirror / "fashion-mnist", compress=True)
    write_mnist_like(None, folder=get_spec("mnist").target_dir(data_dir))  # mnist, in data_dir
    with pytest.raises(DataError) as err:
        ensure_dataset("svhn", data_dir, mirrors=[str(mirror)], download=False)
    assert str(err.value).splitlines()[-1] == (
        f"Available here now: data=mnist (in {data_dir / 'MNIST' / 'raw'}), "
        f"data=fashion_mnist (in {mirror / 'fashion-mnist'})"
    )


def test_the_debian_package_is_the_first_fix_where_there_is_one(data_dir):
    with pytest.raises(DataError) as err:
        ensure_dataset("fashion_mnist", data_dir, mirrors=[], download=False)
    fix = str(err.value).split("\nFix: ")[1].split("\n     ")
    assert fix[0] == (
        "install Debian's package: sudo apt-get install dataset-fashion-mnist "
        "(puts the files in /usr/share/datasets/)"
    )
    assert fix[1].startswith("put the four IDX files (train-images-idx3-ubyte.gz, ")
    assert len(fix) == 3


def test_a_folder_with_some_files_names_only_the_missing_ones(tmp_path, data_dir):
    source = write_mnist_like(None, folder=tmp_path / "all")
    os.replace(source / MNIST_FILES[0], data_dir / MNIST_FILES[0])
    gz = data_dir / f"{MNIST_FILES[2]}.gz"
    gz.write_bytes(gzip.compress((source / MNIST_FILES[2]).read_bytes()))
    with pytest.raises(DataError) as err:
        ensure_dataset("mnist", data_dir, mirrors=[], download=False)
    assert f"  - {data_dir}: missing {MNIST_FILES[1]}, {MNIST_FILES[3]}\n" in str(err.value)


def test_a_raw_file_comes_before_its_gzipped_copy(data_dir):
    write_mnist_like(data_dir, folder=data_dir)
    for name in MNIST_FILES:  # broken .gz copies beside the good files
        (data_dir / f"{name}.gz").write_bytes(b"not gzip")
    folder = ensure_dataset("mnist", data_dir, mirrors=[], download=False)
    for name in MNIST_FILES:
        assert (folder / name).read_bytes() == (data_dir / name).read_bytes()


def test_gzipped_copies_do_not_stand_in_for_cifar_batches(tmp_path, data_dir, monkeypatch):
    patch_cifar_md5(monkeypatch, write_cifar_like(tmp_path / "staging"))
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir()
    for p in (tmp_path / "staging" / "cifar-10-batches-py").iterdir():
        (folder / f"{p.name}.gz").write_bytes(gzip.compress(p.read_bytes()))
    with pytest.raises(DataError) as err:
        ensure_dataset("cifar10", data_dir, mirrors=[], download=False)
    # the folder's line names the files (their .gz copies do not count)
    files = ", ".join(get_spec("cifar10").files)
    assert f"  - {folder}: missing {files}\n" in str(err.value)


def test_files_in_place_are_not_copied_again(tiny_mnist):
    raw = tiny_mnist / "MNIST" / "raw"
    inodes = {n: (raw / n).stat().st_ino for n in MNIST_FILES}
    ensure_dataset("mnist", tiny_mnist, mirrors=[], download=False)
    assert {n: (raw / n).stat().st_ino for n in MNIST_FILES} == inodes
    assert sorted(p.name for p in raw.iterdir()) == sorted(MNIST_FILES)  # no temp files


def test_files_dropped_in_data_dir_are_copied_into_the_layout(data_dir):
    write_mnist_like(data_dir, folder=data_dir / "mnist")  # an alias folder, uncompressed
    folder = ensure_dataset("mnist", data_dir, mirrors=[], download=False)
    assert folder == data_dir / "MNIST" / "raw"
    for name in MNIST_FILES:
        assert (folder / name).read_bytes() == (data_dir / "mnist" / name).read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == sorted(MNIST_FILES)


def test_a_corrupt_gzip_message_says_what_to_do(data_dir):
    write_mnist_like(data_dir, folder=data_dir, compress=True)
    gz = data_dir / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(DataError) as err:
        ensure_dataset("mnist", data_dir, mirrors=[], download=False)
    message = str(err.value)
    assert message.startswith(f"{gz} could not be read (")
    assert message.endswith("): it is truncated or corrupt. Delete it and fetch it again.")
    raw = data_dir / "MNIST" / "raw"
    assert not [p.name for p in raw.iterdir() if p.name.startswith(".")]  # temp file gone


def test_a_full_disk_while_installing_is_disk_full_not_corrupt_data(data_dir, monkeypatch):
    import errno
    import shutil

    from cnnlab.errors import DiskFull

    write_mnist_like(data_dir, folder=data_dir / "mnist")

    def full(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(DiskFull, match=r"^disk full: could not write .*train-images-idx3-ubyte"):
        ensure_dataset("mnist", data_dir, mirrors=[], download=False)
    assert list((data_dir / "MNIST" / "raw").iterdir()) == []  # the half-written temp is gone


def test_an_unwritable_data_dir_names_the_folder_and_the_fix(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    mirror = tmp_path / "mirror"
    write_mnist_like(None, folder=mirror / "mnist", compress=True)
    with pytest.raises(DataError) as err:
        ensure_dataset("mnist", blocker / "data", mirrors=[str(mirror)], download=False)
    assert str(err.value) == (
        f"data_dir is not writable: cannot create files in {blocker / 'data' / 'MNIST' / 'raw'} "
        f"(Not a directory). Choose another folder with data.data_dir=PATH or CNNLAB_DATA_DIR=PATH."
    )


def test_a_data_dir_under_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_mnist_like(tmp_path / "data")
    assert ensure_dataset("mnist", "~/data", mirrors=[], download=False) == (
        tmp_path / "data" / "MNIST" / "raw"
    )


def test_a_corrupt_cifar_tarball_says_where_to_download_it_again(data_dir):
    archive = data_dir / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError) as err:
        ensure_dataset("cifar10", data_dir, mirrors=[], download=False)
    message = str(err.value)
    assert message.startswith(f"{archive} could not be extracted (")
    assert message.endswith(
        "): it is truncated or corrupt. Delete it and download it again from "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz."
    )
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-batches-py", archive.name]


def test_a_tarball_without_the_files_is_named_among_the_places_tried(tmp_path, data_dir):
    other = tmp_path / "other"
    other.mkdir()
    (other / "readme.txt").write_text("not CIFAR")
    archive = data_dir / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(other, arcname="cifar-10-batches-py")
    with pytest.raises(DataError) as err:
        ensure_dataset("cifar10", data_dir, mirrors=[], download=False)
    lines = str(err.value).splitlines()
    assert lines[1] == f"  - {archive}: extracted"
    assert lines[2].startswith(f"  - {data_dir / 'cifar-10-batches-py'}: missing data_batch_1")
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".extract")]


def test_a_tarball_is_not_extracted_again_once_the_files_are_there(tiny_cifar):
    (tiny_cifar / "cifar-10-python.tar.gz").write_bytes(b"garbage: never opened")
    assert ensure_dataset("cifar10", tiny_cifar, mirrors=[], download=False).is_dir()


def test_a_successful_download_is_checked_and_used(data_dir, monkeypatch):
    spec = get_spec("mnist")
    calls = []

    def download(self, root):
        calls.append(root)
        write_mnist_like(root)

    monkeypatch.setattr(socket, "getaddrinfo", _resolves)
    monkeypatch.setattr(type(spec.format), "download", download)
    assert ensure_dataset("mnist", data_dir, mirrors=[], download=True) == spec.target_dir(data_dir)
    assert calls == [data_dir]


def _failed_download(data_dir, monkeypatch, error: Exception) -> str:
    """The message of ensure_dataset when the (resolvable) download raises ``error``."""

    def download(self, root):
        raise error

    monkeypatch.setattr(socket, "getaddrinfo", _resolves)
    monkeypatch.setattr(type(get_spec("mnist").format), "download", download)
    with pytest.raises(DataError) as err:
        ensure_dataset("mnist", data_dir, mirrors=[], download=True)
    return str(err.value)


def test_a_data_error_inside_the_download_is_raised_as_it_is(data_dir, monkeypatch):
    error = DataError("the server sent an HTML page")
    assert _failed_download(data_dir, monkeypatch, error) == "the server sent an HTML page"


def test_a_failed_download_reports_the_last_line_of_its_error(data_dir, monkeypatch):
    error = RuntimeError("  first line\nsecond line\nthe last line  \n")
    url = get_spec("mnist").format.download_url()
    line = f"\n  - download from {url}: the last line\n"
    assert line in _failed_download(data_dir, monkeypatch, error)


def test_a_download_error_without_a_message_is_still_reported(data_dir, monkeypatch):
    url = get_spec("mnist").format.download_url()
    line = f"\n  - download from {url}: \n"
    assert line in _failed_download(data_dir, monkeypatch, RuntimeError(""))


def test_a_tarball_member_pointing_outside_data_dir_is_refused(tmp_path, data_dir):
    import io

    archive = data_dir / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError) as err:
        ensure_dataset("cifar10", data_dir, mirrors=[], download=False)
    assert str(err.value).startswith(f"{archive} could not be extracted (")
    assert not (data_dir / "outside.txt").exists()


def test_without_a_tarball_nothing_is_said_to_be_extracted(data_dir):
    with pytest.raises(DataError) as err:
        ensure_dataset("cifar10", data_dir, mirrors=[], download=False)
    lines = str(err.value).splitlines()
    assert lines[1] == f"  - {data_dir / 'cifar-10-batches-py'}: no such directory"
    assert not [line for line in lines if line.endswith(": extracted")]


# -- the file-level steps of installing data (each guards against a half-written dataset) ---


def test_install_goes_on_past_a_file_already_in_place(tmp_path):
    from cnnlab.data.sources import _install

    target, elsewhere = tmp_path / "MNIST" / "raw", tmp_path / "dropped"
    write_mnist_like(None, folder=elsewhere)
    target.mkdir(parents=True)
    first, *rest = MNIST_FILES
    (target / first).write_bytes((elsewhere / first).read_bytes())
    found = {first: target / first, **{n: elsewhere / n for n in rest}}
    _install(get_spec("mnist"), found, target)  # the first is in place: skipped, not the end
    for name in MNIST_FILES:
        assert (target / name).read_bytes() == (elsewhere / name).read_bytes()
    assert sorted(p.name for p in target.iterdir()) == sorted(MNIST_FILES)


def test_a_file_being_installed_is_a_hidden_part_file_beside_its_destination(tmp_path):
    from cnnlab.data.sources import _temp_beside

    tmp = _temp_beside(tmp_path / "train-images-idx3-ubyte")
    # a crash leaves a file a user recognises (and ls hides), in the folder being filled, so
    # that the final rename is atomic (same file system)
    assert tmp.parent == tmp_path and tmp.is_file()
    assert tmp.name.startswith(".train-images-idx3-ubyte.") and tmp.name.endswith(".part")
    assert _temp_beside(tmp_path / "train-images-idx3-ubyte") != tmp  # unique per call


def test_the_writability_probe_is_a_hidden_file_inside_the_target_and_is_removed(
    tmp_path, monkeypatch
):
    from cnnlab.data.sources import _ensure_writable

    removed, unlink = [], os.unlink
    monkeypatch.setattr(os, "unlink", lambda p, *a, **k: (removed.append(Path(p)), unlink(p)))
    target = tmp_path / "data" / "MNIST" / "raw"
    _ensure_writable(target)
    (probe,) = removed
    assert probe.parent == target and probe.name.startswith(".cnnlab-write-test.")
    assert list(target.iterdir()) == []


def _cifar_tarball(tmp_path, data_dir, monkeypatch) -> Path:
    staging = tmp_path / "staging"
    patch_cifar_md5(monkeypatch, write_cifar_like(staging))
    archive = data_dir / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def test_extraction_says_so_and_unpacks_into_a_hidden_folder_inside_data_dir(
    tmp_path, data_dir, monkeypatch, caplog
):
    archive = _cifar_tarball(tmp_path, data_dir, monkeypatch)
    into, extractall = [], tarfile.TarFile.extractall

    def recording(self, path, *args, **kwargs):
        into.append(Path(path))
        return extractall(self, path, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", recording)
    with caplog.at_level("INFO", logger="cnnlab.data.sources"):
        folder = ensure_dataset("cifar10", data_dir, mirrors=[], download=False)
    assert f"Extracting {archive}" in [r.getMessage() for r in caplog.records]
    # inside data_dir: each file is then moved into place by an atomic rename
    (staging,) = into
    assert staging.parent == data_dir and staging.name.startswith(".extract.")
    assert not staging.exists() and (folder / "data_batch_1").is_file()


def test_a_staging_folder_that_cannot_be_removed_does_not_fail_the_extraction(
    tmp_path, data_dir, monkeypatch
):
    _cifar_tarball(tmp_path, data_dir, monkeypatch)
    rmdir = os.rmdir

    def stuck(path, *args, **kwargs):  # e.g. a file system that refuses (NFS, a virus scanner)
        if ".extract." in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return rmdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", stuck)
    folder = ensure_dataset("cifar10", data_dir, mirrors=[], download=False)
    assert (folder / "test_batch").is_file()


def test_a_hung_name_lookup_is_left_in_a_daemon_thread(monkeypatch):
    import threading

    import cnnlab.data.sources as sources

    release = threading.Event()
    monkeypatch.setattr(sources, "DNS_TIMEOUT_S", 0.05)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: release.wait(5))
    before = set(threading.enumerate())
    try:
        assert sources.unreachable("https://example.org/x").endswith("took over 0.05 s")
        (hung,) = set(threading.enumerate()) - before
        assert hung.daemon  # so it cannot keep the process alive after the run ends
    finally:
        release.set()


def test_a_name_that_resolves_is_reachable_with_the_real_resolver():
    # localhost resolves without a network (/etc/hosts); the real getaddrinfo, not a stand-in,
    # so a lookup with a missing port or a socket type it refuses would show up here
    from cnnlab.data.sources import unreachable

    assert unreachable("https://localhost/cifar-10-python.tar.gz") is None


def test_gzipped_files_in_the_layout_itself_are_unpacked_beside_themselves(data_dir, caplog):
    # torchvision's own download leaves the .gz files in MNIST/raw/; a copy of only those
    raw = write_mnist_like(data_dir, compress=True)
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES)
    with caplog.at_level("INFO", logger="cnnlab.data.sources"):
        assert ensure_dataset("mnist", data_dir, mirrors=[], download=False) == raw
    for name in MNIST_FILES:
        with gzip.open(raw / f"{name}.gz") as f:
            assert (raw / name).read_bytes() == f.read()
    assert f"Preparing MNIST from {raw} into {raw}" in [r.getMessage() for r in caplog.records]


def test_download_is_on_by_default_and_says_so(data_dir, monkeypatch, caplog):
    calls = []

    def download(self, root):
        calls.append(root)
        write_mnist_like(root)

    monkeypatch.setattr(socket, "getaddrinfo", _resolves)
    monkeypatch.setattr(type(get_spec("mnist").format), "download", download)
    with caplog.at_level("INFO", logger="cnnlab.data.sources"):
        assert ensure_dataset("mnist", data_dir, mirrors=[]) == data_dir / "MNIST" / "raw"
    assert calls == [data_dir]
    assert f"Downloading MNIST into {data_dir}" in [r.getMessage() for r in caplog.records]
