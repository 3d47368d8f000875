"""The retry policy the runner applies to backend calls (tenacity underneath).

Only :class:`~framework.errors.RetryableServiceError` (and its subclass TransientError) is
retried: exponential backoff with jitter, a cap on attempts and on total time, and a
server's ``Retry-After`` honoured when the error carries one.
"""

from __future__ import annotations

import os

import attrs
import tenacity

from .errors import RetryableServiceError


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
        """Defaults, overridden by REELFORGE_RETRY_ATTEMPTS and REELFORGE_RETRY_BACKOFF."""
        kw = {}
        if "REELFORGE_RETRY_ATTEMPTS" in os.environ:
            kw["attempts"] = max(1, int(os.environ["REELFORGE_RETRY_ATTEMPTS"]))
        if "REELFORGE_RETRY_BACKOFF" in os.environ:
            kw["initial"] = max(0.0, float(os.environ["REELFORGE_RETRY_BACKOFF"]))
        return cls(**kw)

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
