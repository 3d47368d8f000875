"""The session store and its checkpoint protocol.

A session is a folder ``output/sessions/session_YYYYMMDD_HHMMSS/`` holding the meta file
``session_YYYYMMDD_HHMMSS_meta.json``, the stage outputs (story.json, scenes.json,
shots.json, images/, videos/, film.mp4) and ``journal.jsonl``.

Durability: every file is written atomically (temp file, fsync, os.replace, directory
fsync). Per-shot progress is appended to the journal (one JSON line per event); the meta is
a snapshot that folds the journal in, rewritten only when the journal has grown as long as
the shot list, so the checkpoint cost per shot does not grow with the session. Readers load
the meta and replay the journal events newer than the snapshot.

Committing a shot's file: the file is fsynced in the shot's scratch folder, then the
"done" event (its digest, size, mtime and scratch name) is journalled and fsynced, then
the file is renamed into place. A crash between the two leaves a done record whose file
is still in scratch; the next run finishes the rename after checking the digest. A file
in images/ or videos/ that no done record vouches for is never trusted: it is moved
aside and the shot is made again.

Everything read from a session folder is untrusted: stored paths must stay inside the
folder, and nothing is written through a symbolic link (see :mod:`reelforge.store.safefs`)."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelforge.errors import SessionCorruptError, SessionLockedError
from reelforge.records import ShotPlan, structure, to_json
from reelforge.redact import redact
from reelforge.store.cast import CastRecords
from reelforge.store.journal import SessionJournal
from reelforge.store.meta import (
    AWAITING_REVIEW,
    COMPLETE,
    DONE,
    FAILED,
    FILM_NAME,
    IN_PROGRESS,
    NEW,
    STEP_FILES,
    TODO,
    BackendChoice,
    Meta,
    ShotState,
    now,
    read_json,
)
from reelforge.store.safefs import atomic_write_text, ensure_dir, refuse_link, sha256_file, uninterruptible
from reelforge.store.shots import ShotRecords
from reelforge.store.takes import Takes
from reelforge.store.verify import Verification

if TYPE_CHECKING:
    from reelforge.store.sessions import SessionStore


class Session(SessionJournal, ShotRecords, Takes, Verification, CastRecords):
    """One session: its files, meta and journal. Thread-safe for the runner's workers."""

    def __init__(self, store: "SessionStore", session_id: str):
        self.store = store
        self.id = session_id
        self.path = store.path_for(session_id)
        self.meta: Meta = None  # type: ignore[assignment]
        self._lock_file: Any = None
        self._mutex = threading.RLock()
        self._journal = None
        self._journal_events = 0
        self._index: dict[int, ShotState] = {}
        self._checked: set[str] = set()  # folders found free of links (see safefs.contained)
        self._unsynced_dirs: set[Path] = set()  # folders with renames not yet fsynced
        self._listing: dict[str, dict[int, list[str]]] = {}
        self._meta_identity: tuple[int, int, int, int] | None = None  # the meta file last read (see catch_up)
        self._followed: tuple[int | None, int, int] = (None, 0, 0)  # the journal: inode, bytes, lines read

    # -- files
    @property
    def meta_path(self) -> Path:
        return self.path / f"{self.id}_meta.json"

    @property
    def journal_path(self) -> Path:
        return self.path / "journal.jsonl"

    def artifact_path(self, stage: str, shot_id: int, suffix: str) -> Path:
        return self.path / stage / f"shot_{shot_id:03d}{suffix}"

    def work_dir(self, stage: str, shot_id: int) -> Path:
        """The shot's scratch folder (a real folder inside the session; any links a
        hostile folder planted in it are removed, never followed)."""
        d = ensure_dir(self.path, ".work", stage, f"shot_{shot_id:03d}")
        for entry in os.scandir(d):
            if entry.is_symlink():
                os.unlink(entry.path)  # removes the link itself; its target is untouched
        return d

    def scratch_dir(self) -> Path:
        """``.work/`` itself: for session-level scratch files such as a film being assembled."""
        return ensure_dir(self.path, ".work")

    def clear_scratch(self) -> None:
        """Remove ``.work/`` once the session is COMPLETE: it holds only scratch (every
        artifact has been renamed out of it). Links in it are removed, never followed."""
        work = self.path / ".work"
        try:
            if stat.S_ISDIR(os.lstat(work).st_mode):
                shutil.rmtree(work)
        except FileNotFoundError:
            pass
        except OSError as exc:  # scratch left behind is untidy, not harmful
            warnings.warn(f"reelforge: could not remove {work}: {exc}", RuntimeWarning, stacklevel=2)

    @property
    def film_path(self) -> Path:
        return self.path / FILM_NAME

    def shot_state(self, shot_id: int) -> ShotState:
        try:
            return self._index[shot_id]
        except KeyError:
            raise KeyError(shot_id) from None

    def _reindex(self) -> None:
        self._index = {s.id: s for s in self.meta.shots}

    # -- locking
    def lock(self) -> None:
        """Take the session's exclusive lock, or raise SessionLockedError at once."""
        lock_path = self.path / ".lock"
        refuse_link(self.path, "session folder")
        refuse_link(lock_path, "lock file")
        import filelock  # here, not at import: `sessions list` takes no lock

        lock = filelock.FileLock(str(lock_path), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            from reelforge.store.holder import describe, read_holder

            holder = read_holder(self.path)
            who = f" ({describe(holder)})" if holder else ""
            raise SessionLockedError(
                f"session {self.id} is being run by another reelforge process{who} "
                f"(lock {lock_path} is held); wait for it to finish or stop it"
            ) from None
        self._lock_file = lock
        from reelforge.store.holder import write_holder

        write_holder(self.path)

    @property
    def locked(self) -> bool:
        return self._lock_file is not None

    @uninterruptible
    def close(self) -> None:
        """Fold the journal into the meta and release the lock. The lock is released even
        if folding fails (the journal is kept and replayed next time)."""
        with self._mutex:
            try:
                if self.locked and self.meta is not None and self._journal_events:
                    self.compact()
            finally:
                if self._journal is not None:
                    try:
                        self._journal.close()
                    except OSError:
                        pass
                    self._journal = None
                if self._lock_file is not None:
                    from reelforge.store.holder import clear_holder

                    clear_holder(self.path)
                    self._lock_file.release()
                    self._lock_file = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- stage outputs
    def read_step_output(self, step: str) -> Any | None:
        """The saved Story/SceneGraph/ShotPlan of ``step``, or None if there is no file.
        A file that exists but does not parse is a SessionCorruptError naming it."""
        name, cls = STEP_FILES[step]
        path = self.path / name
        if not os.path.lexists(path):
            return None
        refuse_link(path, name)
        data = read_json(path)
        try:
            return structure(data, cls, name)
        except RecursionError:
            raise SessionCorruptError(path, "data nested too deeply") from None
        except ValueError as exc:
            raise SessionCorruptError(path, str(exc)) from exc

    @uninterruptible
    def save_step_output(self, step: str, value: Any) -> None:
        """Write story.json/scenes.json/shots.json atomically, then mark the step done."""
        name, _cls = STEP_FILES[step]
        atomic_write_text(self.path / name, redact(to_json(value)))  # as every session file is
        with self._mutex:
            if step == "shots":
                self._sync_shots(value)
            self.meta.steps[step] = DONE
            self.meta.step_checkpoints.pop(step, None)  # the output supersedes the parts
            self._touch_status()
            self.write_meta()

    @uninterruptible
    def adopt_step_output(self, step: str, value: Any) -> bool:
        """Bring the meta in line with a step output found on disk: the step is done and,
        for the shot plan, there is one shot state per planned shot (a crash can come right
        after shots.json is written, and people edit shots.json by hand). States of shots
        no longer planned move to ``removed_shots``. Returns whether the meta changed (it
        is then written)."""
        with self._mutex:
            changed = False
            if step == "shots":
                changed = self._sync_shots(value)
            if self.meta.steps.get(step) != DONE:
                self.meta.steps[step] = DONE
                self.meta.step_checkpoints.pop(step, None)
                self._touch_status()
                changed = True
            if changed:
                self.write_meta()
            return changed

    def _sync_shots(self, plan: ShotPlan) -> bool:
        ids = [s.id for s in plan.shots]
        if ids == [s.id for s in self.meta.shots]:
            return False
        known = {s.id: s for s in self.meta.shots}
        planned = set(ids)
        self.meta.removed_shots.extend(s for s in self.meta.shots if s.id not in planned)
        self.meta.shots = [known.get(i, ShotState(id=i)) for i in ids]
        self._reindex()
        return True

    @uninterruptible
    def save_step_checkpoint(self, step: str, data: dict[str, Any]) -> None:
        """Durably record a story writer's partial work for ``step`` (merged)."""
        json.dumps(data)
        with self._mutex:
            self.meta.step_checkpoints[step] = {**self.meta.step_checkpoints.get(step, {}), **data}
            self.write_meta()

    # -- session-level state (rare: written straight into the meta)
    @uninterruptible
    def set_backends(self, choices: dict[str, BackendChoice]) -> None:
        with self._mutex:
            if self.meta.backends == choices:
                return
            self.meta.backends = dict(choices)
            self.write_meta()

    @uninterruptible
    def mark_step(self, step: str, state: str, error: str | None = None) -> None:
        with self._mutex:
            self.meta.steps[step] = state
            if error is not None:
                self.meta.last_error = error
            self._touch_status()
            self.write_meta()

    @uninterruptible
    def set_continuity(self, continuity: str | None) -> None:
        """Record how the clips of a scene follow each other (None: they do not)."""
        with self._mutex:
            if self.meta.continuity != continuity:
                self.meta.continuity = continuity
                self.write_meta()

    @uninterruptible
    def approve(self) -> None:
        """Open the review gate: the next run goes on to the clips."""
        with self._mutex:
            self.meta.approved = True
            if self.meta.status == AWAITING_REVIEW:
                self.meta.status = IN_PROGRESS
            self.write_meta()

    @uninterruptible
    def add_step_usage(self, step: str, **counts: float) -> None:
        """Add to the cost ledger of a story step (seconds, attempts, tokens)."""
        with self._mutex:
            usage = self.meta.step_usage.setdefault(step, {})
            for key, value in counts.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    usage[key] = round(usage.get(key, 0) + value, 3)
            self.write_meta()

    @uninterruptible
    @uninterruptible
    def mark_edited(self, shot_id: int) -> None:
        """Record that shot ``shot_id`` was changed by the user (an edit, a redo, a chosen
        take): a COMPLETE session has work pending again (IN_PROGRESS) until its film is
        made again, and the shot shows as edited."""
        with self._mutex:
            if shot_id not in self.meta.edited:
                self.meta.edited = sorted({*self.meta.edited, shot_id})
            if self.meta.status == COMPLETE:
                self.meta.status = IN_PROGRESS
            self.write_meta()

    @uninterruptible
    def film_is_current(self) -> None:
        """The film on disk was made from the shots as they are: the session is COMPLETE."""
        with self._mutex:
            if self.meta.status != COMPLETE or self.meta.edited:
                self.meta.status, self.meta.edited, self.meta.last_error = COMPLETE, [], None
                self.write_meta()

    @property
    def film_stale(self) -> bool:
        """The film on disk predates the shots' edits: it is made again on the next run."""
        return self.meta.film.state == DONE and bool(self.meta.edited)

    def set_status(self, status: str, error: str | None = None) -> None:
        with self._mutex:
            self.meta.status = status
            self.meta.last_error = error
            self.write_meta()

    def _touch_status(self) -> None:
        if self.meta.status in (NEW, FAILED) and any(v == DONE for v in self.meta.steps.values()):
            self.meta.status = IN_PROGRESS

    # -- the film
    def check_film(self, fingerprint: str) -> str | None:
        """Why the film must be assembled (again), or None if film.mp4 is the one its
        record vouches for, made from these clips (``fingerprint``)."""
        f = self.meta.film
        if self.meta.steps.get("assemble") != DONE or f.state != DONE:
            return "not assembled yet"
        problem = self._check_file(f, self.film_path)
        if problem is None and f.fingerprint != fingerprint:
            problem = "its clips, voices or settings changed"
        for name in f.info.get("subtitles", []) if problem is None else ():
            if name not in ("film.srt", "film.vtt") or not (self.path / name).is_file():
                problem = f"its subtitle file {name} is missing"
        return problem

    @uninterruptible
    def set_film_settings(self, settings: dict[str, Any]) -> None:
        with self._mutex:
            if self.meta.film_settings != settings:
                self.meta.film_settings = dict(settings)
                self.write_meta()

    @uninterruptible
    def mark_film_done(self, path: Path, seconds: float, fingerprint: str | None = None,
                       info: dict[str, Any] | None = None) -> None:
        """Record film.mp4 (already verified and in place) as done: the session is COMPLETE."""
        with self._mutex:
            st = os.lstat(path)
            f = self.meta.film
            f.state, f.path, f.seconds, f.updated = DONE, path.name, round(seconds, 3), now()
            f.sha256, f.size, f.mtime_ns, f.last_error = sha256_file(path), st.st_size, st.st_mtime_ns, None
            f.fingerprint = fingerprint
            f.info = dict(info or {})
            self.meta.steps["assemble"] = DONE
            self.meta.status = COMPLETE
            self.meta.edited = []
            self.meta.last_error = None
            self.compact()

    @uninterruptible
    def reset_film(self, reason: str) -> None:
        with self._mutex:
            f = self.meta.film
            f.state, f.last_error, f.sha256, f.size, f.mtime_ns = TODO, reason, None, None, None
            self.meta.steps["assemble"] = TODO
            if self.meta.status == COMPLETE:
                self.meta.status = IN_PROGRESS
            self.write_meta()

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.meta.status if self.meta else '?'}>"
