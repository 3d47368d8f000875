"""The dbos engine as the Runner sees it. In a ``reelforge run`` / ``resume`` / redo
process it hands the prepared session to the workers (and follows it); inside a worker it
schedules the shots like ``local`` but sends each backend call to the render queue."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import attrs

from reelforge.engine.base import Attempt, FilmOrder
from reelforge.engine.local import LocalEngine
from reelforge.errors import ConfigError, ReelforgeError

#: Set by ``reelforge worker``: runs in this process are the workers' own.
IN_WORKER = False
#: The application version every worker and client shares (DBOS runs a workflow only on
#: workers of the version that enqueued it).
APP_VERSION = "reelforge-dbos-1"


#: What a worker makes in its own process (Pillow stills, ffmpeg clips, local voices) for all
#: the films it runs: at most one piece per CPU at once. Several films' CPU work at once in
#: one process starves the renders' dispatch (short, latency-bound: it waits on the
#: interpreter lock), and servers wait; it makes the stills no sooner.
_LOCAL_WORK = threading.BoundedSemaphore(os.cpu_count() or 1)


def _here_in_turn(attempt: Attempt) -> Path:
    while not _LOCAL_WORK.acquire(timeout=0.2):
        if attempt.job.cancelled.is_set():
            raise KeyboardInterrupt
    try:
        return attempt.here()
    finally:
        _LOCAL_WORK.release()


def database_url(options: dict[str, Any]) -> str:
    db = options.get("db") or os.environ.get("REELFORGE_DB")
    if not db:
        raise ConfigError("the dbos engine needs its Postgres database: --db postgresql://USER@HOST/DB "
                          "(or REELFORGE_DB)")
    if not str(db).startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise ConfigError(f"--db must be a postgresql:// URL, got {db.split('@')[-1]!r}")
    return str(db)


def _require_dbos() -> None:
    try:
        import dbos  # noqa: F401
    except ImportError:
        raise ConfigError("the dbos engine needs DBOS: pip install 'reelforge[dbos]'") from None


class DBOSEngine(LocalEngine):
    """Films on DBOS workflows; renders on one queue shared by every worker."""

    name = "dbos"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.db = database_url(options)
        _require_dbos()

    def hands_off(self) -> bool:
        return not IN_WORKER

    def checks_here(self, backend) -> bool:
        """A film in a worker does not check the servers of its remote backends (ComfyUI):
        the command that handed it over checked them moments before, and its renders run in
        render workflows that pick among the servers that answer, as they go."""
        return not (IN_WORKER and getattr(backend.instance, "remote", False))

    def step(self, name: str, make) -> None:
        from reelforge.plugins.dbos_engine import workflows

        workflows.film_step(name, make)

    def perform(self, attempt: Attempt) -> Path:
        from reelforge.plugins.dbos_engine import workflows

        if IN_WORKER and not attempt.remote:
            return _here_in_turn(attempt)
        return workflows.perform(attempt)

    def work(self, output_dir: Path, *, worker_id: str | None = None, slots: int = 4, films: int = 4,
             lease: float = 15.0, cpus: int | None = None) -> int:
        from reelforge.plugins.dbos_engine.worker import serve

        global _LOCAL_WORK
        if cpus is not None:
            _LOCAL_WORK = threading.BoundedSemaphore(max(1, int(cpus)))
        return serve(self.db, output_dir, worker_id=worker_id, render_slots=slots, films=films, lease_s=lease)

    def hand_off(self, order: FilmOrder) -> Handoff:
        from dbos import DBOSClient

        from reelforge.plugins.dbos_engine.workflows_names import FILM_QUEUE, FILM_WORKFLOW

        try:
            client = DBOSClient(system_database_url=self.db)
        except Exception as exc:
            raise ReelforgeError(f"cannot reach the workers' database ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}); start one with "
                                 f"`reelforge worker --engine dbos --db URL` first") from None
        try:
            workflow_id = f"film/{order.session_id}/{uuid.uuid4().hex[:12]}"
            handle = client.enqueue({"queue_name": FILM_QUEUE, "workflow_name": FILM_WORKFLOW,
                                     "workflow_id": workflow_id, "app_version": APP_VERSION},
                                    attrs.asdict(order))
        except BaseException:
            client.destroy()
            raise
        print(f"Session {order.session_id} handed to the workers (workflow {workflow_id})", file=sys.stderr)
        if not _live_workers(self.db):
            print("warning: no reelforge worker is running on this database: the film waits until "
                  "one starts (reelforge worker --engine dbos --db URL)", file=sys.stderr)
        return Handoff(client, handle)


class Handoff:
    """A film workflow in the workers' hands (reelforge.engine.follow.Handed)."""

    def __init__(self, client, handle):
        self.client, self.handle = client, handle
        self._status: str | None = None

    def running(self) -> bool:
        from reelforge.plugins.dbos_engine.workflows_names import UNFINISHED

        self._status = self.handle.get_status().status
        return self._status in UNFINISHED

    def failure(self) -> str | None:
        status = self._status or self.handle.get_status().status
        if status == "SUCCESS":
            return None
        try:
            self.handle.get_result()
        except Exception as exc:  # noqa: BLE001 - whatever the workflow raised is its failure
            return str(exc) or type(exc).__name__
        return f"its workflow ended {status}"

    def close(self) -> None:
        self.client.destroy()


def _live_workers(db: str) -> int:
    from reelforge.plugins.dbos_engine.leases import connect

    try:
        with connect(db) as conn:
            return int(conn.execute("select count(*) from reelforge_workers where lease_until > now()")
                       .fetchone()[0])
    except Exception:
        return 0
