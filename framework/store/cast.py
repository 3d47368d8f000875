"""The cast's records: one portrait per character, kept in ``cast/`` with a record in the
meta (``Meta.cast``, by character name) that vouches for it (digest, size, mtime), committed
as a shot's file is (fsynced in scratch, the record written with the scratch name, then the
rename), with takes (earlier portraits) under ``cast/takes/``. A portrait is written straight
into the meta snapshot: a film has a handful of characters, not thousands.
A mixin of :class:`reelforge.store.session.Session`."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

from reelforge.errors import SessionCorruptError, SessionError
from reelforge.store.meta import DONE, FAILED_STATE, TODO, ArtifactState, now
from reelforge.store.safefs import (
    contained,
    ensure_dir,
    fsync_dir,
    fsync_file,
    move_aside,
    sha256_file,
    uninterruptible,
)

#: The folder of the portraits in a session.
CAST_DIR = "cast"


def portrait_stem(name: str) -> str:
    """The file name (without suffix) of ``name``'s portrait: a readable slug and a short
    digest of the exact name, so two names never share a file and no name leaves cast/."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.casefold(), flags=re.ASCII).strip("_")[:40] or "character"
    return f"{slug}_{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


class CastRecords:
    # -- reading
    @property
    def has_cast(self) -> bool:
        """Whether the session keeps a cast (False: made before the cast step existed)."""
        return self.meta.cast is not None

    def portrait(self, name: str) -> ArtifactState | None:
        """The record of ``name``'s portrait, or None."""
        return (self.meta.cast or {}).get(name)

    def portrait_file(self, name: str) -> Path | None:
        """``name``'s portrait file when its record is done (checked to stay inside cast/)."""
        art = self.portrait(name)
        if art is None or art.state != DONE or not art.path:
            return None
        return contained(self.path, art.path, under=(CAST_DIR,), source=self.meta_path, checked=self._checked)

    def cast_work_dir(self, name: str) -> Path:
        """The scratch folder a portrait of ``name`` is made in."""
        d = ensure_dir(self.path, ".work", CAST_DIR, portrait_stem(name))
        for entry in os.scandir(d):
            if entry.is_symlink():
                os.unlink(entry.path)
        return d

    def check_portrait(self, name: str) -> str | None:
        """Why ``name``'s portrait must be made (again), or None when its record vouches for
        the file in cast/ (a commit a crash cut short is finished now)."""
        art = self.portrait(name)
        if art is None or art.state != DONE:
            return "not made yet"
        path = self.portrait_file(name)
        with self._mutex:
            if art.pending and not os.path.lexists(path) and self._finish_commit(art, path):
                self.write_meta()
                return None
            return self._check_file(art, path)

    # -- writing
    def start_cast(self) -> None:
        """Give a session made before the cast step a cast (empty, to be made)."""
        with self._mutex:
            if self.meta.cast is None:
                self.meta.cast = {}
                self.write_meta()

    @uninterruptible
    def mark_portrait_started(self, name: str) -> int:
        """Count an attempt at ``name``'s portrait; returns its number (from 1, across runs)."""
        with self._mutex:
            self.start_cast()
            art = self.meta.cast.setdefault(name, ArtifactState())
            art.attempts += 1
            art.updated = now()
            self.write_meta()
            return art.attempts

    @uninterruptible
    def mark_portrait_failed(self, name: str, error: str) -> None:
        with self._mutex:
            self.start_cast()
            art = self.meta.cast.setdefault(name, ArtifactState())
            if art.state != DONE:
                art.state = FAILED_STATE
            art.last_error, art.updated = error, now()
            self.write_meta()

    @uninterruptible
    def commit_portrait(self, name: str, produced: Path, *, backend: str, seed: int | None, seconds: float | None,
                        fingerprint: str | None, info: dict[str, Any] | None = None,
                        pinned: bool = False) -> ArtifactState:
        """Commit ``produced`` (a file in ``.work/cast/``) as ``name``'s portrait: fsync it,
        write the record (with the scratch name), then rename it into cast/. The portrait
        it replaces, if any, is kept as a take first."""
        produced = Path(produced)
        rel_pending = self._relative(produced, under=".work")
        if not rel_pending.startswith(f".work/{CAST_DIR}/"):
            raise SessionError(f"{produced} is not in the cast's scratch folder")
        st = os.lstat(produced)
        if not stat.S_ISREG(st.st_mode):
            raise SessionCorruptError(produced, "not a regular file (a link or a folder)")
        fsync_file(produced)
        fsync_dir(produced.parent)
        digest = sha256_file(produced)
        dest_dir = ensure_dir(self.path, CAST_DIR)
        dest = dest_dir / f"{portrait_stem(name)}{produced.suffix.lower() or '.png'}"
        with self._mutex:
            self.start_cast()
            art = self.meta.cast.get(name)
            if art is not None and art.state == DONE:
                self.keep_portrait_as_take(name, "replaced")
                art = self.meta.cast[name]
            art = art or ArtifactState()
            if os.path.lexists(dest):
                move_aside(dest)  # no record vouches for it: kept, not overwritten
            art.state, art.path, art.sha256, art.size, art.mtime_ns = (
                DONE, dest.relative_to(self.path).as_posix(), digest, st.st_size, st.st_mtime_ns)
            art.pending, art.backend, art.seed, art.fingerprint = rel_pending, backend, seed, fingerprint
            art.seconds = None if seconds is None else round(seconds, 3)
            art.info, art.last_error, art.pinned, art.updated = dict(info or {}), None, pinned, now()
            self.meta.cast[name] = art
            self.write_meta()  # the record, with the scratch name: a crash now is finished on the next check
            os.replace(produced, dest)
            fsync_dir(dest_dir)
            art.pending = None
            art.mtime_ns = os.lstat(dest).st_mtime_ns
            self.write_meta()
            return art

    @uninterruptible
    def keep_portrait_as_take(self, name: str, reason: str) -> dict | None:
        """Move ``name``'s portrait to ``cast/takes/<stem>.<n>.<ext>``, recorded as take ``n``;
        the portrait is then to be made again. Returns the take (None if there was none)."""
        with self._mutex:
            art = self.portrait(name)
            if art is None or art.state != DONE or not art.path:
                return None
            src = self.path / art.path
            n = max((t["n"] for t in art.takes), default=0) + 1
            ensure_dir(self.path, CAST_DIR, "takes")
            dest = self.path / CAST_DIR / "takes" / f"{portrait_stem(name)}.{n}{src.suffix}"
            take = {"n": n, "path": dest.relative_to(self.path).as_posix(), "sha256": art.sha256,
                    "size": art.size, "mtime_ns": art.mtime_ns, "fingerprint": art.fingerprint,
                    "seed": art.seed, "backend": art.backend, "prompt": reason,
                    "seconds": art.seconds, "created": art.updated, "info": dict(art.info), "rejected": False}
            art.takes = [*art.takes, take]
            art.state, art.sha256, art.size, art.mtime_ns, art.pending, art.pinned = TODO, None, None, None, None, False
            art.last_error = reason
            self.write_meta()
            if os.path.lexists(src):
                os.replace(src, dest)
                fsync_dir(dest.parent)
                fsync_dir(src.parent)
            return take

    @uninterruptible
    def redo_portrait(self, name: str, seed: int) -> None:
        """Keep ``name``'s portrait as a take and have the next run make it with ``seed``."""
        with self._mutex:
            self.start_cast()
            self.keep_portrait_as_take(name, "redo")
            art = self.meta.cast.setdefault(name, ArtifactState())
            art.seed, art.pinned, art.updated = seed, False, now()
            self.write_meta()

    @uninterruptible
    def use_portrait_take(self, name: str, n: int) -> ArtifactState:
        """Make take ``n`` of ``name``'s portrait the portrait again (chosen: kept even though
        the character's description moved on); the current one becomes a take."""
        with self._mutex:
            art = self.portrait(name)
            take = next((t for t in (art.takes if art else []) if t["n"] == n), None)
            if take is None:
                have = ", ".join(str(t["n"]) for t in (art.takes if art else [])) or "none"
                raise SessionError(f"{name}'s portrait has no take {n} (takes: {have})")
            src = contained(self.path, take["path"], under=(CAST_DIR,), source=self.meta_path)
            if self._check_file_like(take, src) is not None:
                raise SessionError(f"take {n} of {name}'s portrait ({take['path']}) is missing or damaged")
            if art.state == DONE:
                self.keep_portrait_as_take(name, f"replaced by take {n}")
            dest = ensure_dir(self.path, CAST_DIR) / f"{portrait_stem(name)}{src.suffix}"
            if os.path.lexists(dest):
                move_aside(dest)
            art.state, art.path, art.sha256, art.size = DONE, dest.relative_to(self.path).as_posix(), \
                take["sha256"], take["size"]
            art.mtime_ns, art.fingerprint, art.seed = take.get("mtime_ns"), take.get("fingerprint"), take.get("seed")
            art.backend, art.seconds, art.info = take.get("backend"), take.get("seconds"), dict(take.get("info") or {})
            art.last_error, art.pinned, art.updated = None, True, now()
            art.takes = [t for t in art.takes if t["n"] != n]
            art.pending = None
            os.replace(src, dest)  # a take's move: the record follows at once (a crash between leaves the take file)
            fsync_dir(dest.parent)
            self.write_meta()
            return art
