"""Where each dataset's files come from, and installing them.

The on-disk layout is torchvision's (``<data_dir>/MNIST/raw/``, ``<data_dir>/FashionMNIST/raw/``,
``<data_dir>/cifar-10-batches-py/``...), so a ``data/`` folder is interchangeable with other
torchvision code. ``ensure_dataset`` fills that layout from, in order:

1. ``data_dir`` itself: torchvision's layout, or the files (raw or ``.gz``) dropped anywhere
   a user would plausibly put them (``data_dir/``, ``data_dir/mnist/``...);
2. OS dataset mirrors such as Debian's ``/usr/share/datasets/fashion-mnist/``;
3. torchvision's own download (official URLs, md5-checked, with a progress bar), after one
   DNS lookup of the first URL's host: offline, that one lookup fails and nothing else is
   tried, instead of every mirror URL failing it in turn.

Every file is checked before use by its format (``formats.py``), so a truncated download
fails with the file's name instead of a numpy stack trace. Several processes may prepare
the same ``data_dir`` at once (a sweep's first runs): every file is written under a unique
temporary name and moved into place atomically, so each process sees either no file or a
whole one.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from cnnlab.data.specs import SPECS, DatasetSpec, get_spec
from cnnlab.errors import DataError
from cnnlab.files import disk_full

log = logging.getLogger(__name__)

DEFAULT_MIRRORS = ("/usr/share/datasets",)
# a resolver that has not answered by then is taken for no network (a working one answers in
# milliseconds; an unreachable one only gives up after its own timeouts, 5 s each or more)
DNS_TIMEOUT_S = 5.0

__all__ = ["DEFAULT_MIRRORS", "SPECS", "DatasetSpec", "ensure_dataset", "get_spec", "verify"]


def verify(spec: DatasetSpec, folder: Path) -> None:
    """Check every file of ``spec`` in ``folder`` (torchvision's layout); raise DataError."""
    spec.format.check(folder, spec)


def _find_files(spec: DatasetSpec, folder: Path) -> dict[str, Path] | None:
    """Map each needed file to its copy (raw, or gzipped where the format allows) in
    ``folder``; None if any is missing."""
    found = {}
    for name in spec.files:
        candidates = [folder / name]
        if spec.format.compressed_ok:
            candidates.append(folder / f"{name}.gz")
        for candidate in candidates:
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _describe_missing(spec: DatasetSpec, folder: Path) -> str:
    if not folder.is_dir():
        return f"{folder}: no such directory"
    # a .gz copy stands in for a file only where the format reads it (_find_files)
    gz_ok = spec.format.compressed_ok
    missing = [
        n
        for n in spec.files
        if not (folder / n).is_file() and not (gz_ok and (folder / f"{n}.gz").is_file())
    ]
    return f"{folder}: missing {', '.join(missing)}"


def _temp_beside(dst: Path) -> Path:
    """A fresh, uniquely named file in ``dst``'s folder: a temp name no other process uses."""
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    return Path(name)


def _install(spec: DatasetSpec, found: dict[str, Path], target: Path) -> None:
    """Copy (and gunzip) found files into torchvision's layout under ``target``."""
    _ensure_writable(target)
    for name, src in found.items():
        dst = target / name
        if src == dst:
            continue
        tmp = _temp_beside(dst)
        try:
            if src.suffix == ".gz":
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            else:
                shutil.copyfile(src, tmp)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            tmp.unlink(missing_ok=True)
            if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(dst) from None
            raise DataError(
                f"{src} could not be read ({e}): it is truncated or corrupt. "
                f"Delete it and fetch it again."
            ) from None
        # atomic: a crash never leaves a half-written file in place, and a process installing
        # the same file at the same time replaces a whole file with an identical whole file
        os.replace(tmp, dst)


def _ensure_writable(target: Path) -> None:
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".cnnlab-write-test.", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DataError(
            f"data_dir is not writable: cannot create files in {target} ({e.strerror}). "
            f"Choose another folder with data.data_dir=PATH or CNNLAB_DATA_DIR=PATH."
        ) from None


def _extract_archive(spec: DatasetSpec, data_dir: Path) -> bool:
    """Unpack a tarball (CIFAR's) dropped into data_dir, if there is one.

    Extracted into a private temporary folder first, then each file is moved into place,
    so a process running beside this one never reads a half-extracted file.
    """
    if spec.format.archive is None:
        return False
    archive = data_dir / spec.format.archive
    if not archive.is_file():
        return False
    log.info("Extracting %s", archive)
    target = spec.target_dir(data_dir)
    _ensure_writable(target)
    staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=data_dir))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # the "data" filter refuses absolute paths and links out of data_dir (Python >= 3.10.12)
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, **safe)  # noqa: S202
        for name in spec.files:
            src = staging / spec.format.folder / name
            if src.is_file():
                os.replace(src, target / name)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(
            f"{archive} could not be extracted ({e}): it is truncated or corrupt. "
            f"Delete it and download it again from {spec.format.download_url()}."
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def unreachable(url: str) -> str | None:
    """Why ``url``'s host cannot be reached (its name does not resolve), or None if it can."""
    host, timeout = urllib.parse.urlsplit(url).hostname or url, DNS_TIMEOUT_S
    outcome: list[BaseException | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
            outcome.append(None)
        except OSError as e:  # socket.gaierror: no resolver, no route, unknown name
            outcome.append(e)

    # getaddrinfo has no timeout of its own; a daemon thread is abandoned if it hangs
    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no network: looking up {host} took over {timeout:g} s"
    if outcome[0] is not None:
        e = outcome[0]
        return f"no network: {host} cannot be resolved ({getattr(e, 'strerror', None) or e})"
    return None


def _download(spec: DatasetSpec, data_dir: Path) -> str | None:
    """torchvision's download into ``data_dir``; what went wrong (one line), or None.

    A failed attempt takes back the folders it created that are still empty, so the next
    attempt (and its message) sees ``data_dir`` as it was.
    """
    url = spec.format.download_url()
    offline = unreachable(url)
    if offline is not None:
        return f"download from {url}: {offline}"
    target = spec.target_dir(data_dir)
    created = [d for d in (target, *target.parents) if not d.exists()]
    try:
        _ensure_writable(data_dir)
        spec.format.download(data_dir)
    except DataError:
        raise
    except Exception as e:  # network errors come in many types; report, don't crash
        for folder in created:  # deepest first; a folder with anything in it stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        first = str(e).strip().splitlines()
        return f"download from {url}: {first[-1] if first else e}"
    return None


def ensure_dataset(
    name: str,
    data_dir: str | os.PathLike,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    download: bool = True,
) -> Path:
    """Make ``name``'s files present and verified in torchvision's layout under ``data_dir``.

    Returns the folder holding them. Raises DataError naming every place tried and the fix.
    """
    spec = get_spec(name)
    data_dir = Path(data_dir).expanduser()
    target = spec.target_dir(data_dir)
    tried: list[str] = []

    if _find_files(spec, target) is None and _extract_archive(spec, data_dir):
        tried.append(f"{data_dir / spec.format.archive}: extracted")

    local = [target, data_dir] + [data_dir / a for a in spec.aliases]
    remote = [Path(m) / a for m in mirrors for a in spec.aliases]
    for folder in dict.fromkeys(local + remote):  # ordered, without repeats
        found = _find_files(spec, folder)
        if found is None:
            tried.append(_describe_missing(spec, folder))
            continue
        if folder != target or any(p.suffix == ".gz" for p in found.values()):
            log.info("Preparing %s from %s into %s", spec.title, folder, target)
            _install(spec, found, target)
        verify(spec, target)
        return target

    if download:
        log.info("Downloading %s into %s", spec.title, data_dir)
        failed = _download(spec, data_dir)
        if failed is None:
            verify(spec, target)
            return target
        tried.append(failed)
    else:
        tried.append("download: disabled (data.download=false)")

    raise DataError(_not_found_message(spec, data_dir, tried, mirrors))


def _found_elsewhere(spec: DatasetSpec, data_dir: Path, mirrors: Sequence[str]) -> list[str]:
    """The other built-in datasets whose files are in the places ``spec`` was looked for."""
    found = []
    for other in SPECS.values():
        places = [
            other.target_dir(data_dir),
            *(Path(m) / a for m in mirrors for a in other.aliases),
        ]
        where = next((p for p in places if _find_files(other, p) is not None), None)
        if other.name != spec.name and where is not None:
            found.append(f"data={other.name} (in {where})")
    return found


def _not_found_message(
    spec: DatasetSpec, data_dir: Path, tried: list[str], mirrors: Sequence[str] = ()
) -> str:
    fixes = []
    if spec.debian_package:
        fixes.append(
            f"install Debian's package: sudo apt-get install {spec.debian_package} "
            f"(puts the files in /usr/share/datasets/)"
        )
    fixes.append(spec.format.how_to_get(data_dir))
    fixes.append("or run once with internet access (data.download=true, or `make data`)")
    lines = [f"{spec.title} not found. Tried:"]
    lines += [f"  - {t}" for t in tried]
    lines.append("Fix: " + "\n     ".join(fixes))
    if here := _found_elsewhere(spec, data_dir, mirrors):  # what runs right now, offline
        lines.append("Available here now: " + ", ".join(here))
    return "\n".join(lines)
