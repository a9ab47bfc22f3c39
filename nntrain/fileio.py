"""Every file nntrain writes goes through here, and every refused write becomes a WriteError.

  atomic_write(path, data)   replace a file as a whole: a temporary file in the same folder,
                             fsynced, renamed over the old one, the folder fsynced. A crash
                             leaves the old file or the new one; a failed write leaves the old
                             file and no temporary file.
  LineLog(path, initial)     an append-only text file (metrics.csv, diagnostics.csv): each
                             append goes to the kernel at once (no buffer to lose); `rollback()`
                             truncates the file back to the last `commit()`, which needs no
                             free space, so a failed epoch leaves no row behind.
  Previous(path)             the current version of a file kept aside (a hard link, or a
                             rename where links are refused: no space used) while a new one
                             is written; `restore()` puts it back when a later write fails.
  make_dir(path)             create a folder.
  remove(path)               delete a file (a missing one is fine).
  read_text(path)            a UTF-8 file's text; NntrainError (exit 2) naming the file if it
                             cannot be read or is not UTF-8.

An OSError of any of them is raised as errors.WriteError(path, error, what) naming the file the
caller asked for (never the temporary one): exit code 74 when the machine refused (disk full,
quota, read-only file system, permissions, I/O error), 2 when the path itself is wrong.

`_write(fd, data, path)` is the one place bytes are handed to the operating system; fault
injection (tests) replaces it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from .errors import NntrainError, WriteError

TEMP_PATTERN = re.compile(r"\..+\.tmp-\d+")  # what atomic_write leaves behind only when killed mid-write
_activity: ContextVar[str | None] = ContextVar("nntrain_write_activity", default=None)


@contextmanager
def activity(what: str):
    """Name what the writes inside are for ("saving the checkpoint of epoch 5"), for their WriteErrors' "while ..."."""
    token = _activity.set(what)
    try:
        yield
    finally:
        _activity.reset(token)


def _what(what: str | None) -> str:
    return what or _activity.get() or "writing"


