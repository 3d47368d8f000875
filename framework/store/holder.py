"""Who holds a session's lock: the process that takes it writes ``.lock.holder`` next to
``.lock`` (its pid, host, command and start time) and removes it before letting go, so
another process can say who is running the session.

The note is advisory and crash-safe: it is written whole or not at all (a temporary file
renamed into place), and a process killed while holding the lock leaves a note whose pid
is gone on this host; :func:`read_holder` treats that note as no holder. A note from
another host cannot be checked and is reported as it stands."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from reelforge.store.safefs import O_NOFOLLOW

HOLDER_NAME = ".lock.holder"
#: Larger notes are not ours: not read.
MAX_NOTE = 4096


def _command() -> str:
    """The reelforge subcommand this process runs (``resume``, ``serve``...), never its
    arguments (they may hold options with keys in them)."""
    args = sys.argv[1:2]
    word = args[0] if args else ""
    return word if word.isascii() and word.isalnum() else ""


def write_holder(folder: Path) -> None:
    """Record this process as the lock holder of ``folder`` (call with the lock taken)."""
    note = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = folder / f"{HOLDER_NAME}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(note))
        os.replace(tmp, folder / HOLDER_NAME)
    except OSError:  # advisory: a lock without its note still locks
        try:
            os.unlink(tmp)
        except OSError:
            pass


def clear_holder(folder: Path) -> None:
    """Remove the note (call before releasing the lock)."""
    try:
        os.unlink(folder / HOLDER_NAME)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    return True


def read_holder(folder: Path) -> dict[str, Any] | None:
    """Who holds ``folder``'s lock now: ``{pid, host, command, since, this_process}``, or
    None when no live process does (no note, an unreadable note, or a note left by a
    process that is gone)."""
    try:
        fd = os.open(folder / HOLDER_NAME, os.O_RDONLY | O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_NOTE + 1)
        note = json.loads(data) if len(data) <= MAX_NOTE else None
    except (OSError, ValueError):
        return None
    if not isinstance(note, dict):
        return None
    pid, host = note.get("pid"), note.get("host")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or not isinstance(host, str):
        return None
    if host == socket.gethostname() and not _alive(pid):
        return None  # killed while holding it: the lock went with the process
    command = note.get("command") if isinstance(note.get("command"), str) else ""
    since = note.get("since") if isinstance(note.get("since"), str) else ""
    return {"pid": pid, "host": host[:255], "command": command[:40], "since": since[:40],
            "this_process": host == socket.gethostname() and pid == os.getpid()}


def describe(holder: dict[str, Any]) -> str:
    """The holder in words: ``reelforge resume (pid 4242 on studio, since 2024-...)``."""
    what = f"reelforge {holder['command']}" if holder.get("command") else "a reelforge process"
    if holder.get("this_process"):
        what = "this process"
    since = f", since {holder['since'].replace('T', ' ')}" if holder.get("since") else ""
    return f"{what} (pid {holder['pid']} on {holder['host']}{since})"
