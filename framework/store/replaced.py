"""Replaced files: what a session set aside in ``.replaced/`` folders (the film an edit made
again, a file no record vouched for, a bad file `sessions verify --repair` moved), listed
and pruned. No record of the session points into a ``.replaced/`` folder, so pruning one
never takes anything the session still needs, and a crash part-way leaves it consistent."""

from __future__ import annotations

import os
import stat
import attrs

from reelforge.store.meta import SHOT_STAGES

REPLACED = ".replaced"


@attrs.frozen
class ReplacedFile:
    path: str
    "Its path in the session folder (``videos/.replaced/shot_003.20261205_101500.123.mp4``)."
    size: int
    "Its size in bytes (a link's own size: links are never followed)."


def _folders() -> list[str]:
    """Where move_aside puts files (relative to the session folder): beside the session's own
    files (film.mp4, its subtitles), in each stage folder and in each stage's takes folder."""
    parents = [""]
    for stage in SHOT_STAGES:
        parents += [f"{stage}/", f"{stage}/takes/"]
    return [f"{p}{REPLACED}" for p in parents]


def replaced_files(session) -> list[ReplacedFile]:
    """Every file (or link) in the session's ``.replaced/`` folders, sorted by path."""
    found = []
    for rel in _folders():
        folder = session.path / rel
        try:
            if stat.S_ISLNK(os.lstat(folder).st_mode):
                continue  # not made by reelforge: never followed
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # pruned meanwhile
                continue
            if not stat.S_ISDIR(st.st_mode):
                found.append(ReplacedFile(f"{rel}/{entry.name}", st.st_size))
    return sorted(found, key=lambda f: f.path)


def recorded_paths(session) -> set[str]:
    """Every path the session's records name (artifacts, their pending bytes, takes, the film)."""
    m = session.meta
    paths = {m.film.path} if getattr(m.film, "path", None) else set()
    for st in m.shots:
        for stage in SHOT_STAGES:
            art = st.artifact(stage)
            paths.update(p for p in (art.path, art.pending) if p)
            paths.update(t["path"] for t in art.takes if t.get("path"))
    return paths


def prune_replaced(session) -> list[ReplacedFile]:
    """Delete the files of the session's ``.replaced/`` folders (hold the session's lock:
    `Session.lock`, or ``store.open``). A file a record names is kept, whatever folder it is
    in. Each deletion stands alone, so a crash part-way leaves the rest listed, and nothing
    the session records is touched. Returns what was deleted."""
    keep = recorded_paths(session)
    removed = []
    for item in replaced_files(session):
        if item.path in keep:
            continue
        try:
            os.unlink(session.path / item.path)  # a link is removed itself, never followed
        except FileNotFoundError:
            continue
        removed.append(item)
    for rel in _folders():
        try:
            os.rmdir(session.path / rel)  # only when empty; move_aside makes it again when needed
        except OSError:
            pass
    return removed


__all__ = ["REPLACED", "ReplacedFile", "prune_replaced", "recorded_paths", "replaced_files"]
