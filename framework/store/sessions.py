"""The folder of sessions: create one, open (locked) or load (read-only) one by id, list
them newest first, and sweep the folders a kill left half made."""

from __future__ import annotations

import datetime as _dt
import os
import stat
import time
from pathlib import Path
from typing import Any, Iterator

import attrs

from reelforge.errors import SessionCorruptError, SessionError, SessionNotFoundError
from reelforge.store.meta import (
    ABANDONED,
    ABANDONED_AFTER_S,
    IN_PROGRESS,
    MAX_IDEA_CHARS,
    BackendChoice,
    Meta,
    is_session_id,
)
from reelforge.store.safefs import fsync_dir, refuse_link
from reelforge.store.session import Session
from reelforge.store.verify import VerifyReport


@attrs.frozen
class AbandonedSession:
    """A session folder whose creation was cut short (a crash before its meta file was
    written): it holds no work. Listed as EMPTY (not the ABANDONED status, which a user
    gives a session); removed by the next create()."""

    id: str
    path: Path
    reason: str = "created but never started (no meta file; nothing in it)"


class SessionStore:
    """All sessions under ``output_dir/sessions``."""

    def __init__(self, output_dir: str | os.PathLike = "output"):
        self.output_dir = Path(output_dir)
        self.root = self.output_dir / "sessions"

    def path_for(self, session_id: str) -> Path:
        """The folder of ``session_id``; refuses ids that are not session ids (no ``..``,
        no slashes, ASCII digits only), so a user-supplied id never escapes the folder."""
        if not is_session_id(session_id):
            raise SessionError(
                f"{session_id!r} is not a session id (expected session_YYYYMMDD_HHMMSS); "
                f"see `reelforge sessions list`"
            )
        return self.root / session_id

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if is_session_id(n) and (self.root / n).is_dir())

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise SessionError(f"cannot keep sessions in {self.root}: a file is in the way "
                               f"(it or one of its parents is not a folder); choose another "
                               f"--output-dir") from None
        if not self.root.is_dir():
            raise SessionError(f"cannot keep sessions in {self.root}: it is not a folder; "
                               f"choose another --output-dir")

    def create(self, idea: str, *, backends: dict[str, "BackendChoice"] | None = None,
               review: str | None = None, continuity: str | None = None,
               clock: _dt.datetime | None = None) -> "Session":
        """Create a new session folder with a fresh, unique id, lock it, and write its first
        meta (with the chosen backends, so a crash right after this resumes with them)."""
        idea = check_idea(idea)
        self._ensure_root()
        self._sweep_abandoned()
        stamp = (clock or _dt.datetime.now()).strftime("session_%Y%m%d_%H%M%S")
        for n in range(1, 10000):
            sid = stamp if n == 1 else f"{stamp}_{n}"
            try:
                os.mkdir(self.root / sid)  # atomic: two creators never get the same id
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover - 10,000 sessions in one second
            raise SessionError("could not find a free session id")
        fsync_dir(self.root)
        session = Session(self, sid)
        session.lock()
        try:
            session.meta = Meta(id=sid, idea=idea, backends=dict(backends or {}), review=review, cast={},
                                continuity=continuity)
            session._reindex()
            session.write_meta()
        except BaseException:
            session.meta = None  # type: ignore[assignment]
            session.close()  # the folder holds no meta: listed as abandoned, swept later
            raise
        return session

    def _abandoned(self, sid: str) -> AbandonedSession | None:
        """``sid`` as an AbandonedSession if its folder holds nothing but a lock and
        temporary files (a crash inside create()), else None."""
        path = self.root / sid
        try:
            names = os.listdir(path)
        except OSError:
            return None
        if all(n in (".lock", ".lock.holder") or n.endswith(".tmp") for n in names):
            return AbandonedSession(sid, path)
        return None

    def _sweep_abandoned(self) -> None:
        """Remove folders left by a crash inside create() (older than ABANDONED_AFTER_S, and
        not locked): they hold no work."""
        import filelock

        for sid in self.ids():
            path = self.root / sid
            if (path / f"{sid}_meta.json").exists() or self._abandoned(sid) is None:
                continue
            try:
                if time.time() - os.lstat(path).st_mtime < ABANDONED_AFTER_S:
                    continue
                refuse_link(path / ".lock", "lock file")
                with filelock.FileLock(str(path / ".lock"), timeout=0):
                    for name in os.listdir(path):
                        if name.endswith(".tmp"):
                            os.unlink(path / name)
                for name in (".lock.holder", ".lock"):
                    try:
                        os.unlink(path / name)
                    except FileNotFoundError:
                        pass
                os.rmdir(path)  # fails, and keeps the folder, if anything new appeared in it
            except (OSError, filelock.Timeout, SessionCorruptError):
                continue  # in use, or not ours to remove: leave it listed as abandoned

    def open(self, session_id: str) -> "Session":
        """Open an existing session for running: takes its lock, then loads it."""
        path = self.path_for(session_id)
        self._must_exist(session_id, path)
        session = Session(self, session_id)
        session.lock()
        try:
            session.load(repair=True)
            if session.meta.status == ABANDONED:  # run again on purpose: no longer given up
                session.set_status(IN_PROGRESS, session.meta.last_error)
        except BaseException:
            session.meta = None  # type: ignore[assignment]  # nothing half-loaded gets written back
            session.close()
            raise
        return session

    def load(self, session_id: str) -> "Session":
        """Load a session read-only, without its lock (for list/view)."""
        path = self.path_for(session_id)
        self._must_exist(session_id, path)
        session = Session(self, session_id)
        session.load(repair=False)
        return session

    def _must_exist(self, session_id: str, path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise SessionNotFoundError(f"no session {session_id!r} in {self.root}") from None
        if stat.S_ISLNK(st.st_mode):
            raise SessionCorruptError(path, "the session folder is a symbolic link; reelforge "
                                            "does not run sessions through links")
        if not stat.S_ISDIR(st.st_mode):
            raise SessionNotFoundError(f"no session {session_id!r} in {self.root} "
                                       f"({path} is not a folder)")

    def sessions(self) -> Iterator["Session | SessionCorruptError | AbandonedSession"]:
        """Every session, oldest first; an unreadable one is yielded as its error, and a
        folder a crash left empty as an AbandonedSession."""
        for sid in self.ids():
            try:
                yield self.load(sid)
            except SessionCorruptError as exc:
                abandoned = self._abandoned(sid)
                yield abandoned if abandoned is not None else exc

    def scan(self) -> tuple[list["Session"], list[SessionCorruptError]]:
        """(incomplete sessions newest first, unreadable sessions)."""
        incomplete, broken = [], []
        for s in self.sessions():
            if isinstance(s, Session):
                if s.meta.is_incomplete:
                    incomplete.append(s)
            elif isinstance(s, SessionCorruptError):
                broken.append(s)
        incomplete.sort(key=lambda s: s.id, reverse=True)
        return incomplete, broken

    def find_incomplete(self) -> list["Session"]:
        """Sessions not COMPLETE, newest first (unreadable ones are left out: see scan())."""
        return self.scan()[0]

    def verify(self, session_id: str, *, repair: bool = False) -> VerifyReport:
        """Read every file the session records against its recorded sha256 (and size); with
        ``repair``, set the bad ones aside and mark them todo. Takes the session's lock, so a
        session a run is using is refused (SessionLockedError). The result is recorded in
        the meta (``last_verify``) for `report` and `serve`."""
        self._must_exist(session_id, self.path_for(session_id))
        session = Session(self, session_id)
        session.lock()
        try:
            session.load(repair=True)
            report = session.verify_files()
            if repair and report.bad:
                report = attrs.evolve(report, bad=tuple(session.set_aside_bad(b) for b in report.bad), repaired=True)
            session.record_verify(report)
        finally:
            session.close()
        return report


def check_idea(idea: Any) -> str:
    if not isinstance(idea, str) or not idea.strip():
        raise SessionError("an idea is needed to start a session")
    idea = idea.strip()
    if len(idea) > MAX_IDEA_CHARS:
        raise SessionError(f"the idea is {len(idea):,} characters long; at most "
                           f"{MAX_IDEA_CHARS:,} are accepted (it is one line, not a script)")
    if "\x00" in idea:
        raise SessionError("the idea contains a NUL character")
    return idea
