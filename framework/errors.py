"""Errors reelforge raises. One base class; catch ReelforgeError to catch them all."""

from __future__ import annotations

import errno as _errno


class ReelforgeError(Exception):
    """Base class of every error reelforge raises on purpose."""


class ConfigError(ReelforgeError):
    """Bad user input: an unknown backend, a bad option, a malformed template."""


class SessionError(ReelforgeError):
    """A session cannot be found, opened or used."""


class SessionIdError(SessionError):
    """A session id given by the user names no session, or several, or is not an id: a usage
    error (the command line exits 2)."""


class SessionNotFoundError(SessionIdError):
    """No session with that id exists in the output folder."""


class SessionLockedError(SessionError):
    """Another runner holds the session's lock."""


class SessionCorruptError(SessionError):
    """A session file is unreadable. Nothing is overwritten when this is raised."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path} is unreadable: {reason}. Nothing was overwritten; "
            f"repair or remove that file, then run again."
        )


class StageError(ReelforgeError):
    """A stage or a shot failed for good (after any retries)."""


class ServiceError(StageError):
    """A remote service (LLM server, ComfyUI) answered with an error.

    ``status_code`` is the HTTP status when there was one; the message carries the
    service's own words.
    """

    def __init__(self, message: str, *, status_code: int | None = None, url: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.url = url


class RetryableServiceError(ServiceError):
    """A transient failure: connection refused/reset, timeout, 408, 429, 5xx.

    The runner retries these with backoff; ``retry_after`` (seconds) is honoured when set.
    """

    def __init__(self, message: str, *, status_code: int | None = None, url: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, status_code=status_code, url=url)
        self.retry_after = retry_after


class TransientError(RetryableServiceError):
    """A retryable failure that did not come from a remote service (e.g. a flaky local tool)."""


class StorageError(ReelforgeError):
    """A session's folder could not be written or read: the disk is full, the file system
    is read-only, a file is in the way. Everything committed before it is kept.

    ``errno`` says which (``errno.ENOSPC`` ...) when known: a tool that reports a full disk
    in its own words (ffmpeg) raises this with it, so the run stops on the first one
    instead of failing every shot in turn."""

    def __init__(self, message: str, *, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


#: OS error numbers that no retry or other shot can get past: the run stops at the first.
FATAL_STORAGE_ERRNOS = frozenset(filter(None, (_errno.ENOSPC, getattr(_errno, "EDQUOT", None), _errno.EROFS)))

#: What ffmpeg (and other tools) print for those, as strerror() words them.
_STORAGE_WORDS = {_errno.ENOSPC: "No space left on device", _errno.EROFS: "Read-only file system",
                  **({_errno.EDQUOT: "Disk quota exceeded"} if hasattr(_errno, "EDQUOT") else {})}


def storage_errno_in(text: str) -> int | None:
    """The fatal storage error a tool's own output reports (``... No space left on device``)."""
    for number, words in _STORAGE_WORDS.items():
        if words.lower() in text.lower():
            return number
    return None


def storage_cause(exc: BaseException | None) -> StorageError | OSError | None:
    """The StorageError, or OSError with a fatal storage errno, that ``exc`` is or was caused by
    (a backend may wrap an OSError in its own error), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageError) or (isinstance(exc, OSError) and exc.errno in FATAL_STORAGE_ERRNOS):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def storage_message(exc: StorageError | OSError, folder, session_id: str) -> str:
    """The one line a run that cannot write its session ends with: what is wrong, the folder
    it concerns (never a temporary file's name) and what to do next."""
    then = f"then `reelforge resume {session_id}`"
    number = exc.errno
    if number == _errno.ENOSPC:
        return f"disk full writing to {folder}: free space, {then}"
    if number == getattr(_errno, "EDQUOT", None):
        return f"disk quota used up writing to {folder}: free space or raise the quota, {then}"
    if number == _errno.EROFS:
        return f"{folder} is on a read-only file system: make it writable, {then}"
    if number in (_errno.EACCES, _errno.EPERM) and isinstance(exc, OSError):
        where = _folder_of(exc.filename) or folder
        return f"no permission to write to {where}: fix its permissions (or run as its owner), {then}"
    what = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
    return f"{what}. Everything finished before this is saved; fix it, {then}"


def _is_scratch_name(name: str) -> bool:
    """A temporary file of an atomic write (``.meta.json.<pid>.<thread>.<n>.tmp``) or a
    partial render: its name means nothing to the user, its folder does."""
    return name.endswith((".tmp", ".partial.mp4")) or ".partial." in name


def _folder_of(filename) -> str | None:
    if filename is None:
        return None
    import os

    name = os.fsdecode(filename) if isinstance(filename, (bytes, os.PathLike)) else str(filename)
    return os.path.dirname(name) or "."


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError, naming the file (or, for a temporary file, its folder):
    ``No space left on device: output/...``."""
    import errno
    import os

    what = exc.strerror or str(exc)
    name = exc.filename if exc.filename is not None else None
    if isinstance(name, (str, bytes, os.PathLike)) and _is_scratch_name(os.path.basename(os.fsdecode(name))):
        name = _folder_of(name)
    hint = {
        errno.ENOSPC: "the disk is full; free some space",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only; choose another --output-dir",
        errno.EACCES: "permission denied; choose another --output-dir or fix the permissions",
        errno.EPERM: "operation not permitted; choose another --output-dir",
        errno.ENOTDIR: "a file is in the way where a folder should be",
        errno.EEXIST: "a file is in the way where a folder should be",
        errno.EISDIR: "a folder is in the way where a file should be",
    }.get(exc.errno or -1)
    text = f"{what}: {name}" if name else what
    return f"{text} ({hint})" if hint else text
