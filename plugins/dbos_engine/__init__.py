"""The ``dbos`` engine: films as DBOS workflows on Postgres, run by ``reelforge worker``
processes on any number of hosts (``pip install 'reelforge[dbos]'``). See docs/dbos.md.

Registering it imports nothing of DBOS: only a run or a worker that picks it does."""

from __future__ import annotations

from reelforge import hookimpl


@hookimpl
def register_engines(register):
    from reelforge.plugins.dbos_engine.engine import DBOSEngine

    register(DBOSEngine)
