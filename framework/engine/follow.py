"""Following a film that an engine's workers make: the session's files, which the one
writer of the session keeps up to date, are read a few times a second, and what changed is
told to the lifecycle hooks as a run in this process tells them. ``reelforge run --engine
X`` draws the same bars and prints the same lines as a local run, whatever the engine.

What the files do not say is not invented: a shot's progress inside a backend call is
not recorded, so a followed run shows a shot when it starts (its attempt is counted) and
when it is done or failed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from reelforge.errors import ReelforgeError
from reelforge.store.meta import DONE, FAILED_STATE, SHOT_STAGES, STEPS
from reelforge.store.sessions import SessionStore

#: The steps made once per film, in order; the per-shot stages run side by side between
#: ``shots`` and ``assemble``.
_WHOLE = ("story", "scene_graph", "shots")


class Handed(Protocol):
    """A film handed to an engine's workers (what :meth:`Engine.hand_off` returns)."""

    def running(self) -> bool:
        """True while the workers have the film queued or in hand."""

    def failure(self) -> str | None:
        """Once it is not running: why the workers could not run it, or None if they ran it
        to its end (a film whose shots failed ran to its end: its session says FAILED)."""

    def close(self) -> None:
        """Release the connection to the workers (the film goes on without it)."""


class _ShotView:
    """What the hooks read of a shot whose plan is not readable yet: its number."""

    def __init__(self, shot_id: int):
        self.id, self.description = shot_id, ""


class SessionWatch:
    """Reads a session again on each :meth:`poll` and calls ``hook(name, **kwargs)`` for
    each change since the last one (the first poll says what was already done)."""

    def __init__(self, store: SessionStore, session_id: str, hook: Callable[..., Any]):
        self.store, self.session_id, self.hook = store, session_id, hook
        self._steps: dict[str, str] | None = None
        self._shots: dict[tuple[str, int], tuple[str, int]] = {}
        self._started: set[str] = set()
        self._plan: dict[int, Any] = {}

    def poll(self) -> bool:
        """Read the session and tell what changed; False if it could not be read now (it is
        being written this instant, or not yet there): the next poll reads it."""
        try:
            session = self.store.load(self.session_id)
        except ReelforgeError:
            return False
        meta = session.meta
        first = self._steps is None
        before = self._steps or {}
        if first:
            self.hook("session_started", session=session)
        self._steps = dict(meta.steps)
        if not self._plan and meta.steps.get("shots") == DONE:
            try:
                plan = session.read_step_output("shots")
            except ReelforgeError:
                plan = None
            self._plan = {s.id: s for s in plan.shots} if plan is not None else {}
        for step in _WHOLE:
            self._whole_step(session, step, before.get(step), first)
        for stage in SHOT_STAGES:
            self._shot_stage(session, stage, before.get(stage), first)
        self._whole_step(session, "assemble", before.get("assemble"), first)
        return True

    def _begin(self, session, stage: str) -> None:
        if stage not in self._started:
            self._started.add(stage)
            self.hook("stage_started", session=session, stage=stage)

    def _whole_step(self, session, step: str, was: str | None, first: bool) -> None:
        state = session.meta.steps.get(step)
        if state == was:
            if state not in (DONE, FAILED_STATE) and self._is_next(session, step):
                self._begin(session, step)
            return
        if state == DONE:
            if not first:
                self._begin(session, step)
                self.hook("stage_finished", session=session, stage=step)
        elif state == FAILED_STATE:
            self._begin(session, step)
            error = ReelforgeError(session.meta.last_error or f"{step} failed")
            self.hook("stage_failed", session=session, stage=step, error=error)
        elif self._is_next(session, step):
            self._begin(session, step)

    def _is_next(self, session, step: str) -> bool:
        """The step the workers are at: every step before it is done."""
        steps = session.meta.steps
        order = STEPS[: STEPS.index(step)]
        return all(steps.get(s) == DONE for s in order)

    def _shot_stage(self, session, stage: str, was: str | None, first: bool) -> None:
        meta = session.meta
        for state in meta.shots:
            art = state.artifact(stage)
            key = (stage, state.id)
            seen = self._shots.get(key)
            now = (art.state, art.attempts)
            if seen == now:
                continue
            self._shots[key] = now
            shot = self._plan.get(state.id) or _ShotView(state.id)
            if first:  # what an earlier run left: done is said once, the rest waits for news
                if art.state == DONE:
                    self._begin(session, stage)
                    self.hook("shot_skipped", session=session, stage=stage, shot=shot, reason="done")
                continue
            if art.attempts > (seen[1] if seen else 0) or (art.state == DONE and seen is None):
                self._begin(session, stage)
                self.hook("shot_started", session=session, stage=stage, shot=shot, attempt=max(1, art.attempts))
            if art.state == DONE:
                self.hook("shot_completed", session=session, stage=stage, shot=shot, artifact=art)
            elif art.state == FAILED_STATE:
                self.hook("shot_failed", session=session, stage=stage, shot=shot,
                          error=ReelforgeError(art.last_error or f"{stage} failed"))
        state = meta.steps.get(stage)
        if state == DONE and was != DONE and not first:
            self._begin(session, stage)
            self.hook("stage_finished", session=session, stage=stage)


def follow(handed: Handed, store: SessionStore, session_id: str, hook: Callable[..., Any], *,
           interval: float = 0.25, stop: threading.Event | None = None) -> str | None:
    """Tell the hooks what the workers do to the session until they are done with it;
    returns :meth:`Handed.failure`. Ctrl-C (KeyboardInterrupt) stops the following only:
    the workers go on."""
    watch = SessionWatch(store, session_id, hook)
    stop = stop or threading.Event()
    while True:
        running = handed.running()
        watch.poll()
        if not running:
            return handed.failure()
        stop.wait(interval)
