"""The session store and its checkpoint protocol.

A session is a folder ``output/sessions/session_YYYYMMDD_HHMMSS/`` holding the meta file
``session_YYYYMMDD_HHMMSS_meta.json``, the stage outputs (story.json, scenes.json,
shots.json, images/, videos/, film.mp4) and ``journal.jsonl``.

Durability: every file is written atomically (temp file, fsync, os.replace, directory
fsync), and an artifact is durable before it is marked done. Per-shot progress is appended
to the journal (one fsynced JSON line, O(1) per shot); the meta is a snapshot that folds
the journal in, rewritten only when the journal has grown as long as the shot list, so the
checkpoint cost per shot does not grow with the session. Readers load the meta and replay
the journal events newer than the snapshot.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Iterator

import attrs
import filelock

from .errors import SessionCorruptError, SessionLockedError, SessionNotFoundError, SessionError
from .records import SceneGraph, ShotPlan, Story, lenient_converter, structure, to_json

SCHEMA_VERSION = 1

#: The steps of a session, in order.
STEPS = ("story", "scene_graph", "shots", "images", "videos", "assemble")
#: Per-shot stages and the attribute of ShotState that tracks each.
SHOT_STAGES = {"images": "image", "videos": "video"}

# Session status
NEW, IN_PROGRESS, COMPLETE, FAILED = "NEW", "IN_PROGRESS", "COMPLETE", "FAILED"
# Step and artifact states
TODO, DONE, FAILED_STATE = "todo", "done", "failed"

SESSION_ID_RE = re.compile(r"^session_\d{8}_\d{6}(?:_\d{1,4})?$")

STEP_FILES = {"story": ("story.json", Story), "scene_graph": ("scenes.json", SceneGraph),
              "shots": ("shots.json", ShotPlan)}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


# -- records of the meta file ------------------------------------------------------

@attrs.define
class ArtifactState:
    """The state of one artifact (a shot's image or video, or the film)."""

    state: str = TODO
    "todo, done or failed."
    attempts: int = 0
    "Attempts started, across runs."
    last_error: str | None = None
    "The last failure's message, if any."
    path: str | None = None
    "The file, relative to the session folder."
    sha256: str | None = None
    "Hex digest of the file as marked done."
    size: int | None = None
    "Size in bytes of the file as marked done."
    backend: str | None = None
    "Name of the backend that made it."
    seed: int | None = None
    "Seed used."
    seconds: float | None = None
    "Wall time of the successful attempt."
    fingerprint: str | None = None
    "Digest of the inputs (prompt, seed, backend, options, source image)."
    checkpoint: dict[str, Any] = attrs.Factory(dict)
    "The backend's own resumable state (e.g. a ComfyUI prompt_id and server)."
    updated: str | None = None
    "When this record last changed."


@attrs.define
class ShotState:
    id: int
    "The shot number."
    image: ArtifactState = attrs.Factory(ArtifactState)
    "The shot's still image."
    video: ArtifactState = attrs.Factory(ArtifactState)
    "The shot's clip."

    def artifact(self, stage: str) -> ArtifactState:
        return getattr(self, SHOT_STAGES[stage])

    @property
    def indicator(self) -> str:
        """The seed's shot status: DONE, IMG, TODO, or FAILED."""
        if self.video.state == DONE:
            return "DONE"
        if self.image.state == FAILED_STATE or self.video.state == FAILED_STATE:
            return "FAILED"
        if self.image.state == DONE:
            return "IMG"
        return "TODO"


@attrs.define
class BackendChoice:
    name: str
    "Registered backend name."
    options: dict[str, Any] = attrs.Factory(dict)
    "Non-secret options, as given."


@attrs.define
class Meta:
    id: str
    "The session id (also its folder name)."
    idea: str
    "The one-line idea the session was started with."
    status: str = NEW
    "NEW, IN_PROGRESS, COMPLETE or FAILED."
    created: str = attrs.Factory(now)
    updated: str = attrs.Factory(now)
    steps: dict[str, str] = attrs.Factory(lambda: {s: TODO for s in STEPS})
    "State of each step: todo, done or failed."
    backends: dict[str, BackendChoice] = attrs.Factory(dict)
    "Chosen backend per kind: story, image, video."
    shots: list[ShotState] = attrs.Factory(list)
    "Per-shot states, in shot order."
    film: ArtifactState = attrs.Factory(ArtifactState)
    "The assembled film."
    last_error: str | None = None
    "Why the last run stopped short, if it did."
    step_checkpoints: dict[str, dict[str, Any]] = attrs.Factory(dict)
    "Partial work of an unfinished story/scene_graph/shots step, saved by its backend."
    journal_seq: int = 0
    "The last journal event folded into this snapshot."
    schema_version: int = SCHEMA_VERSION

    def shot(self, shot_id: int) -> ShotState:
        for s in self.shots:
            if s.id == shot_id:
                return s
        raise KeyError(shot_id)

    def counts(self, stage: str) -> tuple[int, int]:
        """(done, total) for images or videos."""
        attr = SHOT_STAGES[stage]
        return sum(getattr(s, attr).state == DONE for s in self.shots), len(self.shots)

    @property
    def is_incomplete(self) -> bool:
        return self.status != COMPLETE


# -- atomic file helpers ------------------------------------------------------------

def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def promote_file(src: Path, dest: Path) -> None:
    """Make ``src`` durable and move it to ``dest`` atomically (same filesystem)."""
    with open(src, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(src, dest)
    fsync_dir(dest.parent)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: Path) -> Any:
    """Parse a JSON file; any failure is a SessionCorruptError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SessionCorruptError(path, f"not UTF-8 text ({exc})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        reason = "empty file" if not text.strip() else f"invalid JSON ({exc})"
        raise SessionCorruptError(path, reason) from exc


# -- the store ----------------------------------------------------------------------

class SessionStore:
    """All sessions under ``output_dir/sessions``."""

    def __init__(self, output_dir: str | os.PathLike = "output"):
        self.output_dir = Path(output_dir)
        self.root = self.output_dir / "sessions"

    def path_for(self, session_id: str) -> Path:
        """The folder of ``session_id``; refuses ids that are not session ids (no ``..``,
        no slashes), so a user-supplied id never escapes the sessions folder."""
        if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id):
            raise SessionError(
                f"{session_id!r} is not a session id (expected session_YYYYMMDD_HHMMSS); "
                f"see `reelforge sessions list`"
            )
        return self.root / session_id

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if SESSION_ID_RE.match(p.name) and p.is_dir())

    def create(self, idea: str, *, clock: _dt.datetime | None = None) -> "Session":
        """Create a new session folder with a fresh, unique id, and lock it."""
        if not idea or not idea.strip():
            raise SessionError("an idea is needed to start a session")
        self.root.mkdir(parents=True, exist_ok=True)
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
        session.meta = Meta(id=sid, idea=idea.strip())
        session.write_meta()
        return session

    def open(self, session_id: str) -> "Session":
        """Open an existing session for running: takes its lock, then loads it."""
        path = self.path_for(session_id)
        if not path.is_dir():
            raise SessionNotFoundError(f"no session {session_id!r} in {self.root}")
        session = Session(self, session_id)
        session.lock()
        try:
            session.load(repair=True)
        except BaseException:
            session.meta = None  # type: ignore[assignment]  # nothing half-loaded gets written back
            session.close()
            raise
        return session

    def load(self, session_id: str) -> "Session":
        """Load a session read-only, without its lock (for list/view)."""
        path = self.path_for(session_id)
        if not path.is_dir():
            raise SessionNotFoundError(f"no session {session_id!r} in {self.root}")
        session = Session(self, session_id)
        session.load(repair=False)
        return session

    def sessions(self) -> Iterator["Session | SessionCorruptError"]:
        """Every session, oldest first; an unreadable one is yielded as its error."""
        for sid in self.ids():
            try:
                yield self.load(sid)
            except SessionCorruptError as exc:
                yield exc

    def find_incomplete(self) -> list["Session"]:
        """Sessions not COMPLETE, newest first."""
        found = [s for s in self.sessions() if isinstance(s, Session) and s.meta.is_incomplete]
        return sorted(found, key=lambda s: s.id, reverse=True)


class Session:
    """One session: its files, meta and journal. Thread-safe for the runner's workers."""

    def __init__(self, store: SessionStore, session_id: str):
        self.store = store
        self.id = session_id
        self.path = store.path_for(session_id)
        self.meta: Meta = None  # type: ignore[assignment]
        self._lock_file: filelock.BaseFileLock | None = None
        self._mutex = threading.RLock()
        self._journal = None
        self._journal_events = 0

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
        d = self.path / ".work" / stage / f"shot_{shot_id:03d}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def film_path(self) -> Path:
        return self.path / "film.mp4"

    # -- locking
    def lock(self) -> None:
        """Take the session's exclusive lock, or raise SessionLockedError at once."""
        lock = filelock.FileLock(str(self.path / ".lock"), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise SessionLockedError(
                f"session {self.id} is being run by another reelforge process "
                f"(lock {self.path / '.lock'} is held); wait for it to finish or stop it"
            ) from None
        self._lock_file = lock

    @property
    def locked(self) -> bool:
        return self._lock_file is not None

    def close(self) -> None:
        """Fold the journal into the meta and release the lock."""
        with self._mutex:
            try:
                if self.locked and self.meta is not None and self._journal_events:
                    self.compact()
            finally:
                if self._journal is not None:
                    self._journal.close()
                    self._journal = None
                if self._lock_file is not None:
                    self._lock_file.release()
                    self._lock_file = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- loading
    def load(self, *, repair: bool) -> None:
        if not self.meta_path.exists():
            raise SessionCorruptError(self.meta_path, "file is missing")
        data = read_json(self.meta_path)
        try:
            self.meta = structure(data, Meta, "meta", strict=False)
        except ValueError as exc:
            raise SessionCorruptError(self.meta_path, str(exc)) from exc
        if self.meta.id != self.id:
            raise SessionCorruptError(self.meta_path, f"it belongs to session {self.meta.id!r}")
        if self.meta.schema_version > SCHEMA_VERSION:
            raise SessionCorruptError(
                self.meta_path, f"schema version {self.meta.schema_version} is newer than this "
                                f"reelforge understands ({SCHEMA_VERSION}); upgrade reelforge")
        self._replay(repair=repair)

    def _replay(self, *, repair: bool) -> None:
        if not self.journal_path.exists():
            return
        lines = self.journal_path.read_bytes().splitlines(keepends=True)
        good_bytes = 0
        for i, line in enumerate(lines):
            try:
                event = json.loads(line)
                if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
                    raise ValueError("not a journal event")
            except ValueError as exc:
                if i == len(lines) - 1:
                    break  # a torn final line: the crash hit mid-append, so it never counted
                raise SessionCorruptError(self.journal_path, f"line {i + 1}: {exc}") from exc
            if not line.endswith(b"\n"):
                break  # complete JSON but no newline: still a torn append
            good_bytes += len(line)
            if event["seq"] > self.meta.journal_seq:
                self._apply(event)
                self._journal_events += 1
        if repair and good_bytes < self.journal_path.stat().st_size:
            with open(self.journal_path, "rb+") as fh:
                fh.truncate(good_bytes)
                os.fsync(fh.fileno())

    # -- stage outputs
    def read_step_output(self, step: str) -> Any | None:
        """The saved Story/SceneGraph/ShotPlan of ``step``, or None if there is no file.
        A file that exists but does not parse is a SessionCorruptError naming it."""
        name, cls = STEP_FILES[step]
        path = self.path / name
        if not path.exists():
            return None
        data = read_json(path)
        try:
            return structure(data, cls, name)
        except ValueError as exc:
            raise SessionCorruptError(path, str(exc)) from exc

    def save_step_output(self, step: str, value: Any) -> None:
        """Write story.json/scenes.json/shots.json atomically, then mark the step done."""
        name, _cls = STEP_FILES[step]
        atomic_write_text(self.path / name, to_json(value))
        with self._mutex:
            if step == "shots":
                known = {s.id: s for s in self.meta.shots}
                self.meta.shots = [known.get(s.id, ShotState(id=s.id)) for s in value.shots]
            self.meta.steps[step] = DONE
            self.meta.step_checkpoints.pop(step, None)  # the output supersedes the parts
            self._touch_status()
            self.write_meta()

    def save_step_checkpoint(self, step: str, data: dict[str, Any]) -> None:
        """Durably record a story writer's partial work for ``step`` (merged)."""
        json.dumps(data)
        with self._mutex:
            self.meta.step_checkpoints[step] = {**self.meta.step_checkpoints.get(step, {}), **data}
            self.write_meta()

    # -- session-level state (rare: written straight into the meta)
    def set_backends(self, choices: dict[str, BackendChoice]) -> None:
        with self._mutex:
            self.meta.backends = dict(choices)
            self.write_meta()

    def mark_step(self, step: str, state: str, error: str | None = None) -> None:
        with self._mutex:
            self.meta.steps[step] = state
            if error is not None:
                self.meta.last_error = error
            self._touch_status()
            self.write_meta()

    def set_status(self, status: str, error: str | None = None) -> None:
        with self._mutex:
            self.meta.status = status
            self.meta.last_error = error
            self.write_meta()

    def _touch_status(self) -> None:
        if self.meta.status in (NEW, FAILED) and any(v == DONE for v in self.meta.steps.values()):
            self.meta.status = IN_PROGRESS

    def mark_film_done(self, path: Path, seconds: float) -> None:
        with self._mutex:
            f = self.meta.film
            f.state, f.path, f.seconds, f.updated = DONE, path.name, round(seconds, 3), now()
            f.sha256, f.size, f.last_error = sha256_file(path), path.stat().st_size, None
            self.meta.steps["assemble"] = DONE
            self.meta.status = COMPLETE
            self.meta.last_error = None
            self.compact()

    # -- per-shot state (journalled, O(1) each)
    def mark_shot_started(self, stage: str, shot_id: int) -> int:
        """Count a new attempt; returns its number (from 1, across runs)."""
        with self._mutex:
            attempts = self.meta.shot(shot_id).artifact(stage).attempts + 1
            self._log({"op": "shot", "shot": shot_id, "stage": stage,
                       "set": {"attempts": attempts}})
            return attempts

    def save_shot_checkpoint(self, stage: str, shot_id: int, data: dict[str, Any]) -> None:
        """Durably record a backend's resumable state for a shot (merged into earlier data)."""
        json.dumps(data)  # fail here, in the backend's thread, if it is not serialisable
        with self._mutex:
            self._log({"op": "checkpoint", "shot": shot_id, "stage": stage, "data": data})

    def mark_shot_done(self, stage: str, shot_id: int, produced: Path, *, backend: str,
                       seed: int | None, seconds: float, fingerprint: str) -> ArtifactState:
        """Move ``produced`` into place durably, then journal the shot as done."""
        dest = self.artifact_path(stage, shot_id, produced.suffix.lower() or ".bin")
        dest.parent.mkdir(parents=True, exist_ok=True)
        promote_file(produced, dest)
        return self.record_shot_done(stage, shot_id, dest, backend=backend, seed=seed,
                                     seconds=seconds, fingerprint=fingerprint)

    def record_shot_done(self, stage: str, shot_id: int, dest: Path, *, backend: str | None,
                         seed: int | None, seconds: float | None, fingerprint: str | None,
                         adopted: bool = False) -> ArtifactState:
        """Journal an artifact already durable at ``dest`` as done."""
        fields = {
            "state": DONE, "path": dest.relative_to(self.path).as_posix(),
            "sha256": sha256_file(dest), "size": dest.stat().st_size, "backend": backend,
            "seed": seed, "seconds": None if seconds is None else round(seconds, 3),
            "fingerprint": fingerprint, "last_error": None,
        }
        with self._mutex:
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": fields,
                       **({"adopted": True} if adopted else {})})
            return self.meta.shot(shot_id).artifact(stage)

    def mark_shot_failed(self, stage: str, shot_id: int, error: str) -> None:
        with self._mutex:
            self._log({"op": "shot", "shot": shot_id, "stage": stage,
                       "set": {"state": FAILED_STATE, "last_error": error}})

    def reset_shot(self, stage: str, shot_id: int, reason: str) -> None:
        """Forget a done artifact that is missing, damaged or stale, so it is made again."""
        with self._mutex:
            self._log({"op": "shot", "shot": shot_id, "stage": stage,
                       "set": {"state": TODO, "last_error": reason, "sha256": None,
                               "size": None}})

    # -- journal mechanics
    def _apply(self, event: dict[str, Any]) -> None:
        op = event.get("op")
        if op in ("shot", "checkpoint"):
            try:
                art = self.meta.shot(int(event["shot"])).artifact(event["stage"])
            except (KeyError, ValueError, TypeError):
                return  # an event about a shot no longer in the plan
            if op == "shot":
                for key, value in event["set"].items():
                    if hasattr(art, key):
                        setattr(art, key, value)
            else:
                art.checkpoint = {**art.checkpoint, **event["data"]}
            art.updated = event.get("t")
        self.meta.journal_seq = max(self.meta.journal_seq, int(event["seq"]))

    def _log(self, event: dict[str, Any]) -> None:
        """Append one event durably, apply it, and compact when the journal is long."""
        if not self.locked:
            raise SessionError(f"session {self.id} is open read-only")
        event = {"seq": self.meta.journal_seq + 1, "t": now(), **event}
        if self._journal is None:
            self._journal = open(self.journal_path, "ab")
        self._journal.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._apply(event)
        self._journal_events += 1
        self.meta.updated = event["t"]
        if self._journal_events >= max(64, len(self.meta.shots)):
            self.compact()

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

    def write_meta(self) -> None:
        with self._mutex:
            self.meta.updated = now()
            data = lenient_converter.unstructure(self.meta)
            atomic_write_text(self.meta_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.meta.status if self.meta else '?'}>"
