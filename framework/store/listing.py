"""Listing sessions for people: ids resolved from a prefix or `latest`, the newest-first order, and
one plain summary per session (status, counts, size) that `sessions list`, serve and the report share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelforge.errors import SessionCorruptError

#: How a folder that is not a readable session is listed.
EMPTY, UNREADABLE = "EMPTY", "UNREADABLE"



def describe_session(store, session_id: str) -> str:
    """``session_... (STATUS) idea`` for a line of a listing."""
    import textwrap

    from reelforge.redact import for_terminal

    try:
        meta = store.load(session_id).meta
    except SessionCorruptError:
        import os

        try:  # only a lock and temporary files: a crash inside create() left it
            empty = all(n in (".lock", ".lock.holder") or n.endswith(".tmp") for n in os.listdir(store.root / session_id))
        except OSError:
            empty = False
        return f"{session_id} ({EMPTY if empty else UNREADABLE})"
    idea = textwrap.shorten(for_terminal(meta.idea, newlines=False), 60, placeholder="...")
    return f"{session_id} ({meta.status}) {idea}"


def session_sort_key(session_id: str) -> tuple[str, int]:
    """Orders ids by creation: session_..._153000 < session_..._153000_2 < ..._153000_10."""
    stamp, _, n = session_id[:23], session_id[23:24], session_id[24:]
    return stamp, int(n) if n.isdigit() else 1


def resolve_session_id(store, text: str) -> str:
    """The session id ``text`` names: an id, a unique start of one (with or without the
    ``session_`` prefix), or ``latest`` (the newest created). The result is a valid session
    id (reelforge.store.meta.is_session_id); an unknown or ambiguous name is a SessionError."""
    import re

    from reelforge.errors import SessionIdError, SessionNotFoundError
    from reelforge.redact import for_terminal
    from reelforge.store.meta import is_session_id

    text = text.strip()
    if is_session_id(text):
        return text  # an exact id wins even where it starts a longer one (..._153000_2)
    shown = for_terminal(text, newlines=False)
    ids = store.ids()
    if text.casefold() == "latest":
        if not ids:
            raise SessionNotFoundError(f"no sessions in {store.root}")
        return max(ids, key=session_sort_key)
    prefix = text if text.startswith("session_") else f"session_{text}"
    if not text or not re.fullmatch(r"session_[0-9_]*", prefix, re.ASCII):
        raise SessionIdError(f"{shown!r} is not a session id (expected session_YYYYMMDD_HHMMSS, a unique "
                           f"start of one such as 20261201_1530, or latest); see `reelforge sessions list`")
    matches = sorted((i for i in ids if i.startswith(prefix)), key=session_sort_key, reverse=True)
    if not matches:
        raise SessionNotFoundError(f"no session matches {shown!r} in {store.root}; "
                                   f"see `reelforge sessions list`")
    if len(matches) > 1:
        listed = "\n".join(f"  {describe_session(store, m)}" for m in matches[:10])
        more = f"\n  ... and {len(matches) - 10:,} more" if len(matches) > 10 else ""
        raise SessionIdError(f"{shown!r} matches {len(matches):,} sessions; give more of the id:\n"
                           f"{listed}{more}")
    return matches[0]


def entry_id(entry) -> str:
    if isinstance(entry, SessionCorruptError):
        path = Path(entry.path)
        return path.parent.name if path.parent.name.startswith("session_") else path.name
    return entry.id


def entry_status(entry) -> str:
    from reelforge.store.sessions import AbandonedSession

    if isinstance(entry, AbandonedSession):
        return EMPTY
    if isinstance(entry, SessionCorruptError):
        return UNREADABLE
    return entry.meta.status


def step_counts(meta) -> dict[str, dict[str, int]]:
    """Done and total for every step: 0 or 1 of 1 for story, scene_graph, shots and
    assemble, shots for images and videos."""
    from reelforge.store.meta import DONE, SHOT_STAGES, STEPS

    counts = {}
    for step in STEPS:
        if step in SHOT_STAGES:
            done, total = meta.counts(step)
        else:
            done, total = int(meta.steps.get(step) == DONE), 1
        counts[step] = {"done": done, "total": total}
    return counts


def session_summary(s) -> dict[str, Any]:
    from reelforge.store.sessions import AbandonedSession

    if isinstance(s, AbandonedSession):
        return {"id": s.id, "status": EMPTY, "error": s.reason}
    if isinstance(s, SessionCorruptError):
        return {"id": entry_id(s), "status": UNREADABLE, "error": str(s)}
    m = s.meta
    return {"id": m.id, "status": m.status, "idea": m.idea, "steps": m.steps, "counts": step_counts(m),
            "created": m.created, "updated": m.updated, "last_error": m.last_error,
            "edited": list(m.edited), "film_stale": s.film_stale}


def folder_size(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path``, links not followed (counted as themselves)."""
    import os

    files = size = 0
    for folder, dirs, names in os.walk(path, followlinks=False):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
            files += 1
    return files, size


def newest_first(store) -> list:
    """Every entry of ``store.sessions()`` (sessions, damaged or abandoned folders), newest first."""
    return sorted(store.sessions(), key=lambda e: session_sort_key(entry_id(e)), reverse=True)
