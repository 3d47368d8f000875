"""One shot's life on the servers, across attempts: the retry policy whose deadline is
server_grace_s, reattaching or submitting on each attempt, moving off a server that is down
or hung, and the ServerGone that ends a shot no server answered.

A server that restarts forgets its queue: a prompt it lost is submitted again, a bounded
number of times (submit.py decides what an attempt sends; watch.py how it waits).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelforge.engine.retry import backoff_from_env, deadline_retrying
from reelforge.errors import RetryableServiceError, StageError
from reelforge.plugins.comfy_render.errors import (
    ComfyError,
    PromptInterrupted,
    PromptLost,
    PromptTimeout,
    ServerDown,
    ServerGone,
    advice_for,
)
from reelforge.plugins.comfy_render.pool import normalise_url
from reelforge.plugins.comfy_render.submit import reattach, submit_new
from reelforge.protocols import ShotJob
from reelforge.records import Shot
from reelforge.redact import redact

if TYPE_CHECKING:
    from reelforge.plugins.comfy_render.backend import ComfyBackend

log = logging.getLogger("reelforge.comfyui")


def server_trouble(exc: BaseException) -> bool:
    """Worth another try inside the backend: no answer, a transient status, a timeout. Not a
    prompt someone interrupted, nor one that ran past timeout_s: those go to the runner,
    whose retry makes a new attempt (a new prompt id) or looks the prompt up again."""
    return isinstance(exc, RetryableServiceError) and not isinstance(exc, (PromptInterrupted,
                                                                         PromptTimeout))


class ShotRun:
    """One shot's dealings with the servers, across the attempts of ComfyBackend.run."""

    def __init__(self, backend: ComfyBackend, shot: Shot, job: ShotJob, image: Path | None, started: float):
        self.backend = backend
        self.shot = shot
        self.job = job
        self.image = image
        "The shot's still (the renderer's input), or None for the image generator."
        self.started = started
        self.last_ok = started
        "When a server last answered for this shot: the deadline (server_grace_s) counts from it."
        self.hop = 0
        self.lost = 0
        self.tried: set[str] = set()
        "Servers this shot moved off."
        self.abandoned: set[str] = set()
        "Prompt ids not to reattach to (lost, failed, changed, or on a server moved off)."
        self.url: str | None = None
        "The server of the current attempt, once one is chosen."
        self.wait_started: dict[str, float] = {}
        "When waiting for each prompt began: timeout_s counts from it across attempts."
        self.finished: dict[str, dict[str, Any]] = {}
        """Prompts the event socket said succeeded, as history-shaped entries (their outputs
        from the executed events): a server that restarts before we read its /history forgets
        them, but keeps their files, so they are fetched rather than run again."""

    def run(self) -> Path:
        """The shot's result, or the error that ends it: ServerGone when no server answered
        within server_grace_s, a ComfyError for good, a StageError when cancelled."""
        backend, shot, job = self.backend, self.shot, self.job
        o = backend.options
        grace = o.server_grace_s
        first = max(backoff_from_env(0.25), min(o.poll_interval_s, 0.25))
        retrying = deadline_retrying(
            deadline=grace, since=lambda: self.last_ok, cancelled=job.cancelled, retry_if=server_trouble,
            # every server down for longer than the deadline: the shots after the first fail at once
            give_up=lambda: (backend.pool.all_down_for() or 0.0) >= grace,
            initial=first, max_wait=max(first, min(5.0, grace / 4)))
        try:
            for attempt in retrying:
                with attempt:
                    return self.attempt()
        except RetryableServiceError as exc:
            if job.cancelled.is_set():
                raise StageError(f"shot {shot.id}: cancelled while waiting for a ComfyUI server") from None
            if not server_trouble(exc):
                raise
            raise self.gone(exc, grace) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def gone(self, exc: RetryableServiceError, grace: float) -> ServerGone:
        """The final error of a shot no server answered: the seconds it waited (counted from
        the last answer it had, as the deadline is), the grace in force, what to do; and, as
        its ``cause``, the words every shot failed by the same outage shares."""
        pool, shot, job = self.backend.pool, self.shot, self.job
        waited = time.monotonic() - self.last_ok
        down_for = pool.all_down_for()
        urls = [self.url] if self.url else [u for u in self.backend.urls if pool.was_down(u)]
        cause = "; ".join(c for u in urls if (c := pool.down_cause(u))) or None
        reason = next((pool.down_reason(u) for u in urls if pool.was_down(u)), "")
        advice = (exc.advice if isinstance(exc, ServerDown) else
                  advice_for(reason) if reason else "Check the server")
        resume = f"`reelforge resume {job.session_id}`"
        if down_for is not None and waited < grace <= down_for:
            said = (f"gave up on shot {shot.id} at once: every server has been down for "
                    f"{down_for:.0f}s, longer than server_grace_s={grace:g}")
        else:
            said = (f"gave up on shot {shot.id} after {waited:.0f}s without an answer "
                    f"(server_grace_s={grace:g})")
        error = ServerGone(redact(f"{exc}; {said}. {advice}, then {resume}"),
                           status_code=exc.status_code, url=exc.url)
        if cause:
            error.cause = redact(f"{cause}. {advice}, then {resume}")
        return error

    def heard(self, url: str) -> None:
        """A server answered for this shot: the deadline counts from now, and it is up."""
        self.last_ok = time.monotonic()
        self.backend.pool.mark_up(url)

    def attempt(self) -> Path:
        """Reattach to the recorded prompt, or pick a server and submit; what fails is
        either raised for the retry policy or final."""
        shot, job = self.shot, self.job
        self.url = None
        try:
            cp = dict(job.checkpoint or {})
            if cp.get("prompt_id") and cp.get("server") and str(cp["prompt_id"]) not in self.abandoned:
                done = reattach(self, cp)
                if done is not None:
                    return done
            while True:
                try:
                    return submit_new(self)
                except PromptLost as lost:
                    # The server forgot the prompt (restart): submit it again, a bounded number of times.
                    self.abandoned.add(str(lost))
                    self.lost += 1
                    log.info("shot %s: %s no longer knows prompt %s; submitting again", shot.id, self.url, lost)
                    if self.lost > 3:
                        raise ComfyError(f"ComfyUI at {self.url} keeps losing shot {shot.id}'s prompt "
                                         f"(is it restarting over and over?)", url=self.url) from None
        except RetryableServiceError as exc:
            if server_trouble(exc):
                self.trouble(exc)
            raise

    def trouble(self, exc: RetryableServiceError) -> None:
        """A server failed this shot: mark it down if it does not answer at all; move the
        shot off it (abandoning its prompt there) when another server is up and this one
        refused the connection or has not answered for server_grace_s."""
        backend, job = self.backend, self.job
        url = self.url
        if url is None:
            return  # no server was chosen (none answers): the policy waits
        if isinstance(exc, ServerDown):
            backend.pool.mark_down(url, exc.reason, grace=backend.options.server_grace_s)
        silent = time.monotonic() - self.last_ok
        if (isinstance(exc, ServerDown) or silent >= backend.options.server_grace_s) \
                and backend.pool.any_other_up(url, self.tried):
            self.tried.add(url)
            cp = job.checkpoint or {}
            if cp.get("prompt_id") and normalise_url(str(cp.get("server") or "")) == url:
                self.abandoned.add(str(cp["prompt_id"]))
            self.last_ok = time.monotonic()  # a fresh deadline on the next server
            log.info("shot %s: moving off %s (%s)", job.shot.id, url, exc)
