"""Every use of DBOS internals, in one place: recovering another executor's pending
workflows (self-hosted DBOS has no public call for it; DBOS Conductor does it for its
users). tests/test_dbos_engine.py checks this against the pinned DBOS, so an upgrade that
changes it fails there first."""

from __future__ import annotations

from typing import Any

from dbos import DBOS


def recover_executor(executor_id: str) -> list[Any]:
    """Make the pending workflows of (dead) ``executor_id`` runnable again: DBOS re-enqueues
    them, and any live worker picks them up through the queue's one-runner dequeue."""
    return DBOS._recover_pending_workflows([executor_id])
