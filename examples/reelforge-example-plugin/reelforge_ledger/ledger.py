"""The ``ledger`` plugin: one CSV row per shot per stage in ``<session>/ledger.csv`` saying
how it went (done, failed, or skipped because it was already made), its attempts and the
wall time this run spent on it. A resumed run appends its rows to the same file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import threading
import time
from pathlib import Path

from reelforge import hookimpl

FILENAME = "ledger.csv"
COLUMNS = ("run_started", "stage", "shot", "outcome", "attempts", "seconds", "backend", "error")

_KIND = {"images": "image", "narration": "narration", "videos": "video"}

_lock = threading.Lock()
#: (session id, stage, shot id) -> monotonic time of the first attempt in this run.
_started: dict[tuple[str, str, int], float] = {}
#: session id -> when this run of it started (the run_started column).
_runs: dict[str, str] = {}


def ledger_path(session) -> Path:
    return Path(session.path) / FILENAME


def read_ledger(path: Path) -> list[dict[str, str]]:
    """The rows of a ledger file, as dicts keyed by COLUMNS."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def append_row(path: Path, row: dict[str, object]) -> None:
    """Append one row durably. The row goes out in a single write on an O_APPEND file, so
    a crash leaves at most a torn last line; that line is cut off before the next append."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            tail = os.pread(fd, min(size, 4096), max(0, size - 4096))
            if not tail.endswith(b"\n"):  # a crash mid-append: drop the partial row
                cut = tail.rfind(b"\n")
                os.ftruncate(fd, size - len(tail) + cut + 1 if cut >= 0 else 0)
                size = os.fstat(fd).st_size
        if not size:
            writer.writeheader()
        writer.writerow(row)
        os.write(fd, buf.getvalue().encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _record(session, stage: str, shot, outcome: str, *, error: BaseException | None = None) -> None:
    art = session.meta.shot(shot.id).artifact(stage)
    if error is None:
        backend = art.backend or ""  # who made the file (None when adopted after a crash)
    else:
        chosen = session.meta.backends.get(_KIND[stage])
        backend = chosen.name if chosen else ""
    with _lock:
        t0 = _started.pop((session.id, stage, shot.id), None)
        run_started = _runs.get(session.id, "")
    append_row(ledger_path(session), {
        "run_started": run_started,
        "stage": stage,
        "shot": shot.id,
        "outcome": outcome,
        "attempts": art.attempts,
        "seconds": "" if t0 is None else f"{time.monotonic() - t0:.3f}",
        "backend": backend,
        "error": "" if error is None else f"{type(error).__name__}: {error}",
    })


@hookimpl
def session_started(session):
    with _lock:
        _runs[session.id] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@hookimpl
def shot_started(session, stage, shot, attempt):
    # Called from a worker thread; keep the first attempt's start so retries count too.
    with _lock:
        _started.setdefault((session.id, stage, shot.id), time.monotonic())


@hookimpl
def shot_completed(session, stage, shot, artifact):
    _record(session, stage, shot, "done")


@hookimpl
def shot_failed(session, stage, shot, error):
    _record(session, stage, shot, "failed", error=error)


@hookimpl
def shot_skipped(session, stage, shot, reason):
    # reason is "done" (made in an earlier run) or "adopted" (found complete after a crash)
    _record(session, stage, shot, f"skipped:{reason}")
