"""Writing files so that a crash or a full disk never leaves half a file under a real name.

Everything cnnlab writes (checkpoints, metrics.json, figures, prepared data) goes to a temp
name in the destination folder and is renamed over the real name once complete: a rename
within one filesystem is atomic, so a reader sees the old file or the new one, never a torn
one, and a failed write leaves the previous good file in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from cnnlab.errors import DiskFull


def free_mb(path: Path) -> int:
    """Free space on the filesystem holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free // 2**20


def disk_full(path: Path) -> DiskFull:
    return DiskFull(
        f"disk full: could not write {path} ({free_mb(path)} MB free on that disk). The last "
        f"complete files are kept; free some space and run the same command again (an "
        f"interrupted training run resumes from its last checkpoint)."
    )


def out_of_space(error: BaseException | None) -> bool:
    """Whether ``error`` comes from a full disk (or quota). torch's C++ writers report one as a
    RuntimeError ("unexpected pos ...") raised while handling the OSError of the Python file
    they wrote to, so the whole chain of causes is searched."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside ``path`` to write to, renamed over ``path`` when the block succeeds
    and removed when it fails; running out of space raises DiskFull.

    torch writers must be given an open Python file (``open(tmp, "wb")``), not the path: with a
    path, torch's C++ writer reports a full disk as a bare RuntimeError (torch.save) or aborts
    the process (torch.jit.save); through a Python file the OSError reaches this block.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        if out_of_space(e):
            raise disk_full(path) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
