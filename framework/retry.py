"""The retry policy the runner applies to backend calls (tenacity underneath).

Only :class:`~framework.errors.RetryableServiceError` (and its subclass TransientError) is
retried: exponential backoff with jitter, a cap on attempts and on total time, and a
server's ``Retry-After`` honoured when the error carries one.
"""

from __future__ import annotations

import math
import os

import attrs
import tenacity

from .errors import ConfigError, RetryableServiceError

ATTEMPTS_ENV = "REELFORGE_RETRY_ATTEMPTS"
BACKOFF_ENV = "REELFORGE_RETRY_BACKOFF"
#: More attempts than this is a typo or a loop that never ends (each may wait max_wait).
MAX_ATTEMPTS = 100
#: A first backoff longer than this (it doubles each attempt) is a typo, not a policy.
MAX_BACKOFF = 300.0


def attempts_from_env(default: int = 3) -> int:
    """$REELFORGE_RETRY_ATTEMPTS: a whole number from 1 to 100, else a ConfigError naming it."""
    raw = os.environ.get(ATTEMPTS_ENV)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{ATTEMPTS_ENV} must be a whole number from 1 to {MAX_ATTEMPTS}, "
                          f"got {raw!r}") from None
    if not 1 <= value <= MAX_ATTEMPTS:
        raise ConfigError(f"{ATTEMPTS_ENV} must be from 1 to {MAX_ATTEMPTS}, got {value}")
    return value


def backoff_from_env(default: float) -> float:
    """$REELFORGE_RETRY_BACKOFF: seconds from 0 (no waiting) to 300, else a ConfigError."""
    raw = os.environ.get(BACKOFF_ENV)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{BACKOFF_ENV} must be a number of seconds from 0 to {MAX_BACKOFF:g}, "
                          f"got {raw!r}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_BACKOFF:
        raise ConfigError(f"{BACKOFF_ENV} must be from 0 to {MAX_BACKOFF:g} seconds, got {raw.strip()}")
    return value


@attrs.frozen
class RetryPolicy:
    attempts: int = 3
    "Attempts per call in one run, the first included."
    initial: float = 1.0
    "First backoff in seconds; doubles each time, with jitter. 0 disables waiting (tests)."
    max_wait: float = 30.0
    "Cap on one wait, Retry-After included."
    max_total: float = 600.0
    "Give up once this many seconds have passed since the first attempt."

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """Defaults, overridden by REELFORGE_RETRY_ATTEMPTS and REELFORGE_RETRY_BACKOFF (a
        bad value is a ConfigError naming the variable)."""
        defaults = attrs.fields(cls)
        return cls(attempts=attempts_from_env(defaults.attempts.default),
                   initial=backoff_from_env(defaults.initial.default))

    def _wait(self, state: tenacity.RetryCallState) -> float:
        if self.initial <= 0:
            return 0.0
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.max_wait)
        backoff = tenacity.wait_exponential_jitter(initial=self.initial, max=self.max_wait)
        return backoff(state)

    def retrying(self, **kw) -> tenacity.Retrying:
        """A tenacity.Retrying that retries transient errors and re-raises the last one."""
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RetryableServiceError),
            stop=tenacity.stop_after_attempt(self.attempts) | tenacity.stop_after_delay(self.max_total),
            wait=self._wait,
            reraise=True,
            **kw,
        )
