"""File operations that stay inside a session folder: atomic writes, durable renames, and
checks that no write, move or truncate follows a symbolic link out of the folder.

A session folder may come from somewhere else (copied, shared, unpacked), so everything in
it is treated as untrusted: a stored path must be relative and free of ``..``, and no
folder or file reelforge writes through may be a link. Files are opened with O_NOFOLLOW
where the platform has it, so a link swapped in after the check still fails.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Callable

from reelforge.errors import SessionCorruptError

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_BINARY = getattr(os, "O_BINARY", 0)

_sigint_depth = 0
_sigint_pending = False


def _note_sigint(signum, frame) -> None:
    global _sigint_pending
    _sigint_pending = True


def uninterruptible(fn):
    """Run ``fn`` with Ctrl-C held back until it returns (main thread only; other threads
    never see KeyboardInterrupt). A session write cut in half by KeyboardInterrupt, e.g. a
    journal line written but not yet applied in memory, would be lost by the next
    snapshot: the interrupt is delivered right after the write instead."""

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        global _sigint_depth, _sigint_pending
        if threading.current_thread() is not threading.main_thread():
            return fn(*args, **kwargs)
        previous = None
        if _sigint_depth == 0:
            try:
                previous = signal.signal(signal.SIGINT, _note_sigint)
            except ValueError:  # not the main interpreter: signals cannot be set here
                previous = None
        _sigint_depth += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _sigint_depth -= 1
            if _sigint_depth == 0 and previous is not None:
                signal.signal(signal.SIGINT, previous)
                if _sigint_pending:
                    _sigint_pending = False
                    if callable(previous):
                        previous(signal.SIGINT, None)
                    elif previous == signal.SIG_DFL:
                        raise KeyboardInterrupt

    return guarded


_tmp_counter = iter(range(1, 1 << 62))
_tmp_lock = threading.Lock()


def _unique_suffix() -> str:
    with _tmp_lock:
        n = next(_tmp_counter)
    return f"{os.getpid()}.{threading.get_ident()}.{n}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def refuse_link(path: Path, what: str = "path") -> None:
    """Raise SessionCorruptError if ``path`` is a symbolic link (it may be missing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise SessionCorruptError(path, f"the {what} is a symbolic link; reelforge does not "
                                        f"write through links in a session folder")


def ensure_dir(root: Path, *parts: str) -> Path:
    """``root/parts...`` as a real folder, created as needed; no component may be a link or
    a file. ``root`` itself must exist and not be a link."""
    path = root
    refuse_link(path, "session folder")
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\\" in part:
            raise SessionCorruptError(root / part, "not a plain folder name")
        path = path / part
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise SessionCorruptError(path, "the folder is a symbolic link; reelforge does not "
                                            "write through links in a session folder")
        if not stat.S_ISDIR(st.st_mode):
            raise SessionCorruptError(path, "expected a folder, found a file")
    return path


def file_identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a file apart from its next version (from its ``lstat``): a rewrite renames
    a new file (inode) into place; an edit in place changes its size or times."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def contained(root: Path, rel: str | None, *, under: tuple[str, ...] | None = None,
              source: Path | None = None, checked: set[str] | None = None) -> Path:
    """The path ``rel`` (as stored in a session file) inside ``root``, checked as
    :func:`check_contained` checks it."""
    check_contained(root, rel, under=under, source=source, checked=checked)
    return root / rel  # type: ignore[operator]


def check_contained(root: Path, rel: str | None, *, under: tuple[str, ...] | None = None,
                    source: Path | None = None, checked: set[str] | None = None) -> None:
    """Check the path ``rel`` (as stored in a session file) stays inside ``root``.

    ``rel`` must be relative, POSIX-style, free of ``..`` and empty parts, and (with
    ``under``) start with one of those folder names. No existing folder on the way may be a
    link (the file itself may be one: the caller treats that as a damaged artifact, never
    follows it). Anything else is a SessionCorruptError naming ``source`` (the file the
    path was read from). ``checked`` remembers folders already found sound, so checking
    thousands of paths costs one lstat per folder, not per path."""
    where = source or root
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        raise SessionCorruptError(where, f"stored path {rel!r} is not a relative path")
    parts = rel.split("/")
    if rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise SessionCorruptError(where, f"stored path {rel!r} points outside the session folder")
    if under is not None and parts[0] not in under:
        raise SessionCorruptError(where, f"stored path {rel!r} is not under {' or '.join(under)}")
    base = os.fspath(root)
    if checked is not None and len(parts) > 1 and rel.rpartition("/")[0] in checked:
        return  # every folder on the way was found sound already
    for i in range(1, len(parts)):
        folder = "/".join(parts[:i])
        if checked is not None and folder in checked:
            continue
        try:
            st = os.lstat(os.path.join(base, folder))
        except FileNotFoundError:
            break
        except NotADirectoryError:
            raise SessionCorruptError(where, f"stored path {rel!r} runs through a file") from None
        if stat.S_ISLNK(st.st_mode):
            raise SessionCorruptError(where, f"stored path {rel!r} runs through a symbolic link "
                                             f"({os.path.join(base, folder)})")
        if not stat.S_ISDIR(st.st_mode):
            raise SessionCorruptError(where, f"stored path {rel!r} runs through a file")
        if checked is not None:
            checked.add(folder)


#: Checks run before every write to a session's records (meta, journal, step files): an
#: engine whose right to write can lapse (a worker's lease) installs one that stops the
#: process before a write it may no longer make. Each is called with no arguments.
WRITE_GUARDS: list[Callable[[], None]] = []


def may_write() -> None:
    """Run the write guards (nothing is installed for a run in one process)."""
    for guard in WRITE_GUARDS:
        guard()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file.
    The temporary file is created exclusively and never through a link; it is removed if
    anything fails. ``path`` itself, if it is a link, is replaced, never followed."""
    may_write()
    tmp = path.with_name(f".{path.name}.{_unique_suffix()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_BINARY, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open that refuses to follow a link at ``path`` (with a clear error)."""
    try:
        return os.open(path, flags | O_NOFOLLOW | O_BINARY, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SessionCorruptError(path, "the file is a symbolic link; reelforge does not "
                                            "write through links in a session folder") from None
        raise


def fsync_file(path: Path) -> None:
    fd = open_nofollow(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    fd = open_nofollow(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def move_aside(path: Path, stamp: str | None = None) -> Path:
    """Move ``path`` (a file or a link, never followed) into ``.replaced/`` beside it, under
    a name that does not exist yet (``<stem>.<time>.<pid><suffix>``). Nothing is deleted."""
    if stamp is None:
        stamp = f"{time.strftime('%Y%m%d_%H%M%S')}.{os.getpid()}"
    dest_dir = ensure_dir(path.parent, ".replaced")
    base = f"{path.stem}.{stamp}"
    for n in range(1, 10000):
        dest = dest_dir / (f"{base}{path.suffix}" if n == 1 else f"{base}_{n}{path.suffix}")
        if not os.path.lexists(dest):
            break
    os.replace(path, dest)
    fsync_dir(dest_dir)
    return dest
