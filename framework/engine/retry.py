"""Retrying, in one place (tenacity underneath).

- :class:`RetryPolicy` is what the runner applies to a backend call: only
  :class:`~reelforge.errors.RetryableServiceError` (and its subclass TransientError) is
  retried, with exponential backoff and jitter, a cap on attempts and on total time, and a
  server's ``Retry-After`` honoured when the error carries one.
- :func:`deadline_retrying` is the one retry layer a backend keeps inside itself (ComfyUI):
  the same backoff, stopped by an overall deadline rather than a count, so that a server
  that is gone costs a bounded time, and a backend that gives up raises an error the runner
  does not retry again on top.
- :func:`parse_retry_after` reads a ``Retry-After`` for every HTTP client in the project.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import threading
import time
from typing import Any, Callable, Mapping

import attrs
import tenacity

from reelforge.errors import ConfigError, RetryableServiceError

ATTEMPTS_ENV = "REELFORGE_RETRY_ATTEMPTS"
BACKOFF_ENV = "REELFORGE_RETRY_BACKOFF"
#: More attempts than this is a typo or a loop that never ends (each may wait max_wait).
MAX_ATTEMPTS = 100
#: A first backoff longer than this (it doubles each attempt) is a typo, not a policy.
MAX_BACKOFF = 300.0
#: The longest Retry-After believed: a server asking for more is waited for this long, then
#: asked again (the retry policies cap each wait lower still).
MAX_RETRY_AFTER = 300.0


def parse_retry_after(source: Mapping[str, str] | str | None, *, cap: float = MAX_RETRY_AFTER,
                      now: float | None = None) -> float | None:
    """Seconds a server asks us to wait, or None when it asks nothing readable.

    ``source`` is a ``Retry-After`` value, or a headers mapping (any case-insensitive one,
    e.g. httpx's), where OpenAI's ``retry-after-ms`` wins over ``Retry-After``. Both forms of
    RFC 9110 are read: delta-seconds (``120``, decimals accepted) and an HTTP-date (``Wed, 21
    Oct 2015 07:28:00 GMT``, counted from ``now``, default the clock). A date in the past is
    0; a value that is not finite or not readable is None; anything longer is ``cap``."""
    if source is None:
        return None
    if isinstance(source, str):
        value, ms = source, None
    else:
        value, ms = source.get("retry-after"), source.get("retry-after-ms")
    if ms is not None:
        seconds = _number(ms)
        if seconds is not None:
            return min(cap, seconds / 1000.0)
    if value is None:
        return None
    value = value.strip()
    seconds = _number(value)
    if seconds is not None:
        return min(cap, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a date without a zone is taken as such
        import datetime as _dt

        when = when.replace(tzinfo=_dt.timezone.utc)
    left = when.timestamp() - (time.time() if now is None else now)
    return min(cap, max(0.0, left)) if math.isfinite(left) else None


def _number(text: str) -> float | None:
    try:
        seconds = float(str(text).strip())
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


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


def deadline_retrying(*, deadline: float, since: Callable[[], float] | None = None,
                      give_up: Callable[[], bool] = lambda: False,
                      cancelled: threading.Event | None = None, initial: float | None = None,
                      max_wait: float = 5.0, attempts: int = MAX_ATTEMPTS,
                      retry_if: Callable[[BaseException], bool] | None = None,
                      before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
                      ) -> tenacity.Retrying:
    """The one retry layer inside a backend: RetryableServiceError (or what ``retry_if``
    accepts) is retried with
    exponential backoff and jitter (``initial`` seconds first, default
    $REELFORGE_RETRY_BACKOFF or 0.25; at most ``max_wait`` a wait, a server's Retry-After
    included) until ``deadline`` seconds have passed since ``since()`` (a monotonic time;
    default: the first attempt), or ``give_up()`` says so, or ``attempts`` were made. A wait
    never runs past the deadline, and it ends at once when ``cancelled`` is set. The last
    error is re-raised as it is: the caller turns it into a final one."""
    first = initial if initial is not None else backoff_from_env(0.25)

    def backoff(state: tenacity.RetryCallState) -> float:
        # doubling from ``first``, jitter of up to ``first`` (tenacity's own jitter is a second)
        return min(max_wait, first * 2 ** min(30, state.attempt_number - 1) + random.uniform(0, first))


    def start(state: tenacity.RetryCallState) -> float:
        return since() if since is not None else state.start_time

    def left(state: tenacity.RetryCallState) -> float:
        return deadline - (time.monotonic() - start(state))

    def stop(state: tenacity.RetryCallState) -> bool:
        return (state.attempt_number >= attempts or left(state) <= 0 or give_up()
                or (cancelled is not None and cancelled.is_set()))

    def wait(state: tenacity.RetryCallState) -> float:
        if first <= 0:
            return 0.0
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        seconds = min(float(retry_after), max_wait) if retry_after is not None else backoff(state)
        return max(0.0, min(seconds, left(state)))

    def sleep(seconds: float) -> None:
        if cancelled is not None:
            cancelled.wait(seconds)
        elif seconds > 0:
            time.sleep(seconds)

    kw: dict[str, Any] = {"before_sleep": before_sleep} if before_sleep is not None else {}
    retry = (tenacity.retry_if_exception(retry_if) if retry_if is not None
             else tenacity.retry_if_exception_type(RetryableServiceError))
    return tenacity.Retrying(retry=retry, stop=stop, wait=wait, sleep=sleep, reraise=True, **kw)
