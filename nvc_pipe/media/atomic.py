"""Atomic file output: a file appears complete under its name or not at all.

Every output the CLI writes (MKV, elementary stream, decoded video, PNG) goes through :func:`atomic_output`, so an
error or an interrupt never leaves a half-written file that looks valid; so do checkpoints, weights, eval caches,
reports and plots (:func:`write_atomic` for whole bytes or text). The one atomic-write helper of the tree.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Iterator

from ..errors import OutputError, one_line


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str, *, overwrite: bool = True) -> Iterator[str]:
    """Write a file atomically.

    Yields a temporary path in the same directory with the same extension (so FFmpeg guesses the same format);
    on success it is renamed over ``path`` with the usual permissions (0666 & ~umask), on any exception (including
    ``KeyboardInterrupt``) it is deleted and the exception propagates. With ``overwrite=False`` the final step is
    a hard link that fails when ``path`` exists by then (two encodes racing for one name: the second one fails and
    the first file stays), not a rename over it.

    Raises:
        OutputError: ``path`` is ``"-"``, a directory, in a missing directory, cannot be created/renamed, or exists
            at the end while ``overwrite`` is false.
    """
    path = os.fspath(path)
    if not path or path == "-":
        raise OutputError("an atomic output needs a file name, not standard output")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise OutputError(f"cannot write {path}: is a directory")
    stem, ext = os.path.splitext(os.path.basename(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".part{ext}", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or one_line(exc)}") from exc
    os.close(fd)
    try:
        yield tmp
    except BaseException:
        _remove_quietly(tmp)
        raise
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    except FileExistsError:
        _remove_quietly(tmp)
        raise OutputError(f"cannot write {path}: it appeared while this was being written (use -y to overwrite)") \
            from None
    except OSError as exc:
        _remove_quietly(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or one_line(exc)}") from exc


def write_atomic(path, data: bytes | str, *, overwrite: bool = True) -> None:
    """Write `data` (bytes, or text as UTF-8) to `path` through :func:`atomic_output`: whole or not at all."""
    with atomic_output(os.fspath(path), overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _link_no_clobber(tmp: str, path: str) -> None:
    """Give ``tmp`` the name ``path`` unless ``path`` exists (atomic on POSIX: ``link`` never replaces)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (FAT, some FUSE): check, then rename (a small race)
        if os.path.lexists(path):
            raise FileExistsError(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def check_writable(path: str) -> None:
    """Fail now, not after hours of work, when ``path`` could not be written: create and remove a temporary file
    beside it (``"-"`` is always writable).

    Raises:
        OutputError: ``path`` is a directory, its directory is missing, or no file can be created there.
    """
    path = os.fspath(path)
    if path == "-":
        return
    try:
        with atomic_output(path):
            raise _Probe
    except _Probe:
        pass


class _Probe(Exception):
    """Raised inside :func:`atomic_output` to discard the probe file."""


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
