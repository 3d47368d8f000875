"""The LLM steps (story, scene graph, shot plan) as units of work: each returns its saved
output if there is one, else asks the story writer (with retries), records the cost ledger
and saves the output atomically, so running a step again after a crash records it once."""

from __future__ import annotations

import inspect
import time
from typing import TYPE_CHECKING, Any, Callable

from reelforge.errors import SessionCorruptError, StageError
from reelforge.protocols import StageJob
from reelforge.records import SceneGraph, ShotPlan, Story
from reelforge.store.meta import DONE, FAILED, STEP_FILES
from reelforge.store.session import Session

if TYPE_CHECKING:
    from reelforge.engine.runner import Runner


def write_all(runner: Runner, session: Session, writer, saved: dict[str, Any],
              engine_step: Callable[[str, Callable[[], Any]], None] | None = None) -> tuple[Story, SceneGraph, ShotPlan]:
    """Story, scene graph and shot plan, each made only if not saved; each is run as the
    engine's step of that name (:meth:`reelforge.engine.base.Engine.step`)."""
    story = as_step(engine_step, "story", lambda: llm_step(
        runner, session, "story", lambda **job: writer.write_story(session.meta.idea, **job),
        Story, writer.write_story, saved["story"]))
    scenes = as_step(engine_step, "scene_graph", lambda: llm_step(
        runner, session, "scene_graph", lambda **job: writer.build_scene_graph(story, **job),
        SceneGraph, writer.build_scene_graph, saved["scene_graph"]))
    plan = as_step(engine_step, "shots", lambda: llm_step(
        runner, session, "shots", lambda **job: writer.plan_shots(story, scenes, **job),
        ShotPlan, writer.plan_shots, saved["shots"]))
    if not plan.shots:
        raise StageError("the shot plan has no shots")
    return story, scenes, plan


def as_step(engine_step: Callable[[str, Callable[[], Any]], None] | None, name: str, make: Callable[[], Any]) -> Any:
    """``make()``'s value, made as the engine's step ``name``. An engine whose record says
    the step ended already does not call ``make``: then it is called here, outside the
    record, and finds what the step saved (the store is what users and runs read)."""
    if engine_step is None:
        return make()
    made: list[Any] = []
    engine_step(name, lambda: made.append(make()))
    return made[0] if made else make()


def _job_kwargs(runner: Runner, session: Session, step: str, method: Callable) -> dict[str, Any]:
    """``{"job": StageJob}`` if the writer's method takes a ``job`` keyword, else ``{}``."""
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return {}
    if "job" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return {}
    job = StageJob(
        session_id=session.id, stage=step, checkpoint=dict(session.meta.step_checkpoints.get(step, {})),
        cancelled=runner.cancel, save=lambda data: session.save_step_checkpoint(step, data),
        progress=lambda fraction, message: runner.hook(
            "stage_progress", session=session, stage=step,
            fraction=max(0.0, min(1.0, float(fraction))), message=message),
    )
    return {"job": job}


def llm_step(runner: Runner, session: Session, step: str, make: Callable[..., Any], cls: type,
             method: Callable, existing: Any) -> Any:
    """Return the step's saved output (``existing``, read before the run), or make it."""
    if existing is None:
        # The store is the record: this step may have been saved since ``existing`` was read
        # (the unit ran already), and running it again must not ask the writer again.
        existing = session.read_step_output(step)
    if existing is not None:
        # Written, then perhaps a crash before the meta caught up (or edited by hand):
        # bring the meta in line with the file, shot states included.
        session.adopt_step_output(step, existing)
        return existing
    if session.meta.steps.get(step) == DONE:
        raise SessionCorruptError(session.path / STEP_FILES[step][0], "file is missing but the step is marked done")
    runner.preflight.kind("story")
    runner.hook("stage_started", session=session, stage=step)
    attempts = [0]
    t0 = time.monotonic()

    def once():
        attempts[0] += 1
        return make(**_job_kwargs(runner, session, step, method))

    def ledger() -> None:  # the cost ledger: time, attempts and the tokens the writer counted
        take = getattr(getattr(method, "__self__", None), "take_usage", None)
        usage = take() if callable(take) else {}
        session.add_step_usage(step, seconds=time.monotonic() - t0, attempts=attempts[0],
                               **{k: v for k, v in (usage or {}).items() if isinstance(v, (int, float))})

    try:
        value = runner.with_retries(once)
        if not isinstance(value, cls):
            raise StageError(f"{step}: backend returned {type(value).__name__}, expected {cls.__name__}")
    except BaseException as exc:
        if isinstance(exc, Exception):
            ledger()
            session.mark_step(step, "failed", error=f"{step}: {exc}")
            session.set_status(FAILED, f"{step}: {exc}")
            runner.hook("stage_failed", session=session, stage=step, error=exc)
        raise
    ledger()
    session.save_step_output(step, value)
    runner.hook("stage_finished", session=session, stage=step)
    return value
