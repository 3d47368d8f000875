"""A film run by an engine's workers, from the side of the process that hands it over:
the session is created or prepared here, its backends and film settings recorded, then it
is released and handed over (:meth:`reelforge.engine.base.Engine.hand_off`), and followed
through its files (:mod:`reelforge.engine.follow`) unless the run is detached; what the
run ended with is read back from the session's files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reelforge.engine import film_unit
from reelforge.engine.backends import Backend, choices
from reelforge.engine.base import Engine, FilmOrder
from reelforge.engine.follow import follow
from reelforge.engine.results import HANDED_OFF, RunResult
from reelforge.errors import ReelforgeError
from reelforge.store.meta import COMPLETE, FAILED, IN_PROGRESS, STEP_FILES
from reelforge.store.session import Session
from reelforge.store.sessions import SessionStore

if TYPE_CHECKING:
    from reelforge.engine.runner import Runner


def hand_off(runner: Runner, engine: Engine, session: Session, backends: dict[str, Backend]) -> RunResult:
    """Give the session to the engine's workers: its backends and film settings are
    recorded here first (a worker reads them from the meta), then the session is released
    for the worker to open, and the run is followed unless the runner is detached."""
    try:
        # The servers the work left needs are checked here, before the film is handed over:
        # the worker that runs it leaves what the engine says was checked elsewhere.
        runner._preflight_work_left(session, {step: session.read_step_output(step) for step in STEP_FILES},
                                    backends)
        session.set_backends(choices(backends))
        film_unit.settings(runner, session)
        if session.meta.status == FAILED:
            session.set_status(IN_PROGRESS)
    finally:
        session.close()
    order = FilmOrder(str(runner.store.output_dir.resolve()), session.id, {"budget": runner.budget})
    handed = engine.hand_off(order)
    try:
        if runner.detach:
            return RunResult(session.id, HANDED_OFF, session.path)
        try:
            failure = follow(handed, runner.store, session.id, runner.hook)
        except KeyboardInterrupt:  # Ctrl-C stops the following; the workers go on
            return RunResult(session.id, HANDED_OFF, session.path)
    finally:
        handed.close()
    if failure:
        raise ReelforgeError(f"the workers could not run session {session.id}: {failure}")
    return outcome(runner.store, session.id)


def outcome(store: SessionStore, session_id: str) -> RunResult:
    """The RunResult a session's files say now (for a run made elsewhere)."""
    meta = store.load(session_id).meta
    path = store.path_for(session_id)
    if meta.status == COMPLETE:
        return RunResult(session_id, COMPLETE, path, film=path / "film.mp4")
    failed = tuple(f"shot {st.id} ({stage}): {st.artifact(stage).last_error}"
                   for st in meta.shots for stage in ("images", "narration", "videos")
                   if st.artifact(stage).state == "failed" and st.artifact(stage).last_error)
    if meta.status == FAILED:
        said = failed or (meta.last_error or "failed",)
        return RunResult(session_id, FAILED, path, said, problems=said)
    return RunResult(session_id, meta.status, path)