def _write(fd: int, data: bytes, path: Path) -> None:
    """Write all of `data` to `fd` (the file `path`): the lowest-level write, looping over short writes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable, as far as the platform allows (best effort: never raises)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # file systems that cannot fsync a directory; the rename itself has happened
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:  # already gone, or the file system refuses even that: nothing more to do
        pass


def atomic_write(path: Path, data: bytes, what: str | None = None) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a part.

    WriteError if it cannot be done; the old file (if any) is then left as it was, and the
    temporary file is removed.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            _write(fd, data, path)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise WriteError(path, e, _what(what)) from None
    except BaseException:  # interrupted (KeyboardInterrupt) or a bug: no temporary file left behind either
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


class AtomicStream:
    """A file written piece by piece that appears at `path` whole, or not at all (atomic_write for large files).

        with AtomicStream(path, "writing X.npy") as out:
            out.write(header); out.write(rows) ...

    On leaving without an error the data is fsynced and renamed into place; on any error the
    temporary file is removed and `path` is left as it was.
    """

    def __init__(self, path: Path, what: str | None = None):
        self.path, self.tmp, self.what, self.fd = Path(path), temp_path(Path(path)), what, None

    def __enter__(self) -> "AtomicStream":
        try:
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise WriteError(self.path, e, _what(self.what)) from None
        return self

    def write(self, data: bytes) -> None:
        try:
            _write(self.fd, data, self.path)
        except OSError as e:
            raise WriteError(self.path, e, _what(self.what)) from None

    def __exit__(self, kind, error, tb) -> None:
        try:
            if kind is None:
                os.fsync(self.fd)
            os.close(self.fd)
            if kind is None:
                os.replace(self.tmp, self.path)
                fsync_dir(self.path.parent)
                return
        except OSError as e:
            _unlink_quietly(self.tmp)
            raise WriteError(self.path, e, _what(self.what)) from None
        _unlink_quietly(self.tmp)


class LineLog:
    """An append-only text file, created (atomically) with `initial` text: a header and any kept rows.

    `append(text)` writes at once, unbuffered; a failed append leaves nothing of itself. `commit()`
    marks what is there as kept; `rollback()` truncates back to the last commit (or the initial
    text), dropping the rows of an epoch whose checkpoint could not be written. `sync()` fsyncs.
    """

    def __init__(self, path: Path, initial: str, what: str = "writing"):
        self.path, self.what = Path(path), what
        self.fd = None
        atomic_write(self.path, initial.encode(), f"creating {self.path.name}")
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
            self.committed = self.offset = os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as e:
            self.close()
            raise WriteError(self.path, e, f"opening {self.path.name} for appending") from None

    def append(self, text: str, what: str | None = None) -> None:
        data = text.encode()
        try:
            _write(self.fd, data, self.path)
        except OSError as e:
            self._truncate(self.offset)  # a partial row would be read as a row
            raise WriteError(self.path, e, what or self.what) from None
        self.offset += len(data)

    def sync(self, what: str | None = None) -> None:
        try:
            os.fsync(self.fd)
        except OSError as e:
            raise WriteError(self.path, e, what or self.what) from None

    def commit(self) -> None:
        self.committed = self.offset

    def rollback(self) -> None:
        """Drop what was appended since the last commit (best effort: truncating needs no space)."""
        if self.fd is not None and self.offset != self.committed:
            self._truncate(self.committed)

    def _truncate(self, offset: int) -> None:
        try:
            os.ftruncate(self.fd, offset)
            self.offset = offset
        except OSError:  # the file keeps the extra bytes; a resume drops rows after its checkpoint anyway
            pass

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.close(fd)
            except OSError:  # every append was already written (and synced where it mattered)
                pass


class Previous:
    """The file at `path` as it is now, kept recoverable while a newer version replaces it.

    Kept aside under a temporary name (.NAME.old.tmp-PID, which a resume's `remove_temp_files`
    deletes when a kill leaves it) without using space: a hard link, or, where the file system
    refuses links, a rename (until the new version is written `path` is then absent).
    `restore()` (a later step failed) puts it back with a rename, which needs no free space; a
    file that did not exist is removed again. `discard()` (everything succeeded) drops the copy.
    Best effort: when neither a link nor a rename works, `restore()` leaves the new version.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.aside: Path | None = None
        try:
            mode = os.lstat(self.path).st_mode
        except OSError:
            mode = None
        self.existed = mode is not None
        if mode is None or not stat.S_ISREG(mode):  # only a regular file is kept (not a folder in its place)
            return
        aside = temp_path(self.path.with_name(self.path.name + ".old"))
        _unlink_quietly(aside)
        for keep in (os.link, os.rename):  # EPERM / EXDEV / EMLINK / ENOSPC (a directory entry) for links
            try:
                keep(self.path, aside)
            except OSError:
                continue
            self.aside = aside
            break

    def restore(self) -> None:
        if self.aside is not None:
            try:
                os.replace(self.aside, self.path)
            except OSError:  # the new version stays; the copy is left for a resume to delete
                return
            _unlink_quietly(self.aside)  # two links to one file (the new version was never written): rename keeps both
            self.aside = None
            fsync_dir(self.path.parent)
        elif not self.existed:
            _unlink_quietly(self.path)
            fsync_dir(self.path.parent)

    def discard(self) -> None:
        if self.aside is not None:
            _unlink_quietly(self.aside)  # a copy left behind is deleted by the next resume
            self.aside = None


def make_dir(path: Path, what: str = "creating the folder", parents: bool = False) -> None:
    """mkdir; FileExistsError passes through (the caller says what it means), any other OSError is a WriteError."""
    try:
        Path(path).mkdir(parents=parents)
    except FileExistsError:
        raise
    except OSError as e:
        raise WriteError(path, e, what) from None


def remove(path: Path, what: str = "removing it") -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise WriteError(path, e, what) from None


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files a killed atomic_write left in `folder` (.NAME.tmp-PID); the removed paths."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise WriteError(folder, e, "looking for leftover temporary files") from None
    removed = []
    for name in names:
        if TEMP_PATTERN.fullmatch(name):
            remove(Path(folder) / name, "removing a temporary file left by an interrupted write")
            removed.append(Path(folder) / name)
    return removed


def read_text(path: Path, what: str = "file") -> str:
    """The text of a UTF-8 file; NntrainError (exit 2) naming it if it cannot be read or is not UTF-8."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise NntrainError(
            f"cannot read {what} '{path}': it is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})"
        ) from None
    except OSError as e:
        reason = e.strerror or os.strerror(e.errno or 0) or str(e)
        if e.errno == errno.ENOENT:
            reason = "it does not exist"
        raise NntrainError(f"cannot read {what} '{path}': {reason}") from None
