"""The per-shot stages of a run as units of work (one shot stage for one shot): each is
checked against its fingerprint, run through its backend with retries, and committed
through the store. :class:`ShotRun` hands them to the engine as they become ready."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import attrs

from reelforge.engine import continuity, fingerprints
from reelforge.engine.base import Attempt, Engine, Task, Unit
from reelforge.engine.calls import BackendCall, call_for, run_backend
from reelforge.engine.cast import references_for_backend
from reelforge.errors import ReelforgeError, SessionError, StageError, storage_cause
from reelforge.media import checks as media
from reelforge.protocols import ShotJob
from reelforge.records import Shot, ShotPlan
from reelforge.redact import redact
from reelforge.store.meta import DONE, TODO
from reelforge.store.session import Session

if TYPE_CHECKING:
    from reelforge.engine.runner import Runner


@attrs.frozen
class ShotStage:
    """A per-shot stage: the backend kind that serves it and the stages it needs first."""

    name: str
    "Stage name: also the folder of its files and the key in the meta's steps."
    kind: str
    "Backend kind (story/image/video/narration)."
    needs: tuple[str, ...] = ()
    "Stages that must be done for a shot before this one starts for it."


SHOT_PIPELINE = (
    ShotStage("images", "image"),
    ShotStage("narration", "narration"),
    ShotStage("videos", "video", needs=("images", "narration")),
)
#: Which backend kind serves each per-shot stage.
STAGE_KIND = {spec.name: spec.kind for spec in SHOT_PIPELINE}


def gated_stages(meta) -> set[str]:
    """The stages held back for review: the clips, while a ``--review images`` session is not approved."""
    return {"videos"} if meta.review == "images" and not meta.approved else set()


def average_seconds(session: Session, stage: str) -> float | None:
    """Average backend seconds of this stage's done shots in the session, if any."""
    values = [st.artifact(stage).backend_seconds or st.artifact(stage).seconds
              for st in session.meta.shots if st.artifact(stage).state == DONE]
    values = [v for v in values if v]
    return sum(values) / len(values) if values else None


@attrs.define
class ShotsOutcome:
    failures: list[str] = attrs.Factory(list)
    causes: list[tuple[str, int, str, str]] = attrs.Factory(list)
    "(stage, shot id, cause, failure line) per failure: what engine.failures.group_failures groups."
    held: set[str] = attrs.Factory(set)
    "Stages held back for review."
    over_budget: set[tuple[str, int]] = attrs.Factory(set)
    "(stage, shot) not started because the budget would be exceeded."
    spent: float = 0.0
    "Backend seconds spent in this run."


def check_shot(session: Session, stage: str, shot: Shot, fp: str) -> str | None:
    """'done', 'adopted' or 'take' if the shot needs no work for ``stage``, else None.

    A done shot whose file is missing or damaged (size, mtime, then digest) is reset, its
    file kept aside under .replaced/; one made from other inputs is kept as a take
    (``<stage>/takes/``). A take made from exactly these inputs is brought back instead
    of making the shot again ('take'). A file in the stage folder that no done record
    vouches for is moved aside, never adopted: nothing proves which inputs made it.
    'adopted' means a commit a crash cut short (the done record was journalled, the
    rename was not) was finished now."""
    reason, problem = session.check_shot(stage, shot.id)
    art = session.shot_state(shot.id).artifact(stage)
    if reason is not None and art.fingerprint == fp:
        return reason
    if reason is not None:  # sound, but made from other inputs: kept as a take
        session.keep_as_take(stage, shot.id, "redo: inputs changed")  # with the inputs its record holds
    elif problem is not None:
        path = session.path / art.path
        if os.path.lexists(path):
            media.set_aside(path)
        session.reset_shot(stage, shot.id, f"redo: {problem}")
    session.set_aside_strays(stage, shot.id)
    art = session.shot_state(shot.id).artifact(stage)
    for take in reversed(art.takes):  # the newest matching take the user did not reject
        if take.get("fingerprint") == fp and not take.get("rejected"):
            try:
                session.use_take(stage, shot.id, take["n"])
            except SessionError:
                continue  # that take's file is gone or damaged: look further, else redo
            return "take"
    return None


