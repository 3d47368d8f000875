"""What the dbos engine keeps in Postgres beside DBOS's own tables: each worker's liveness
lease (with a generation number that fences a worker whose lease was taken over), and each
running render's checkpoint (the server and prompt id it chose, saved before it submits).
Execution state only: images, clips and session records stay in the session folder.

A lease is a row with a deadline on the database's clock. A worker renews its own every
``lease_s / 4``; one that cannot (its database is gone, or its row was taken over while it
was stopped) exits at once. Its local deadline (the last renewal plus ``lease_s``, on the
monotonic clock, which keeps counting while a process is stopped) guards every session
write, so a worker past its lease writes nothing even before its renewal thread runs."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

import psycopg
from psycopg_pool import ConnectionPool

log = logging.getLogger("reelforge.dbos")

SCHEMA = """
create table if not exists reelforge_workers (
    id text primary key,
    host text not null,
    pid integer not null,
    generation bigint not null default 1,
    lease_until timestamptz not null
);
create table if not exists reelforge_render_slots (
    place text not null,
    slot integer not null,
    workflow_id text,
    since timestamptz,
    primary key (place, slot)
);
create table if not exists reelforge_render_checkpoints (
    workflow_id text primary key,
    data jsonb not null,
    updated timestamptz not null default now()
);
"""

#: Exit code of a worker that lost its lease or its database: nothing was written after.
LEASE_LOST = 75


def connect(db: str) -> psycopg.Connection:
    """A connection with TCP keepalives, so a dead database or host is noticed in seconds."""
    return psycopg.connect(db, autocommit=True, connect_timeout=10, keepalives=1, keepalives_idle=5,
                           keepalives_interval=2, keepalives_count=3)


_POOLS: dict[str, ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def pooled(db: str):
    """A connection from this process's pool for ``db``, checked as it is handed out. The
    render path makes a few small queries per render (checkpoints, slots); a new
    connection each time would cost a Postgres backend process each, which on a busy host
    is tens of milliseconds a query of a server left idle."""
    with _POOLS_LOCK:
        pool = _POOLS.get(db)
        if pool is None:
            pool = ConnectionPool(db, min_size=1, max_size=16, open=True, name="reelforge",
                                  check=ConnectionPool.check_connection,
                                  kwargs={"autocommit": True, "connect_timeout": 10, "keepalives": 1,
                                          "keepalives_idle": 5, "keepalives_interval": 2,
                                          "keepalives_count": 3})
            _POOLS[db] = pool
    return pool.connection(timeout=10)


def close_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def ensure_schema(db: str) -> None:
    with connect(db) as conn:
        conn.execute("select pg_advisory_lock(7263001)")  # two workers starting at once: one creates
        try:
            conn.execute(SCHEMA)
        finally:
            conn.execute("select pg_advisory_unlock(7263001)")


class WorkerLease:
    """This worker's liveness lease: taken at start (refused while another live worker
    holds the same id), renewed in a thread, checked before every session write."""

    def __init__(self, db: str, worker_id: str, lease_s: float,
                 on_lost: Callable[[str], None] | None = None):
        self.db, self.worker_id, self.lease_s = db, worker_id, float(lease_s)
        self.generation: int | None = None
        self.valid_until = 0.0
        self._on_lost = on_lost or exit_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, or raise RuntimeError naming the live holder of this id."""
        sent = time.monotonic()
        with connect(self.db) as conn:
            row = conn.execute(
                """insert into reelforge_workers (id, host, pid, lease_until)
                   values (%s, %s, %s, now() + make_interval(secs => %s))
                   on conflict (id) do update set host = excluded.host, pid = excluded.pid,
                       lease_until = excluded.lease_until, generation = reelforge_workers.generation + 1
                   where reelforge_workers.lease_until < now()
                   returning generation""",
                (self.worker_id, socket.gethostname(), os.getpid(), self.lease_s)).fetchone()
            if row is None:
                held = conn.execute("select host, pid, lease_until from reelforge_workers where id = %s",
                                    (self.worker_id,)).fetchone()
                raise RuntimeError(f"worker id {self.worker_id!r} is held by a live worker "
                                   f"(host {held[0]}, pid {held[1]}, lease until {held[2]}); give each "
                                   f"worker its own --id")
        self.generation = int(row[0])
        self.valid_until = sent + self.lease_s
        self._thread = threading.Thread(target=self._renew_loop, name="reelforge-lease", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """The write guard: past its lease, this worker stops before writing."""
        if time.monotonic() >= self.valid_until:
            self._on_lost(f"worker {self.worker_id}: lease expired (stopped or cut off for longer "
                          f"than {self.lease_s:g} s); exiting without writing")

    def renew(self) -> bool:
        sent = time.monotonic()
        with connect(self.db) as conn:
            row = conn.execute(
                """update reelforge_workers set lease_until = now() + make_interval(secs => %s)
                   where id = %s and generation = %s and lease_until >= now() returning id""",
                (self.lease_s, self.worker_id, self.generation)).fetchone()
        if row is None:
            return False
        self.valid_until = sent + self.lease_s
        return True

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            self.check()  # woke up past the lease (SIGSTOP/SIGCONT): stop before anything else
            try:
                ok = self.renew()
            except psycopg.Error as exc:
                self._on_lost(f"worker {self.worker_id}: lost its database ({exc}); exiting without writing")
                return
            if not ok:
                self._on_lost(f"worker {self.worker_id}: its lease was taken over; exiting without writing")
                return

    def release(self) -> None:
        """Let the lease lapse now, so another worker recovers this one's work at once."""
        self._stop.set()
        try:
            with connect(self.db) as conn:
                conn.execute("update reelforge_workers set lease_until = now() - interval '1 second' "
                             "where id = %s and generation = %s", (self.worker_id, self.generation))
        except psycopg.Error as exc:
            log.warning("could not release the lease of worker %s: %s", self.worker_id, exc)


def exit_lost(message: str) -> None:
    """Stop this worker now, writing nothing more: what it was doing is recovered elsewhere."""
    try:
        os.write(2, f"reelforge worker: {message}\n".encode())
    finally:
        os._exit(LEASE_LOST)


def expired_workers(db: str, me: str) -> list[str]:
    with connect(db) as conn:
        rows = conn.execute("select id from reelforge_workers where lease_until < now() and id <> %s",
                            (me,)).fetchall()
    return [r[0] for r in rows]


def take_over(db: str, dead: str, recover: Callable[[str], Any]) -> bool:
    """If ``dead``'s lease is still expired and no other worker is taking it over, run
    ``recover(dead)`` and remove its row, in one transaction: a worker that dies half way
    leaves the row for the next one (recovery is idempotent)."""
    with psycopg.connect(db, connect_timeout=10) as conn:
        with conn.transaction():
            row = conn.execute("select id from reelforge_workers where id = %s and lease_until < now() "
                               "for update skip locked", (dead,)).fetchone()
            if row is None:
                return False
            recover(dead)
            conn.execute("delete from reelforge_workers where id = %s", (dead,))
    return True


class Checkpoints:
    """Render checkpoints by workflow id: written by the render as it goes, read back by a
    recovered run of the same workflow (so it reattaches to the same prompt)."""

    def __init__(self, db: str):
        self.db = db

    def get(self, workflow_id: str) -> dict[str, Any]:
        with pooled(self.db) as conn:
            row = conn.execute("select data from reelforge_render_checkpoints where workflow_id = %s",
                               (workflow_id,)).fetchone()
        return dict(row[0]) if row else {}

    def merge(self, workflow_id: str, data: dict[str, Any]) -> None:
        with pooled(self.db) as conn:
            conn.execute(
                """insert into reelforge_render_checkpoints (workflow_id, data) values (%s, %s::jsonb)
                   on conflict (workflow_id) do update
                   set data = reelforge_render_checkpoints.data || excluded.data, updated = now()""",
                (workflow_id, json.dumps(data)))


class Slots:
    """The render slots of each server, held by render workflows (reelforge.protocols.Places).

    A slot is free when no render holds it, or when the render that holds it is no longer
    running or queued in DBOS. A render whose worker died keeps its slot: its workflow is
    still pending, and the worker that recovers it reattaches to the same prompt on the
    same server, holding the same slot. So a server never gets a second prompt from us
    while one of ours is on it, whoever died meanwhile."""

    def __init__(self, db: str, workflow_id: str, schema: str = "dbos"):
        self.db, self.workflow_id, self.schema = db, workflow_id, schema

    def hold(self, place: str, slots: int) -> Callable[[], None] | None:
        with pooled(self.db) as conn:
            for slot in range(max(1, int(slots))):
                row = conn.execute(
                    f"""insert into reelforge_render_slots as s (place, slot, workflow_id, since)
                        values (%s, %s, %s, now())
                        on conflict (place, slot) do update set workflow_id = excluded.workflow_id, since = now()
                        where s.workflow_id is null or s.workflow_id = excluded.workflow_id
                           or not exists (select 1 from {self.schema}.workflow_status w
                                          where w.workflow_uuid = s.workflow_id
                                            and w.status in ('PENDING', 'ENQUEUED', 'DELAYED'))
                        returning slot""",
                    (place, slot, self.workflow_id)).fetchone()
                if row is not None:
                    return lambda slot=slot: self._release(place, slot)
        return None

    def _release(self, place: str, slot: int) -> None:
        try:
            with pooled(self.db) as conn:
                conn.execute("update reelforge_render_slots set workflow_id = null, since = null "
                             "where place = %s and slot = %s and workflow_id = %s",
                             (place, slot, self.workflow_id))
        except psycopg.Error as exc:  # left held: freed when this render's workflow ends
            log.warning("could not release render slot %s/%s: %s", place, slot, exc)

    def holders(self) -> dict[tuple[str, int], str | None]:
        with pooled(self.db) as conn:
            rows = conn.execute("select place, slot, workflow_id from reelforge_render_slots").fetchall()
        return {(r[0], r[1]): r[2] for r in rows}


def database_answers(db: str) -> bool:
    try:
        with psycopg.connect(db, connect_timeout=3) as conn:
            conn.execute("select 1")
        return True
    except psycopg.Error:
        return False
