"""The artifact commit protocol for one shot stage: started, checkpointed, done (file
fsynced in scratch, done record journalled, then renamed into place), checked (size and
mtime, then digest), failed, reset. A mixin of :class:`reelforge.store.session.Session`."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from reelforge.errors import SessionCorruptError, SessionError
from reelforge.store.meta import DONE, FAILED_STATE, TODO, ArtifactState
from reelforge.store.safefs import (
    contained,
    ensure_dir,
    fsync_dir,
    fsync_file,
    move_aside,
    sha256_file,
    uninterruptible,
)


class ShotRecords:
    # -- per-shot state (journalled, O(1) each)
    def mark_shot_started(self, stage: str, shot_id: int) -> int:
        """Count a new attempt; returns its number (from 1, across runs). Not fsynced: an
        attempt count lost to a power cut only means the number is used again."""
        with self._mutex:
            attempts = self.shot_state(shot_id).artifact(stage).attempts + 1
            self._log({"op": "shot", "shot": shot_id, "stage": stage,
                       "set": {"attempts": attempts}}, durable=False)
            return attempts

    def save_shot_checkpoint(self, stage: str, shot_id: int, data: dict[str, Any]) -> None:
        """Durably record a backend's resumable state for a shot (merged into earlier data)."""
        json.dumps(data)  # fail here, in the backend's thread, if it is not serialisable
        with self._mutex:
            self._log({"op": "checkpoint", "shot": shot_id, "stage": stage, "data": data})

    @uninterruptible
    def mark_shot_done(self, stage: str, shot_id: int, produced: Path, *, backend: str,
                       seed: int | None, seconds: float, fingerprint: str,
                       info: dict[str, Any] | None = None, spent: float | None = None,
                       inputs: dict[str, Any] | None = None) -> ArtifactState:
        """Commit ``produced`` (a file in the session's scratch folder) as the shot's
        artifact: fsync it, journal the done record (digest, size, mtime, and the scratch
        name), then rename it into place. See the module docstring for why in this order.
        ``inputs``: the shot's fields and backend options that made it (kept with its takes)."""
        produced = Path(produced)
        rel_pending = self._relative(produced, under=".work")
        st = os.lstat(produced)
        if not stat.S_ISREG(st.st_mode):
            raise SessionCorruptError(produced, "not a regular file (a link or a folder)")
        fsync_file(produced)
        fsync_dir(produced.parent)  # the done record's fallback (pending) must survive a power cut
        digest = sha256_file(produced)
        dest_dir = ensure_dir(self.path, stage)
        dest = dest_dir / f"shot_{shot_id:03d}{produced.suffix.lower() or '.bin'}"
        with self._mutex:
            art = self.shot_state(shot_id).artifact(stage)
            if (art.state == DONE and art.sha256 == digest and art.fingerprint == fingerprint and not art.pending
                    and art.path == dest.relative_to(self.path).as_posix() and self._check_file(art, dest) is None):
                # Committed already (these bytes, from these inputs, in place): recorded once. The
                # scratch copy goes with the scratch.
                return art
            if os.path.lexists(dest):
                move_aside(dest)  # not vouched for by any record: kept, not overwritten
            fields = {
                "state": DONE, "path": dest.relative_to(self.path).as_posix(), "sha256": digest,
                "size": st.st_size, "mtime_ns": st.st_mtime_ns, "pending": rel_pending,
                "backend": backend, "seed": seed,
                "seconds": None if seconds is None else round(seconds, 3),
                "fingerprint": fingerprint, "last_error": None, "info": dict(info or {}),
                "pinned": False, "inputs": dict(inputs or {}),
            }
            if spent is not None:
                fields["backend_seconds"] = self._spent(stage, shot_id, spent)
            # A take with exactly these bytes is the same file twice: its record goes with this
            # commit, its file after the rename (these bytes are kept, as the artifact).
            same = [t for t in art.takes if t["sha256"] == digest]
            if same:
                fields["takes"] = [t for t in art.takes if t["sha256"] != digest]
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": fields})
            os.replace(produced, dest)
            for take in same:
                try:
                    os.unlink(contained(self.path, take["path"], under=(stage,), source=self.meta_path))
                except FileNotFoundError:
                    pass
            # The rename is made durable in a group, before the next snapshot (which forgets
            # the pending name): until then the journalled record can finish it after a crash.
            self._unsynced_dirs.add(dest_dir)
            art = self.shot_state(shot_id).artifact(stage)
            art.pending = None
            return art

    def _relative(self, path: Path, *, under: str) -> str:
        try:
            rel = path.relative_to(self.path)
        except ValueError:
            raise SessionError(f"{path} is not inside session folder {self.path}") from None
        if not rel.parts or rel.parts[0] != under or ".." in rel.parts:
            raise SessionError(f"{path} is not inside {self.path / under}")
        return rel.as_posix()

    def check_shot(self, stage: str, shot_id: int) -> tuple[str | None, str | None]:
        """Check a shot's artifact for ``stage``: ``("done" | "adopted", None)`` when a done
        record vouches for the file on disk (``adopted``: a commit cut short by a crash was
        finished now), ``(None, problem)`` when a done record's file is missing or damaged,
        ``(None, None)`` when the shot is not done."""
        art = self.shot_state(shot_id).artifact(stage)
        if art.takes and art.path:
            self._settle_takes(stage, art, self.path / art.path)
        if art.state != DONE:
            return None, None
        path = contained(self.path, art.path, under=(stage,), source=self.meta_path, checked=self._checked)
        if art.pending and not os.path.lexists(path):
            if self._finish_commit(art, path):
                return "adopted", None
        problem = self._check_file(art, path)
        return ("done", None) if problem is None else (None, problem)

    @uninterruptible
    def _finish_commit(self, art: ArtifactState, dest: Path) -> bool:
        """Finish a rename a crash interrupted, if the scratch file is the recorded one."""
        src = contained(self.path, art.pending, under=(".work", dest.parent.name), source=self.meta_path,
                        checked=self._checked)
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != art.size or sha256_file(src) != art.sha256:
            return False
        ensure_dir(self.path, dest.parent.name)
        os.replace(src, dest)
        fsync_dir(dest.parent)
        art.pending = None
        art.mtime_ns = os.lstat(dest).st_mtime_ns
        return True

    def _check_file(self, art: ArtifactState, path: Path) -> str | None:
        """Why the file at ``path`` is not the one ``art`` records, or None. Size and mtime
        as recorded: trusted; otherwise the file is hashed and compared."""
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return "file is missing"
        if stat.S_ISLNK(st.st_mode):
            return "file is a symbolic link"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size != art.size:
            return "file is damaged (its size changed)"
        if art.mtime_ns is not None and st.st_mtime_ns == art.mtime_ns:
            return None
        if not art.sha256 or sha256_file(path) != art.sha256:
            return "file is damaged (its digest changed)"
        art.mtime_ns = st.st_mtime_ns  # same bytes, touched: trust the new time from now on
        return None

    def set_aside_strays(self, stage: str, shot_id: int) -> list[Path]:
        """Move files named for this shot in the stage folder, that no done record vouches
        for, into ``.replaced/``. The folder is listed once per run."""
        listing = self._listing.get(stage)
        if listing is None:
            listing = self._listing[stage] = {}
            try:
                entries = list(os.scandir(self.path / stage))
            except (FileNotFoundError, NotADirectoryError):
                entries = []
            for entry in entries:
                m = re.fullmatch(r"shot_([0-9]{3,})\.[A-Za-z0-9]+", entry.name, re.ASCII)
                if m:
                    listing.setdefault(int(m.group(1)), []).append(entry.name)
        moved = []
        for name in listing.pop(shot_id, []):
            path = self.path / stage / name
            if os.path.lexists(path):
                ensure_dir(self.path, stage)
                moved.append(move_aside(path))
        return moved

    def _spent(self, stage: str, shot_id: int, spent: float) -> float:
        before = self.shot_state(shot_id).artifact(stage).backend_seconds or 0.0
        return round(before + max(0.0, spent), 3)

    @uninterruptible
    def mark_shot_failed(self, stage: str, shot_id: int, error: str, *, spent: float | None = None) -> None:
        with self._mutex:
            fields: dict[str, Any] = {"state": FAILED_STATE, "last_error": error}
            if spent is not None:
                fields["backend_seconds"] = self._spent(stage, shot_id, spent)
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": fields}, durable=False)

    @uninterruptible
    def reset_shot(self, stage: str, shot_id: int, reason: str) -> None:
        """Forget a done artifact that is missing, damaged or stale, so it is made again."""
        with self._mutex:
            self._log({"op": "shot", "shot": shot_id, "stage": stage,
                       "set": {"state": TODO, "last_error": reason, "sha256": None,
                               "size": None, "mtime_ns": None, "pending": None, "pinned": False}})