def commit_shot(session: Session, stage: str, shot: Shot, backend, produced: Path, seconds: float,
                fp: str, spent: float | None = None, note: Callable[[str], None] | None = None):
    """Check what a backend produced, then commit it. It must be a regular file (not a
    link) in the session's scratch folder, and a valid file of its kind. Committing the
    same file twice records it once (the store's commit is keyed by stage and shot)."""
    produced = Path(produced)
    if not produced.is_absolute():
        produced = Path.cwd() / produced
    work = (session.path / ".work").resolve()
    try:
        inside = produced.parent.resolve().is_relative_to(work)
    except OSError:
        inside = False
    if not inside:
        raise StageError(f"{backend.name} returned {produced}, outside the session's scratch "
                         f"folder {session.path / '.work'}")
    produced = session.path / ".work" / produced.parent.resolve().relative_to(work) / produced.name
    try:
        st = os.lstat(produced)
    except FileNotFoundError:
        raise StageError(f"{backend.name} returned {produced}, which does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise StageError(f"{backend.name} returned {produced}, which is not a regular file")
    if not media.looks_valid(stage, produced):
        raise StageError(f"{backend.name} produced {produced.name}, which is not a valid "
                         f"{media.KIND_LABEL[stage]} file")
    info = media.facts(stage, produced)
    before = {t["n"] for t in session.shot_state(shot.id).artifact(stage).takes}
    art = session.mark_shot_done(stage, shot.id, produced, backend=backend.name,
                                 seed=shot.seed, seconds=seconds, fingerprint=fp, info=info,
                                 spent=spent, inputs=fingerprints.inputs_of(stage, shot, backend))
    same = sorted(before - {t["n"] for t in art.takes})
    if same and note is not None:
        what = {"images": "image", "narration": "voice", "videos": "clip"}[stage]
        note(f"shot {shot.id}: {backend.name} made the same {what} as take {', '.join(map(str, same))} "
             f"(byte for byte); it is kept once, as the shot's {what}, not as a take too")
    return art


class ShotRun:
    """The per-shot work of one run, as the engine sees it (reelforge.engine.base.ShotWork):
    a stage starts for a shot as soon as the stages it needs are settled *in this run* for
    that shot (images and narration at once; a clip when both are settled)."""

    def __init__(self, runner: Runner, session: Session, plan: ShotPlan, backends: dict[str, Any],
                 engine: Engine | None = None):
        self.runner, self.session = runner, session
        self.engine = engine
        "Where each backend call runs (Engine.perform); None: here."
        self.cancel: threading.Event = runner.cancel
        self.outcome = ShotsOutcome()
        self.shots = {shot.id: shot for shot in plan.shots}
        self.backend_of = {spec.name: backends[spec.kind] for spec in SHOT_PIPELINE if spec.kind in backends}
        self.active = set(self.backend_of)
        self.specs = [spec for spec in SHOT_PIPELINE if spec.name in self.active]
        self.needs = {spec.name: tuple(d for d in spec.needs if d in self.active) for spec in self.specs}
        self.follows: dict[int, int] = (continuity.previous_in_scene(plan) if "videos" in self.active and
                                        continuity.mode_of(session.meta) == continuity.LAST_FRAME else {})
        "Shot -> the shot whose clip's last frame its clip starts from (``--continuity last-frame``)."
        self._followed_by = {prev: nxt for nxt, prev in self.follows.items()}
        self.gated = gated_stages(session.meta)
        self.film_look = fingerprints.film_look(session)
        "The film's look (its story's style): each shot without one of its own is made with it."
        self._ready: list[Unit] = []
        self._handed: set[Unit] = set()
        self._settled: set[Unit] = set()
        self._started_stage: set[str] = set()
        self._fp: dict[Unit, str] = {}
        self.spent: dict[tuple[str, int], float] = {}
        self._estimates = ({name: average_seconds(session, name) for name in self.active}
                           if runner.budget else {})
        self._in_flight = 0.0

        # New work first, so a resume of a big session reaches the backends at once;
        # checking the shots already done (and redoing any that fail the check) follows.
        def order(shot: Shot) -> tuple[bool, ...]:
            st = session.shot_state(shot.id)
            return tuple(st.artifact(spec.name).state == DONE for spec in self.specs)

        roots = [spec.name for spec in self.specs if not self.needs[spec.name]]
        self._ready = [Unit(stage, shot.id) for shot in sorted(plan.shots, key=order) for stage in roots]

    # -- before the engine starts ----------------------------------------------------
    def preflight(self) -> None:
        """A backend with shots left is checked before any shot starts (so a refusal leaves
        the runner as it was); the others before their first shot (a done shot whose file
        must be redone)."""
        for spec in self.specs:
            if spec.name not in self.gated and any(
                    self.session.shot_state(s).artifact(spec.name).state != DONE for s in self.shots):
                self.runner.preflight.kind(spec.kind)

    # -- the engine's side (reelforge.engine.base.ShotWork) -------------------------------
    def slots(self, stage: str) -> int:
        return max(1, int(getattr(self.backend_of[stage].instance, "concurrency", 1)))

    def take_ready(self) -> list[Unit]:
        ready, self._ready = self._ready, []
        return ready

    def begin(self, unit: Unit) -> Task | None:
        if unit in self._handed:
            return None
        stage, shot = unit.stage, self.shots[unit.shot_id]
        if stage in self.gated:
            self.outcome.held.add(stage)
            return None
        self._handed.add(unit)
        backend = self.backend_of[stage]
        follows = self.follows.get(shot.id) if stage == "videos" else None
        fp = fingerprints.of_shot_stage(self.session, stage, shot, backend, self.active, self.film_look, follows)
        self._begin_stage(stage)
        reason = check_shot(self.session, stage, shot, fp)
        if reason is not None:
            self.runner.hook("shot_skipped", session=self.session, stage=stage, shot=shot, reason=reason)
            self._settle(unit)
            return None
        if not self._within_budget(stage):
            self.outcome.over_budget.add((stage, shot.id))
            return None
        self.runner.preflight.kind(STAGE_KIND[stage])  # before this backend's first shot of the run
        self._fp[unit] = fp
        effective = fingerprints.effective_shot(self.session, stage, shot, self.active, self.film_look)
        if follows is not None:  # the last frame of the clip before, extracted in the task's thread
            return lambda: self._attempt(stage, effective, backend, continuity.start_frame(
                self.session, follows, shot.id, self.cancel))
        image = self.session.path / self.session.shot_state(shot.id).image.path if stage == "videos" else None
        return lambda: self._attempt(stage, effective, backend, image)

    def finish(self, unit: Unit, result: Any = None, error: BaseException | None = None) -> None:
        stage, shot = unit.stage, self.shots[unit.shot_id]
        self._in_flight = max(0.0, self._in_flight - (self._estimates.get(stage) or 0.0))
        self.outcome.spent += self.spent.get((stage, shot.id), 0.0)
        if error is not None:
            if storage_cause(error) is not None:
                raise error  # a full disk fails every shot alike: stop, say it once
            self._failed(stage, shot, error)
            return
        produced, seconds = result
        try:
            artifact = commit_shot(self.session, stage, shot, self.backend_of[stage], produced, seconds,
                                   self._fp[unit], self.spent.pop((stage, shot.id), None), self.runner.note)
        except StageError as exc:  # what it produced is not usable
            self._failed(stage, shot, exc)
            return
        # Anything else (an OSError: disk full, read-only; a SessionError: a link in the
        # session folder) means the session cannot be written: it propagates and stops the run.
        self.runner.hook("shot_completed", session=self.session, stage=stage, shot=shot, artifact=artifact)
        self._settle(unit)

    def salvage(self, unit: Unit, result: Any) -> None:
        produced, seconds = result
        commit_shot(self.session, unit.stage, self.shots[unit.shot_id], self.backend_of[unit.stage],
                    produced, seconds, self._fp[unit], self.spent.pop((unit.stage, unit.shot_id), None),
                    self.runner.note)

    # -- after the engine is done ----------------------------------------------------------
    def settle_stages(self) -> None:
        """Mark each stage done, todo (stopped at the budget) or failed."""
        session, outcome = self.session, self.outcome
        for spec in self.specs:
            stage = spec.name
            if stage in self.gated:
                continue
            self._begin_stage(stage)
            done_count, total = session.meta.counts(stage)
            if done_count == total:
                session.mark_step(stage, DONE)
                self.runner.hook("stage_finished", session=session, stage=stage)
            elif any(s == stage for s, _ in outcome.over_budget) and not any(
                    f.endswith(f"({stage}): ") for f in outcome.failures):
                session.mark_step(stage, TODO)
            else:
                err = StageError(f"{stage}: {total - done_count} of {total} shot(s) not done")
                session.mark_step(stage, "failed", error=str(err))
                self.runner.hook("stage_failed", session=session, stage=stage, error=err)

    # -- inside ----------------------------------------------------------------------------
    def _attempt(self, stage: str, shot: Shot, backend, image: Path | None) -> tuple[Path, float]:
        """Run one shot through ``backend`` with retries; returns (produced file, seconds).
        Runs in a worker thread. ``spent[(stage, shot)]`` adds up the time of every attempt.
        The attempt number comes from the store's record, so a unit run again after a crash
        is the same attempt (and reattaches to the same render)."""
        session = self.session
        work_dir = session.work_dir(stage, shot.id)
        art = session.shot_state(shot.id).artifact(stage)
        key = (stage, shot.id)

        refs = references_for_backend(session, shot, backend) if stage == "images" else ()

        def once() -> tuple[Path, float]:
            n = session.mark_shot_started(stage, shot.id)
            job = ShotJob(
                session_id=session.id, stage=stage, shot=shot, attempt=n, work_dir=work_dir,
                checkpoint=dict(art.checkpoint), cancelled=self.cancel, references=refs,
                film_overlap_s=fingerprints.film_overlap(session) if stage == "videos" else 0.0,
                save=lambda data: session.save_shot_checkpoint(stage, shot.id, data),
                progress=lambda fraction, message: self.runner.hook(
                    "shot_progress", session=session, stage=stage, shot=shot,
                    fraction=max(0.0, min(1.0, float(fraction))), message=message),
            )
            self.runner.hook("shot_started", session=session, stage=stage, shot=shot, attempt=n)
            t0 = time.monotonic()
            try:
                def here() -> Path:
                    return run_backend(stage, backend.instance, shot, image, job)

                if self.engine is None:
                    produced = here()
                else:
                    def describe() -> BackendCall:
                        return call_for(session, stage, STAGE_KIND[stage], backend, shot, n, image, refs)

                    remote = bool(getattr(backend.instance, "remote", False))
                    produced = self.engine.perform(Attempt(describe, job, here, remote))
            finally:
                self.spent[key] = self.spent.get(key, 0.0) + time.monotonic() - t0
            if self.cancel.is_set():
                raise KeyboardInterrupt
            return Path(produced), time.monotonic() - t0

        return self.runner.with_retries(once)

    def _settle(self, unit: Unit) -> None:
        """``unit`` is done (made, or checked, in this run): what waited for it is ready. A
        stage waits for its needs to be *settled in this run*, not merely marked done: a
        voice about to be redone must not time the clip."""
        self._settled.add(unit)
        waiting = [Unit(spec.name, unit.shot_id) for spec in self.specs]
        if unit.stage == "videos" and unit.shot_id in self._followed_by:
            waiting.append(Unit("videos", self._followed_by[unit.shot_id]))
        for nxt in waiting:
            needs = self._needs_of(nxt)
            if unit in needs and all(u in self._settled for u in needs) and nxt not in self._handed:
                self._ready.append(nxt)

    def _needs_of(self, unit: Unit) -> tuple[Unit, ...]:
        """What ``unit`` waits for: its stage's needs for its shot; a clip that starts from
        the last frame of the clip before it waits for that clip instead of its own image."""
        needs = tuple(Unit(d, unit.shot_id) for d in self.needs[unit.stage])
        before = self.follows.get(unit.shot_id) if unit.stage == "videos" else None
        if before is None:
            return needs
        return (*(u for u in needs if u.stage != "images"), Unit("videos", before))

    def _begin_stage(self, stage: str) -> None:
        if stage not in self._started_stage:
            self._started_stage.add(stage)
            self.runner.hook("stage_started", session=self.session, stage=stage)

    def _within_budget(self, stage: str) -> bool:
        if self.runner.budget is None:
            return True
        estimate = self._estimates.get(stage) or 0.0
        if self.outcome.spent + self._in_flight + estimate > self.runner.budget:
            return False
        self._in_flight += estimate
        return True

    def _failed(self, stage: str, shot: Shot, exc: BaseException) -> None:
        error = redact(str(exc) if isinstance(exc, ReelforgeError) else f"{type(exc).__name__}: {exc}")
        self.session.mark_shot_failed(stage, shot.id, error, spent=self.spent.pop((stage, shot.id), None))
        self.outcome.failures.append(f"shot {shot.id} ({stage}): {error}")
        # an error's ``cause`` is what every shot it failed shares ("ComfyUI at URL down
        # since 12:03:04"): those are then said once, not once per shot
        cause = redact(str(getattr(exc, "cause", None) or error))
        self.outcome.causes.append((stage, shot.id, cause, self.outcome.failures[-1]))
        self.runner.hook("shot_failed", session=self.session, stage=stage, shot=shot, error=exc)
