"""``reelforge worker --engine dbos``: one worker process. It takes its liveness lease,
launches DBOS under its worker id (its executor id), serves the film and render queues,
and recovers the work of any worker whose lease has lapsed. It stops on SIGTERM or Ctrl-C
by letting its lease lapse and exiting: like a crash, which everything here survives."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from reelforge.store import safefs

log = logging.getLogger("reelforge.dbos")


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def serve(db: str, output_dir: Path, *, worker_id: str | None, render_slots: int, films: int,
          lease_s: float, poll_s: float = 0.05) -> int:
    from dbos import DBOS

    from reelforge.plugins.dbos_engine import engine, internals, leases, workflows
    from reelforge.plugins.dbos_engine.workflows_names import FILM_QUEUE, RENDER_QUEUE

    worker_id = worker_id or default_worker_id()
    leases.ensure_schema(db)
    lease = leases.WorkerLease(db, worker_id, lease_s)
    lease.acquire()
    safefs.WRITE_GUARDS.append(lease.check)  # past its lease, this process writes nothing
    engine.IN_WORKER = True
    workflows.STATE = workflows.WorkerState(db, lease_s)
    workflows.STATE.warm_up()
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGCONT, lambda signum, frame: lease.check())

    DBOS(config={"name": "reelforge", "system_database_url": db, "application_version": engine.APP_VERSION,
                 "executor_id": worker_id, "log_level": os.environ.get("REELFORGE_DBOS_LOG", "WARNING"),
                 "notification_listener_polling_interval_sec": poll_s})
    DBOS.launch()
    DBOS.register_queue(FILM_QUEUE, worker_concurrency=films, polling_interval_sec=poll_s,
                        on_conflict="always_update")
    DBOS.register_queue(RENDER_QUEUE, global_concurrency=render_slots, polling_interval_sec=poll_s,
                        on_conflict="always_update")

    def reap() -> None:
        while not stop.wait(lease_s / 2):
            try:
                for dead in leases.expired_workers(db, worker_id):
                    if leases.take_over(db, dead, internals.recover_executor):
                        print(f"reelforge worker {worker_id}: recovered the work of {dead} (its lease lapsed)",
                              file=sys.stderr, flush=True)
            except Exception as exc:  # the database blinked: the lease thread decides whether to stop
                log.warning("recovery check failed: %s", exc)

    threading.Thread(target=reap, name="reelforge-reaper", daemon=True).start()
    print(f"reelforge worker {worker_id} ready: films from {output_dir}, {render_slots} render slot(s), "
          f"lease {lease_s:g} s", file=sys.stderr, flush=True)
    stop.wait()
    print(f"reelforge worker {worker_id}: stopping; its unfinished work goes to the other workers",
          file=sys.stderr, flush=True)
    workflows.STATE.stopping.set()
    lease.release()
    sys.stderr.flush()
    os._exit(0)  # no half-way shutdown: what was running is recovered, as after a crash
