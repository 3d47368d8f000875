"""A session's meta snapshot and journal: loading (checked field by field, paths kept
inside the folder), replaying the journal, appending events, and folding the journal into a
new snapshot. A mixin of :class:`reelforge.store.session.Session`."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path
from typing import Any

from reelforge.errors import SessionCorruptError, SessionError
from reelforge.records import structure
from reelforge.redact import redact
from reelforge.store.meta import (
    _EXACT,
    _FIELD_TYPES,
    _PLAIN,
    DONE,
    FILM_NAME,
    SCHEMA_VERSION,
    SHOT_STAGES,
    STATES,
    STATUSES,
    ArtifactState,
    Meta,
    ShotState,
    _check_field,
    _meta_converter,
    now,
    parse_json,
    read_json,
)
from reelforge.store.safefs import (
    atomic_write_bytes,
    atomic_write_text,
    check_contained,
    file_identity,
    fsync_dir,
    may_write,
    open_nofollow,
    refuse_link,
    uninterruptible,
)


class SessionJournal:
    # -- loading
    def load(self, *, repair: bool) -> None:
        try:
            self._load(repair=repair)
        except SessionCorruptError:
            self.meta = None  # type: ignore[assignment]
            raise
        except RecursionError:
            self.meta = None  # type: ignore[assignment]
            raise SessionCorruptError(self.meta_path, "data nested too deeply") from None

    def _load(self, *, repair: bool) -> None:
        self._meta_identity = None  # until the meta has been read whole
        try:
            st = os.lstat(self.meta_path)
        except FileNotFoundError:
            raise SessionCorruptError(self.meta_path, "file is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise SessionCorruptError(self.meta_path, "not a regular file")
        identity = file_identity(st)  # taken before reading: a rewrite from now on is seen as one
        data = read_json(self.meta_path)
        if not isinstance(data, dict):
            raise SessionCorruptError(self.meta_path, "expected a JSON object")
        # The shot states are built and checked in one pass here (thousands of them: cattrs
        # would take most of the load time); the rest goes through cattrs.
        self._checked = set()
        shots = self._shot_states(data.pop("shots", []), "shots")
        removed = self._shot_states(data.pop("removed_shots", []), "removed_shots", paths=False)
        try:
            self.meta = structure(data, Meta, "meta", strict=False)
        except ValueError as exc:
            raise SessionCorruptError(self.meta_path, str(exc)) from exc
        self.meta.shots, self.meta.removed_shots = shots, removed
        if self.meta.id != self.id:
            raise SessionCorruptError(self.meta_path, f"it belongs to session {self.meta.id!r}")
        if self.meta.schema_version > SCHEMA_VERSION:
            raise SessionCorruptError(
                self.meta_path, f"schema version {self.meta.schema_version} is newer than this "
                                f"reelforge understands ({SCHEMA_VERSION}); upgrade reelforge")
        self._check_meta()
        self._reindex()
        self._replay(repair=repair)
        self._meta_identity = identity

    def _check_meta(self) -> None:
        """Refuse a meta whose values cannot be right (wrong types, unknown states, paths
        that leave the session folder), naming the file."""
        m = self.meta
        where = self.meta_path
        if m.status not in STATUSES:
            raise SessionCorruptError(where, f"status {m.status!r} is not one of {', '.join(STATUSES)}")
        for step, state in m.steps.items():
            if state not in STATES:
                raise SessionCorruptError(where, f"step {step!r} has state {state!r}")
        if isinstance(m.journal_seq, bool) or m.journal_seq < 0:
            raise SessionCorruptError(where, "journal_seq is negative")
        if m.film.path is not None and m.film.path != FILM_NAME:
            raise SessionCorruptError(where, f"film path {m.film.path!r} is not {FILM_NAME}")
        self._check_artifact(m.film, None, "film", where, paths=False)
        for name, portrait in (m.cast or {}).items():
            self._check_artifact(portrait, "cast", f"cast portrait of {name!r}", where)
        music = m.film_settings.get("music")
        if music is not None:  # mixed into the film: music.<ext> at the session root, nothing else
            from reelforge.store.meta import music_file

            music_file(self.path, music, where)

    def _shot_states(self, raw: Any, what: str, *, paths: bool = True) -> list[ShotState]:
        where = self.meta_path
        if not isinstance(raw, list):
            raise SessionCorruptError(where, f"{what} is not a list")
        states, seen = [], set()
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise SessionCorruptError(where, f"{what}[{i}] is not an object")
            sid = item.get("id")
            if isinstance(sid, bool) or not isinstance(sid, int) or sid < 1:
                raise SessionCorruptError(where, f"{what}[{i}]: shot id {sid!r} is not a positive integer")
            if sid in seen and paths:
                raise SessionCorruptError(where, f"shot {sid} is listed twice")
            seen.add(sid)
            arts = {}
            for stage, attr in SHOT_STAGES.items():
                fields = item.get(attr, {})
                if not isinstance(fields, dict):
                    raise SessionCorruptError(where, f"shot {sid} {stage} is not an object")
                known = {}
                for key, value in fields.items():
                    types = _EXACT.get(key)
                    if types is None:
                        continue  # a newer reelforge's extra fields are ignored
                    if key in _PLAIN and type(value) in types:
                        known[key] = value  # the common case, checked by its type alone
                        continue
                    problem = _check_field(key, value)
                    if problem:
                        raise SessionCorruptError(where, f"shot {sid} {stage}: {problem}")
                    known[key] = value
                art = ArtifactState(**known)
                self._check_paths(art, stage, where, paths)
                if art.state == DONE and (art.path is None or art.size is None):
                    raise SessionCorruptError(where, f"shot {sid} {stage} is marked done without a file")
                arts[attr] = art
            states.append(ShotState(id=sid, **arts))
        return states

    def _check_artifact(self, art: ArtifactState, stage: str | None, what: str, where: Path, *,
                        paths: bool = True) -> None:
        for key in _FIELD_TYPES:
            problem = _check_field(key, getattr(art, key))
            if problem:
                raise SessionCorruptError(where, f"{what}: {problem}")
        self._check_paths(art, stage, where, paths)
        if art.state == DONE and (art.path is None or art.size is None):
            raise SessionCorruptError(where, f"{what} is marked done without a file")

    def _check_paths(self, art: ArtifactState, stage: str | None, where: Path, paths: bool) -> None:
        if paths and art.path is not None:
            check_contained(self.path, art.path, under=(stage,), source=where, checked=self._checked)
        if paths:
            for take in art.takes:
                check_contained(self.path, take["path"], under=(stage,), source=where, checked=self._checked)
        if paths and art.pending is not None:
            check_contained(self.path, art.pending, under=(".work", stage), source=where, checked=self._checked)

    def _replay(self, *, repair: bool) -> None:
        path = self.journal_path
        self._followed = (None, 0, 0)  # (the journal's inode, bytes read, lines read)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            raise SessionCorruptError(path, "not a regular file (a link or a folder)")
        with open(open_nofollow(path, os.O_RDONLY), "rb", closefd=True) as fh:
            inode = os.fstat(fh.fileno()).st_ino
            data = fh.read()
        good_bytes, lines, _shots = self._replay_lines(data, 0, repair=repair)
        self._followed = (inode, good_bytes, lines)
        if repair and good_bytes < st.st_size:
            fd = open_nofollow(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, good_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _replay_lines(self, data: bytes, before: int, *, repair: bool) -> tuple[int, int, set[int]]:
        """Apply the journal events in ``data`` (the journal from line ``before + 1`` on) that
        are newer than the meta. A torn last line (a crash, or a writer mid-append) is not
        there yet. Returns (bytes of complete lines, lines read in all, ids of the shots the
        applied events are about)."""
        path = self.journal_path
        lines = data.splitlines(keepends=True)
        good_bytes, good_lines, shots = 0, before, set()
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            try:
                event = parse_json(line, path, f"line {before + i + 1}: ")
                self._check_event(event, before + i + 1)
            except SessionCorruptError as exc:
                if not last:
                    raise
                if line.endswith(b"\n"):
                    # Not a torn append (those never end in a newline): something wrote a bad
                    # line. Left out like a torn one, but said, so damage is never unseen.
                    warnings.warn(f"reelforge: {path}: the last line is complete but not a valid "
                                  f"journal event ({exc.reason}); it is left out"
                                  f"{' and removed' if repair else ''}", RuntimeWarning, stacklevel=3)
                break  # a torn final line: the crash hit mid-append, so it never counted
            if not line.endswith(b"\n"):
                break  # complete JSON but no newline: still a torn append
            good_bytes += len(line)
            good_lines += 1
            if event["seq"] > self.meta.journal_seq:
                self._apply(event)
                self._journal_events += 1
                shots.add(event["shot"])
        return good_bytes, good_lines, shots

    def catch_up(self) -> set[int] | None:
        """Bring a session loaded read-only (:meth:`SessionStore.load`) up to date with its
        files, reading only the journal events appended since the last read. Returns the
        ids of the shots whose records changed, or None when it was read again in full (the
        meta was rewritten: a compaction or a session-level change). Never writes and takes
        no lock; a torn last line is read as not there yet, exactly as a load reads it."""
        if self.locked:
            raise SessionError(f"session {self.id} is open for writing; catch_up is for a read-only load")
        if self.meta is None or self._meta_identity is None or self._meta_rewritten():
            return self._reload()
        path = self.journal_path
        inode, offset, lines = self._followed
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return set() if offset == 0 else self._reload()
        if not stat.S_ISREG(st.st_mode) or (inode is not None and st.st_ino != inode) or st.st_size < offset:
            return self._reload()  # replaced or cut short without a new meta: read it all again
        if st.st_size == offset:
            return set()
        with open(open_nofollow(path, os.O_RDONLY), "rb", closefd=True) as fh:
            if inode is not None and os.fstat(fh.fileno()).st_ino != inode:
                return self._reload()
            inode = os.fstat(fh.fileno()).st_ino
            fh.seek(offset)
            data = fh.read()
        self._checked = set()  # the new events' paths are checked against the folders as they are now
        try:
            good_bytes, lines, shots = self._replay_lines(data, lines, repair=False)
        except BaseException:
            self._meta_identity = None  # half applied: the next look reads it all again
            raise
        self._followed = (inode, offset + good_bytes, lines)
        return shots

    def _meta_rewritten(self) -> bool:
        try:
            return file_identity(os.lstat(self.meta_path)) != self._meta_identity
        except FileNotFoundError:
            return True

    def _reload(self) -> None:
        """Read the session again in full, until its meta held still while it was read (a
        compaction between reading the meta and the journal would leave events out)."""
        for _ in range(3):
            self.load(repair=False)
            if not self._meta_rewritten():
                break

    def _check_event(self, event: Any, line: int) -> None:
        """Refuse a journal event whose shape or values are wrong (naming the line)."""
        where = self.journal_path

        def bad(reason: str):
            raise SessionCorruptError(where, f"line {line}: {reason}")

        if not isinstance(event, dict):
            bad("not a journal event")
        seq = event.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            bad("not a journal event (no sequence number)")
        op = event.get("op")
        if op not in ("shot", "checkpoint"):
            bad(f"unknown event {op!r}")
        shot, stage = event.get("shot"), event.get("stage")
        if isinstance(shot, bool) or not isinstance(shot, int) or shot < 1:
            bad("shot is not a positive integer")
        if stage not in SHOT_STAGES:
            bad(f"stage {stage!r} is not one of {', '.join(SHOT_STAGES)}")
        if not isinstance(event.get("t", ""), str):
            bad("t is not a time stamp")
        if op == "checkpoint":
            if not isinstance(event.get("data"), dict):
                bad("checkpoint data is not an object")
            return
        fields = event.get("set")
        if not isinstance(fields, dict):
            bad("set is not an object")
        for key, value in fields.items():
            problem = _check_field(key, value)
            if problem:
                bad(problem)
        if fields.get("path") is not None:
            check_contained(self.path, fields["path"], under=(stage,), source=where, checked=self._checked)
        for take in fields.get("takes") or ():
            check_contained(self.path, take["path"], under=(stage,), source=where, checked=self._checked)
        if fields.get("pending") is not None:
            check_contained(self.path, fields["pending"], under=(".work", stage), source=where, checked=self._checked)

    # -- journal mechanics
    def _apply(self, event: dict[str, Any]) -> None:
        op = event.get("op")
        if op in ("shot", "checkpoint"):
            state = self._index.get(event["shot"])
            if state is not None:  # else: an event about a shot no longer in the plan
                art = state.artifact(event["stage"])
                if op == "shot":
                    for key, value in event["set"].items():
                        setattr(art, key, value)
                else:
                    art.checkpoint = {**art.checkpoint, **event["data"]}
                art.updated = event.get("t")
        self.meta.journal_seq = max(self.meta.journal_seq, int(event["seq"]))

    @uninterruptible
    def _log(self, event: dict[str, Any], *, durable: bool = True) -> None:
        """Append one event, apply it, and compact when the journal is long. ``durable``
        events are fsynced before this returns; others only reach the OS (they survive a
        crash of reelforge, not necessarily a power cut)."""
        if not self.locked:
            raise SessionError(f"session {self.id} is open read-only")
        may_write()
        event = {"seq": self.meta.journal_seq + 1, "t": now(), **event}
        line = redact(json.dumps(event, separators=(",", ":"))).encode() + b"\n"
        if self._journal is None:
            refuse_link(self.journal_path, "journal")
            fd = open_nofollow(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            self._journal = os.fdopen(fd, "ab", buffering=0)
        self._journal.write(line)
        if durable:
            os.fsync(self._journal.fileno())
        self._apply(event)
        self._journal_events += 1
        self.meta.updated = event["t"]
        if self._journal_events >= max(64, len(self.meta.shots)):
            self.compact()

    @uninterruptible
    def compact(self) -> None:
        """Write the meta snapshot (which folds in the journal), then empty the journal."""
        with self._mutex:
            self.write_meta()
            if self._journal_events or (self.journal_path.exists() and self.journal_path.stat().st_size):
                if self._journal is not None:
                    self._journal.close()
                    self._journal = None
                atomic_write_bytes(self.journal_path, b"")
                self._journal_events = 0

    @uninterruptible
    def write_meta(self) -> None:
        with self._mutex:
            while self._unsynced_dirs:  # group commit of the renames the snapshot relies on
                fsync_dir(self._unsynced_dirs.pop())
            self.meta.updated = now()
            data = _meta_converter().unstructure(self.meta)
            # Redacting the JSON text once is much cheaper than walking thousands of records,
            # and safe: masks contain no JSON syntax, and URL matches never cross a quote.
            text = redact(json.dumps(data, indent=2, ensure_ascii=False))
            atomic_write_text(self.meta_path, text + "\n")
