"""The dbos engine's workflows, registered with DBOS when a worker imports this module.

- ``reelforge_film`` (queue ``reelforge_films``): one run of one session, by the Runner, in
  the worker that dequeued it. That worker holds the session's lock and is its one writer:
  LLM steps, commits and the film are made there, each saved through the store the moment
  it is done. The film's own steps are recorded steps of this workflow, in the order the
  Runner reaches them: ``reelforge_story``, ``reelforge_scene_graph``, ``reelforge_shots``,
  ``reelforge_cast``, then (after every shot is committed) ``reelforge_film``. A recovered
  film workflow replays the steps that ended (what they made is read from the session) and
  runs the session on: only what remains. Each shot's renders are workflows of their own
  (below), named by the shot, not by the order they started in: shots finish in any order,
  and a child recorded by call order would hand a recovered film another shot's render.
- ``reelforge_render`` (queue ``reelforge_renders``, global concurrency = the render slots):
  one attempt's backend call, in whichever worker dequeues it. It writes only the shot's
  scratch folder and its checkpoint row; the film's worker commits what it returns. Its id
  is ``render/<session>/<stage>/<shot>/<attempt>``, recorded in the shot's checkpoint
  before it is enqueued, so a film run again after a crash waits on the same render
  instead of starting another; a render run again after a crash reads its checkpoint and
  reattaches to the prompt it submitted.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import attrs
from dbos import DBOS, SetWorkflowID
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from reelforge.engine.base import Attempt
from reelforge.engine.calls import BackendCall, build_backend, make_call
from reelforge.errors import SessionLockedError
from reelforge.plugins.dbos_engine.leases import Checkpoints, Slots, database_answers, exit_lost
from reelforge.plugins.dbos_engine.workflows_names import FILM_WORKFLOW, RENDER_QUEUE, RENDER_WORKFLOW, UNFINISHED

log = logging.getLogger("reelforge.dbos")

#: The shot checkpoint key that names the render workflow of the current attempt.
RENDER_KEY = "dbos_render"


class WorkerState:
    """What the workflows of this worker process share: its database, its lease, a stop
    signal and the backends it built (one per name and options, kept for the worker's life)."""

    def __init__(self, db: str, lease_s: float):
        self.db, self.lease_s = db, lease_s
        self.stopping = threading.Event()
        self.checkpoints = Checkpoints(db)
        self._backends: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.pm = None

    def backend(self, call: BackendCall):
        key = (call.kind, call.backend, repr(sorted(call.options.items())))
        with self._lock:
            if key not in self._backends:
                from reelforge.engine.plugins import load_plugins

                self.pm = self.pm or load_plugins()
                self._backends[key] = build_backend(self.pm, call.kind, call.backend, call.options)
            return self._backends[key]


    def warm_up(self) -> None:
        """Before the worker says it is ready: import what a film run uses and build each
        installed backend once with its defaults (then close it), so the first film a
        worker takes does not wait on imports. A backend that needs settings to be built
        is skipped: it is built, as always, when a film names it."""
        from reelforge.engine import runner  # noqa: F401 - the Runner and the units it imports
        from reelforge.engine.plugins import KINDS, backends, load_plugins

        self.pm = self.pm or load_plugins()
        for kind in KINDS:
            for name in backends(kind, self.pm):
                try:
                    instance = build_backend(self.pm, kind, name, {})
                except Exception:  # noqa: BLE001 - e.g. a key or URL it must be given
                    continue
                close = getattr(instance, "close", None)
                if callable(close):
                    close()


STATE: WorkerState | None = None


def state() -> WorkerState:
    if STATE is None:
        raise RuntimeError("the dbos engine's workflows run in a `reelforge worker` process")
    return STATE


# -- the film ------------------------------------------------------------------------

@DBOS.workflow(name=FILM_WORKFLOW)
def film_workflow(order: dict[str, Any]) -> dict[str, Any]:
    from reelforge.engine.runner import Runner

    runner = Runner(order["output_dir"], engine="dbos", engine_options={"db": state().db},
                    **order.get("runner", {}))
    result = _open_when_free(state().lease_s)(lambda: runner.resume(order["session_id"]))()
    return {"status": result.status, "failed": list(result.failed)}


def film_step(name: str, make) -> None:
    """One of the film's steps (reelforge.engine.base.Engine.step): a recorded step of the
    film workflow when run in one, else just made. ``make`` is safe to run again (it finds
    what is saved), so a crash between its save and DBOS's record only repeats a check."""
    if DBOS.workflow_id is None:
        make()
        return
    DBOS.run_step({"name": f"reelforge_{name}", "retries_allowed": False}, make)


def _open_when_free(lease_s: float):
    """A film recovered from a worker that was only stopped (not dead) finds the session
    still locked until that worker exits on waking: wait for it, a few leases at most."""
    return retry(retry=retry_if_exception_type(SessionLockedError), reraise=True,
                 wait=wait_exponential(multiplier=0.2, max=max(1.0, lease_s / 2)),
                 stop=stop_after_delay(max(30.0, 4 * lease_s)))


# -- one render ----------------------------------------------------------------------

@DBOS.workflow(name=RENDER_WORKFLOW)
def render_workflow(call: dict[str, Any]) -> dict[str, Any]:
    return render_step(call)


@DBOS.step(name="reelforge_render_call", retries_allowed=False)
def render_step(data: dict[str, Any]) -> dict[str, Any]:
    st = state()
    workflow_id = DBOS.workflow_id
    saved = st.checkpoints.get(workflow_id)
    call = BackendCall.from_dict(data)
    call = attrs.evolve(call, checkpoint={**call.checkpoint, **saved})

    def save(values: dict[str, Any]) -> None:
        st.checkpoints.merge(workflow_id, values)

    produced = make_call(call, st.backend(call), cancelled=st.stopping, save=save,
                         places=Slots(st.db, workflow_id))
    return {"produced": produced.resolve().relative_to(Path(call.session_path).resolve()).as_posix()}


def perform(attempt: Attempt) -> Path:
    """In the film's worker: have a render workflow make ``attempt``'s call (or wait on the
    one this attempt's unit already has), then hand back its file; the checkpoint it saved
    is recorded in the session, as a render made here would have saved it. If anything
    fails while the database does not answer, the worker stops at once: the failure is the
    database's, not the shot's, and must not be written as the shot's."""
    if not attempt.remote:
        return attempt.here()  # Pillow, ffmpeg, a local voice: made where the film is made
    try:
        return _perform(attempt)
    except KeyboardInterrupt:
        raise
    except BaseException:
        if not database_answers(state().db):
            exit_lost("the database stopped answering; exiting without writing")
        raise


def _perform(attempt: Attempt) -> Path:
    call, job = attempt.call, attempt.job
    workflow_id = _unfinished_render(job.checkpoint.get(RENDER_KEY), Path(call.session_path))
    if workflow_id is None:
        workflow_id = f"render/{call.key}/{call.attempt}"
        job.save_checkpoint(**{RENDER_KEY: workflow_id})  # recorded before it can start
        with SetWorkflowID(workflow_id):
            DBOS.retrieve_queue(RENDER_QUEUE).enqueue(render_workflow, call.to_dict())
    handle = DBOS.retrieve_workflow(workflow_id)
    while True:  # wait, but hear a stopping worker
        status = handle.get_status().status
        if status not in UNFINISHED:
            break
        if job.cancelled.wait(0.2) or state().stopping.is_set():
            raise KeyboardInterrupt
    try:
        result = handle.get_result()
    finally:  # what the render saved is the session's now (as a render made here saves it)
        job.save_checkpoint(**{**state().checkpoints.get(workflow_id), RENDER_KEY: None})
    return Path(call.session_path) / result["produced"]


def _unfinished_render(workflow_id: str | None, session: Path) -> str | None:
    """The render workflow recorded for this unit, if it is still to be waited on: running
    or queued, or finished with its file still in scratch (its commit was cut short)."""
    if not workflow_id:
        return None
    status = DBOS.get_workflow_status(workflow_id)
    if status is None:
        return None
    if status.status in UNFINISHED:
        return workflow_id
    if status.status == "SUCCESS":
        try:
            result = DBOS.retrieve_workflow(workflow_id).get_result()
        except Exception:
            return None
        if (session / result["produced"]).exists():
            return workflow_id
    return None
