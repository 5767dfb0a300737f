"""Atomic file writes: every file the project writes (checkpoints, configs, feature caches, metrics,
samples, weights) goes through :func:`atomic_write`.

A temporary file in the *same directory* (never ``$TMPDIR``: across filesystems a rename becomes a copy
into the final name, which a kill or a full disk leaves half-written), fsync, ``os.replace``, then fsync
of the directory so the rename itself survives a power cut. Readers see the old file or the new one,
never a part. Temporary files are named ``.<name>.<random>.tmp``; :func:`remove_stale_temporaries`
deletes the ones a killed process left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from gan_lightning.errors import GanLightningError

TMP_SUFFIX = ".tmp"


class DiskFullError(GanLightningError):
    """No space left (or quota exceeded) where a file was being written."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_disk_full(err: BaseException, folder: Path) -> bool:
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    # torch.save's zip writer reports a short write as a RuntimeError ("unexpected pos"), not ENOSPC
    if isinstance(err, RuntimeError):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free < 1 << 20
    return False


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems (and Windows) refuse to open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """``with atomic_open(path) as f: f.write(...)``: ``path`` appears complete or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide runs from a shared group
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if _is_disk_full(err, path.parent):
            raise DiskFullError(
                f"no space left on the device holding {path.parent} while writing {path.name}; the files "
                "already there are intact: free some space (or point the run elsewhere) and run again"
            ) from None
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a binary file object that becomes ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def remove_stale_temporaries(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files (any name when ``None``) left in ``folder`` by a killed writer.
    Call only where no other process writes at the same time (rank 0, at the start of a run)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*{TMP_SUFFIX}" if name else f".*{TMP_SUFFIX}"
    removed = []
    for tmp in folder.glob(pattern):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed
