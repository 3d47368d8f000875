"""Errors reelforge raises. One base class; catch ReelforgeError to catch them all."""

from __future__ import annotations


class ReelforgeError(Exception):
    """Base class of every error reelforge raises on purpose."""


class ConfigError(ReelforgeError):
    """Bad user input: an unknown backend, a bad option, a malformed template."""


class SessionError(ReelforgeError):
    """A session cannot be found, opened or used."""


class SessionNotFoundError(SessionError):
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
    is read-only, a file is in the way. Everything committed before it is kept."""


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError, naming the file: ``No space left on device: output/...``."""
    import errno

    what = exc.strerror or str(exc)
    name = exc.filename if exc.filename is not None else None
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
