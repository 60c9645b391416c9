"""Files that appear whole or not at all.

Every file the package writes (model files, checkpoints, structure files, figures, reports) goes
through :func:`atomic_path`: the content is written to a temporary name in the target's directory
and renamed over the target only when writing succeeded, so a killed process, a full disk or an
exception never leaves a truncated ``.pt``, a 0-byte PNG or half an extxyz file behind.
:func:`check_output_path` is the cheap check made *before* any heavy work, so a read-only or
missing directory is reported at once, naming the option, not after hours of training.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_bytes", "write_text", "check_output_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path`` (atomic on POSIX),
    on any exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    return write_bytes(path, text.encode())


def check_output_path(path: str | os.PathLike, field: str, needed_bytes: int = 0, overwrite: bool = True) -> Path:
    """Check, before any heavy work, that a file can be written at ``path``.

    :param field: the option or input named in the error (e.g. ``'--output'``).
    :param needed_bytes: an estimate of the size to be written; refused when the file system has less free.
    :param overwrite: when false, an existing file is refused.
    :raises ValueError: naming ``field``: the directory is missing, not a directory or not writable,
        ``path`` is a directory, exists (without ``overwrite``), or the disk is too full.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{field}: {str(path)!r} is a directory; expected a file name")
    if path.exists() and not overwrite:
        raise ValueError(f"{field}: {str(path)!r} exists; expected a new file name")
    if not directory.is_dir():
        raise ValueError(f"{field}: the directory {str(directory)!r} does not exist")
    try:  # a real probe: permission bits say nothing to root, and a read-only mount only shows on writing
        handle, probe = tempfile.mkstemp(prefix=".physgen-probe.", dir=directory)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"{field}: cannot write in the directory {str(directory)!r} ({error.strerror})") from None
    if needed_bytes:
        free = shutil.disk_usage(directory).free
        if free < needed_bytes:
            raise ValueError(
                f"{field}: about {needed_bytes / 1e6:.1f} MB are needed in {str(directory)!r} but only "
                f"{free / 1e6:.1f} MB are free"
            )
    return path
