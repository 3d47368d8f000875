"""A session's page data for `reelforge serve`, kept up to date at the cost of what changed.

A polling page asks again and again; most of a big session is as it was. The session is
followed through :class:`reelforge.store.view.SessionView` (journal events appended since the
last look; a full read only when the meta was rewritten), and a shot's row is made again
only when its record or its planned shot changed, or it named a file not in place yet (a
commit records a file just before renaming it into place), or one of its files came or
went (a folder's listing, read again only when the folder changed). The rest of the page (story,
counts, ledger, film) is small and made each time something changed. The result equals
:func:`reelforge.web.creator.session_data` of a fresh load (the tests hold it to that).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from reelforge.redact import secrets_generation
from reelforge.store.view import SessionView
from reelforge.web.creator import SHOT_ARTIFACTS, session_data, shot_row, waiting_for_files

#: The folders of the shots' files and their takes (a file there may come or go by hand).
FOLDERS = tuple(f"{folder}{sub}" for _attr, folder in SHOT_ARTIFACTS for sub in ("", "/takes"))


class FollowedSession:
    """One session followed for a page. :meth:`data` is safe to call from several threads."""

    def __init__(self, store, session_id: str, media: Callable[[str, str | None], str | None]):
        self.view = SessionView(store, session_id)
        self.media = media
        self.lock = threading.Lock()
        # shot id -> (the ShotState, the planned Shot and the narrated flag its row was made from; the row;
        # whether the row names a file that was not in place)
        self._rows: dict[int, tuple[Any, Any, bool, dict[str, Any], bool]] = {}
        self._waiting: set[int] = set()  # rows that named a file not in place
        self._paths: dict[str, int] = {}  # a file a row names (a shot's file, a take) -> the shot's id
        self._folders: dict[str, tuple[Any, frozenset[str]]] = {}  # folder -> (its identity, its files)
        self._generation: int | None = None
        self._first = True
        self.rows_made = 0  # how many shot rows it has made in all (what the reads cost: for the tests)

    def data(self) -> dict[str, Any]:
        """The session's data as :func:`session_data` gives it, made from what changed."""
        with self.lock:
            changes = None if self._first else self.view.refresh()
            self._first = False
            session = self.view.session
            from reelforge.engine.plugins import learn_secrets

            learn_secrets(session.meta)  # before comparing: what it registers changes the masks
            if secrets_generation() != self._generation:
                self._rows.clear()
                self._generation = secrets_generation()
            touched = changes.shots if changes is not None else frozenset()
            again = self._waiting | self._files_changed()
            self._waiting = set()

            edited = set(session.meta.edited)

            def row(st, shot, narrated: bool) -> dict[str, Any]:
                hit = self._rows.get(st.id)
                if (hit is None or st.id in touched or st.id in again or hit[2] != narrated
                        or hit[3]["edited"] != (st.id in edited)
                        or (hit[0] is not st and hit[0] != st) or (hit[1] is not shot and hit[1] != shot)):
                    made = shot_row(session, st, shot, narrated, self.media)
                    waiting = waiting_for_files(made)
                    self.rows_made += 1
                    for art in (st.image, st.narration, st.video):
                        for path in (art.path, *(t.get("path") for t in art.takes)):
                            if isinstance(path, str):
                                self._paths[path] = st.id
                else:
                    made, waiting = hit[3], hit[4]
                if hit is None or hit[0] is not st or hit[1] is not shot or hit[3] is not made:
                    self._rows[st.id] = (st, shot, narrated, made, waiting)
                if waiting:
                    self._waiting.add(st.id)
                return made

            data = session_data(session, self.media, read=self.view.step_output, row=row)
            if len(self._rows) > len(session.meta.shots):  # shots left the plan
                ids = {st.id for st in session.meta.shots}
                self._rows = {i: v for i, v in self._rows.items() if i in ids}
            return data

    def _files_changed(self) -> set[int]:
        """The shots whose files appeared or went (a folder's listing, read again only when
        the folder changed) since the last look."""
        found: set[int] = set()
        root = self.view.session.path
        for folder in FOLDERS:
            try:
                st = os.lstat(root / folder)
                identity = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
            except OSError:
                identity = None
            before = self._folders.get(folder)
            if before is not None and before[0] == identity:
                continue
            names: frozenset[str] = frozenset()
            if identity is not None:
                try:
                    with os.scandir(root / folder) as entries:
                        names = frozenset(f"{folder}/{e.name}" for e in entries if e.is_file(follow_symlinks=False))
                except OSError:
                    pass
            self._folders[folder] = (identity, names)
            if before is not None:
                found.update(self._paths[p] for p in before[1] ^ names if p in self._paths)
        return found


class Followed:
    """The sessions a server follows, each read on from where it was last read (at most
    ``limit``: the first followed is dropped first). A read that fails is not read on from:
    the session is read afresh, which raises as a first read does (a session gone, a broken
    one). ``media_for(session_id)`` gives the ``media`` function of a session's data."""

    def __init__(self, store, media_for: Callable[[str], Callable[[str, str | None], str | None]], *,
                 limit: int = 64):
        self.store, self.media_for, self.limit = store, media_for, limit
        self._followed: dict[str, FollowedSession] = {}
        self._lock = threading.Lock()

    def __getitem__(self, session_id: str) -> FollowedSession:
        with self._lock:
            return self._followed[session_id]

    def data(self, session_id: str) -> dict[str, Any]:
        while True:
            with self._lock:
                follower = self._followed.get(session_id)
            fresh = follower is None
            if fresh:
                made = FollowedSession(self.store, session_id, self.media_for(session_id))  # read in full
                with self._lock:
                    follower = self._followed.setdefault(session_id, made)
                    while len(self._followed) > self.limit:
                        self._followed.pop(next(iter(self._followed)))
            try:
                return follower.data()
            except BaseException:
                with self._lock:
                    if self._followed.get(session_id) is follower:
                        del self._followed[session_id]
                if fresh:
                    raise
