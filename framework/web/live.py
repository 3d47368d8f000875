"""What a polling page of `reelforge serve` needs cheaply: whether a session changed since
the page last looked (a stamp from a few ``stat`` calls, no reading), who holds its lock,
and which step is being worked on now.

The stamp covers every file a change of the session goes through: the meta snapshot, the
journal (each shot's progress is appended to it before its file is renamed into place),
the story files, the lock holder's note, the session folder itself (a rename into it) and
the folders of the shots' and portraits' files (a file renamed into place after its record)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from reelforge.store.holder import HOLDER_NAME, describe, read_holder
from reelforge.store.meta import DONE, IN_PROGRESS, NEW, STEPS

#: The files whose change is a change of the session (beside the meta file).
WATCHED = ("journal.jsonl", "story.json", "scenes.json", "shots.json", HOLDER_NAME, "film.mp4", "",
           "images", "narration", "videos", "cast")


def stamp(folder: Path, meta_name: str) -> str:
    """A short digest of the size, times and inode of the files a change goes through."""
    parts = []
    for name in (meta_name, *WATCHED):
        try:
            st = os.lstat(folder / name) if name else os.lstat(folder)
        except OSError:
            parts.append("-")
            continue
        parts.append(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def holder_of(folder: Path, *, running_here: bool) -> dict[str, Any] | None:
    """Who holds the session's lock, for the page: None if nobody; ``mine`` when it is an
    action of this server (its buttons show that action running instead)."""
    holder = read_holder(folder)
    if holder is None:
        return None
    mine = holder["this_process"] and running_here
    text = "this server" if holder["this_process"] else describe(holder)
    return {**holder, "mine": mine, "text": text}


def working_step(steps: dict[str, str], status: str, held: bool) -> str | None:
    """The step a live run is on: the first that is not done, while a lock holder is
    alive and the session is running (a stage left half-done by a crash is not working)."""
    if not held or status not in (IN_PROGRESS, NEW):
        return None
    for step in STEPS:
        if steps.get(step) != DONE:
            return step
    return None
