"""Standard input and output as files: stdin spooled to a temporary file for inputs that need seeking (mp4, MKV,
an NVC stream on ``-``), and whole byte strings written to stdout with one clear error on a closed pipe.

A spooled file lives in the temporary directory (``$TMPDIR``) and is removed when the process exits, so the audio
of a piped-in source can still be copied after the video was read.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile

from ..errors import InputError, OutputError

_SPOOLED: list[str] = []


def _remove_all() -> None:
    for path in _SPOOLED:
        try:
            os.unlink(path)
        except OSError:
            pass


atexit.register(_remove_all)


def spool_stdin(head: bytes = b"") -> str:
    """Copy ``head`` and then all of standard input to a temporary file; return its path.

    Raises:
        OutputError: the temporary file cannot be written (disk full...).
        InputError: standard input cannot be read.
    """
    try:
        fd, path = tempfile.mkstemp(prefix="nvc-stdin-", suffix=".bin")
    except OSError as exc:
        raise OutputError(f"cannot spool standard input to {tempfile.gettempdir()}: {exc.strerror}") from exc
    _SPOOLED.append(path)
    with os.fdopen(fd, "wb") as out:
        chunk = head or _read()
        while chunk:
            try:
                out.write(chunk)
            except OSError as exc:
                raise OutputError(f"cannot spool standard input to {path}: {exc.strerror or exc}") from exc
            chunk = _read()
    return path


def _read() -> bytes:
    try:
        return sys.stdin.buffer.read(1 << 20)
    except OSError as exc:
        raise InputError(f"cannot read standard input: {exc.strerror or exc}") from exc


def write_stdout(chunks: list[bytes]) -> int:
    """Write ``chunks`` to standard output and flush; return the byte count.

    Raises:
        OutputError: the pipe was closed by the reader, or another write error.
    """
    written = 0
    try:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
            written += len(chunk)
        sys.stdout.buffer.flush()
    except OSError as exc:
        raise OutputError(f"cannot write standard output: {exc.strerror or exc}") from exc
    return written
