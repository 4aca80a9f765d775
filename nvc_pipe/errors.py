"""Errors nvc-pipe raises on purpose.

Every error meant for a user derives from :class:`NvcError` and carries a one-line message; ``cli.py`` turns it
into a single stderr line and an exit code. Anything else reaching the CLI is a bug (it still gets one line).
Each subclass also inherits the builtin a Python caller would expect (``ValueError``, ``OSError``) so callers can
catch either way.
"""

from __future__ import annotations


class NvcError(Exception):
    """Base class: a failure with a message fit for one stderr line."""

    exit_code = 1


class InputError(NvcError, OSError):
    """An input cannot be read: missing, unreadable, not a video, zero frames, unsupported layout."""

    exit_code = 2


class ConfigError(NvcError, ValueError):
    """A wrong option: unknown preset, codec or device, out-of-range value."""

    exit_code = 2


class BitstreamError(NvcError, ValueError):
    """A stream that is corrupt, truncated, foreign or of an unsupported version."""

    exit_code = 3


class OutputError(NvcError, OSError):
    """An output cannot be written (the partial file is removed)."""

    exit_code = 4


def one_line(exc: BaseException) -> str:
    """A short reason for an exception: FFmpeg's/the OS's error text without the file name, else its first line."""
    reason = getattr(exc, "strerror", None)
    if isinstance(reason, str) and reason.strip():
        return reason.strip().splitlines()[0]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
