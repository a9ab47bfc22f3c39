"""The exception types for what a user (or the machine) can get wrong, and how values are echoed in messages.

Exit codes (the CLI maps these, and only these, to codes; anything else is a bug):
  NntrainError  2   bad config, data, checkpoint or argument
  WriteError    74  the machine refused a write: disk full, quota, read-only file system, permissions, I/O error
                2   when the path given is what is wrong (no such folder, a name too long)
"""

from __future__ import annotations

import errno
import os

MAX_LINE = 1000  # characters of one message line; longer lines keep their start and end


def shorten(text: str, limit: int = 80) -> str:
    """`text` cut in the middle when longer than `limit`, saying how long it was."""
    if len(text) <= limit:
        return text
    keep = max(limit - 30, 10)
    return f"{text[: keep * 2 // 3]}...{text[-(keep // 3):]} ({len(text):,} characters)"


def short_repr(value, limit: int = 80) -> str:
    """repr(value) for a message, shortened; a long string is cut before repr, so no huge copy is made."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[: limit * 2 // 3]!r}...{value[-(limit // 3):]!r} ({len(value):,} characters)"
    return shorten(repr(value), limit)


def _bounded(message: str) -> str:
    return "\n".join(shorten(line, MAX_LINE) for line in message.split("\n"))


class NntrainError(Exception):
    """A user-facing error; the CLI prints it without a traceback and exits with `exit_code`."""

    exit_code = 2

    def __init__(self, message: str, key: str | None = None):
        self.key = key
        super().__init__(_bounded(f"{key}: {message}" if key else message))


_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "the file name is too long",
}


# Refusals of the machine, not of the path the user gave: the same command may work elsewhere or later.
_MACHINE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


class WriteError(NntrainError):
    """An output file could not be written (an OSError while writing); the earlier files are left as they were."""

    def __init__(self, path, error: OSError, what: str = "writing"):
        self.path, self.errno = path, error.errno
        self.exit_code = 74 if error.errno in _MACHINE else 2
        reason = _REASONS.get(error.errno) or error.strerror or os.strerror(error.errno or 0) or str(error)
        super().__init__(f"cannot write '{path}': {reason} (while {what})")
