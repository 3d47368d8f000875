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
folder, and nothing is written through a symbolic link (see :mod:`reelforge.store.safefs`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
import stat
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import attrs

from reelforge.errors import SessionCorruptError, SessionError, SessionLockedError, SessionNotFoundError
from reelforge.records import SceneGraph, ShotPlan, Story, lenient_converter, structure, to_json
from reelforge.redact import redact
from reelforge.store.safefs import (atomic_write_bytes, atomic_write_text, contained, ensure_dir, fsync_dir,
                     fsync_file, move_aside, open_nofollow, refuse_link, sha256_file,
                     uninterruptible)

__all__ = [
    "VerifyReport", "BadFile", "verify_summary",
    "SessionStore", "Session", "Meta", "ShotState", "ArtifactState", "BackendChoice",
    "AbandonedSession", "STEPS", "SHOT_STAGES", "STEP_FILES", "NEW", "IN_PROGRESS", "COMPLETE",
    "FAILED", "ABANDONED", "TODO", "DONE", "FAILED_STATE", "is_session_id", "read_json",
    "atomic_write_bytes", "atomic_write_text", "sha256_file", "fsync_dir",
]

SCHEMA_VERSION = 1

#: The steps of a session, in order.
STEPS = ("story", "scene_graph", "shots", "images", "narration", "videos", "assemble")
#: Per-shot stages and the attribute of ShotState that tracks each.
SHOT_STAGES = {"images": "image", "narration": "narration", "videos": "video"}

# Session status
NEW, IN_PROGRESS, COMPLETE, FAILED = "NEW", "IN_PROGRESS", "COMPLETE", "FAILED"
#: Stopped after its images until someone runs `reelforge approve` (resumable).
AWAITING_REVIEW = "AWAITING_REVIEW"
#: Set by `reelforge sessions abandon`: never offered to continue again; `resume ID` still
#: runs it (and makes it IN_PROGRESS). Not to be confused with AbandonedSession below.
ABANDONED = "ABANDONED"
STATUSES = (NEW, IN_PROGRESS, COMPLETE, FAILED, AWAITING_REVIEW, ABANDONED)
# Step and artifact states
TODO, DONE, FAILED_STATE = "todo", "done", "failed"
STATES = (TODO, DONE, FAILED_STATE)

#: Session ids: ASCII digits only, matched whole (no trailing newline, no other digits).
SESSION_ID_RE = re.compile(r"session_[0-9]{8}_[0-9]{6}(?:_[0-9]{1,4})?", re.ASCII)

STEP_FILES = {"story": ("story.json", Story), "scene_graph": ("scenes.json", SceneGraph),
              "shots": ("shots.json", ShotPlan)}

#: The longest idea a session accepts (characters).
MAX_IDEA_CHARS = 2000
#: A folder with no meta younger than this may still be being created by another process.
ABANDONED_AFTER_S = 60.0
#: The film's file name in the session folder.
FILM_NAME = "film.mp4"


def is_session_id(value: Any) -> bool:
    return isinstance(value, str) and SESSION_ID_RE.fullmatch(value) is not None


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
    mtime_ns: int | None = None
    "Modification time of the file as marked done: when it still matches (and the size), the file is trusted without hashing it again."
    pending: str | None = None
    "While a commit is under way: the scratch file that is being renamed to ``path``."
    backend: str | None = None
    "Name of the backend that made it."
    seed: int | None = None
    "Seed used."
    seconds: float | None = None
    "Wall time of the successful attempt."
    fingerprint: str | None = None
    "Digest of the inputs (prompt, seed, backend, options, source image; for the film, its clips and transition)."
    checkpoint: dict[str, Any] = attrs.Factory(dict)
    "The backend's own resumable state (e.g. a ComfyUI prompt_id and server)."
    updated: str | None = None
    "When this record last changed."
    info: dict[str, Any] = attrs.Factory(dict)
    "Facts read from the file when it was committed (a clip's codec, size, fps, duration; a voice's duration)."
    backend_seconds: float | None = None
    "Backend time spent on this artifact across all attempts and runs (the cost ledger)."
    pinned: bool = False
    "Chosen by the user (`reelforge use`): kept even though its inputs differ from the shot's."
    takes: list[dict[str, Any]] = attrs.Factory(list)
    "Earlier versions kept when the artifact was made again: ``{n, path, sha256, size, fingerprint, seed, backend, prompt, seconds, created}``."


@attrs.define
class ShotState:
    id: int
    "The shot number."
    image: ArtifactState = attrs.Factory(ArtifactState)
    "The shot's still image."
    video: ArtifactState = attrs.Factory(ArtifactState)
    "The shot's clip."
    narration: ArtifactState = attrs.Factory(ArtifactState)
    "The shot's voice-over (a WAV), when the session has a narrator."

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
    "NEW, IN_PROGRESS, COMPLETE, FAILED, AWAITING_REVIEW or ABANDONED (given up by the user)."
    created: str = attrs.Factory(now)
    updated: str = attrs.Factory(now)
    steps: dict[str, str] = attrs.Factory(lambda: {s: TODO for s in STEPS})
    "State of each step: todo, done or failed."
    backends: dict[str, BackendChoice] = attrs.Factory(dict)
    "Chosen backend per kind: story, image, video."
    shots: list[ShotState] = attrs.Factory(list)
    "Per-shot states, in shot order."
    removed_shots: list[ShotState] = attrs.Factory(list)
    "States of shots that were dropped from shots.json (their files are left in place)."
    film: ArtifactState = attrs.Factory(ArtifactState)
    "The assembled film."
    last_error: str | None = None
    "Why the last run stopped short, if it did."
    step_checkpoints: dict[str, dict[str, Any]] = attrs.Factory(dict)
    "Partial work of an unfinished story/scene_graph/shots step, saved by its backend."
    review: str | None = None
    "'images': stop after the images until approved (``run --review images``)."
    approved: bool = False
    "Set by `reelforge approve`: the review gate is open."
    film_settings: dict[str, Any] = attrs.Factory(dict)
    "How the film is put together (reelforge.media.film.FilmSettings), so a resume makes the same film."
    step_usage: dict[str, dict[str, Any]] = attrs.Factory(dict)
    "Cost ledger of the story steps: seconds, attempts, prompt/completion tokens per step."
    journal_seq: int = 0
    "The last journal event folded into this snapshot."
    last_verify: dict[str, Any] | None = None
    "The last `reelforge sessions verify`: ``{at, checked, bad: [path, ...], repaired}``."
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
        """Not finished and not given up: a session `reelforge run` may offer to continue."""
        return self.status not in (COMPLETE, ABANDONED)


_compact_artifacts = False


def _meta_converter():
    """The converter that writes the meta. An artifact's record leaves out the fields at
    their defaults (a shot not started yet is "{}"), so a 2,000-shot meta stays small; the
    rest of the meta is written in full. Set up on first use: generating the hook costs
    more than `reelforge sessions list` should spend on starting."""
    global _compact_artifacts
    if not _compact_artifacts:
        import cattrs.gen

        lenient_converter.register_unstructure_hook(
            ArtifactState, cattrs.gen.make_dict_unstructure_fn(ArtifactState, lenient_converter,
                                                               _cattrs_omit_if_default=True))
        _compact_artifacts = True
    return lenient_converter


# -- checking what a session file holds ----------------------------------------------

_NONE = type(None)
#: The type(s) each ArtifactState field may hold in a session file.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "state": (str,), "attempts": (int,), "last_error": (str, _NONE), "path": (str, _NONE),
    "sha256": (str, _NONE), "size": (int, _NONE), "mtime_ns": (int, _NONE),
    "pending": (str, _NONE), "backend": (str, _NONE), "seed": (int, _NONE),
    "seconds": (int, float, _NONE), "fingerprint": (str, _NONE), "checkpoint": (dict,),
    "updated": (str, _NONE), "info": (dict,), "backend_seconds": (int, float, _NONE),
    "pinned": (bool,), "takes": (list,),
}
_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)


_EXACT = {k: frozenset(v) for k, v in _FIELD_TYPES.items()}  # type(True) is bool: never an int here
#: Fields whose type is all there is to check.
_PLAIN = frozenset(_FIELD_TYPES) - {"state", "attempts", "size", "mtime_ns", "seconds", "sha256",
                                     "backend_seconds", "takes"}


def _check_field(key: str, value: Any) -> str | None:
    """Why ``value`` cannot be ArtifactState.``key``, or None."""
    types = _EXACT.get(key)
    if types is None:
        return f"unknown field {key!r}"
    if type(value) not in types:
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, _FIELD_TYPES[key]):
            return f"{key} has the wrong type ({type(value).__name__})"
    if value is None:
        return None
    if key == "state":
        return None if value in STATES else f"state {value!r} is not one of {', '.join(STATES)}"
    if key in ("attempts", "size", "mtime_ns"):
        return f"{key} is negative" if value < 0 else None
    if key in ("seconds", "backend_seconds"):
        return None if math.isfinite(value) and value >= 0 else f"{key} is not a finite number of seconds"
    if key == "takes":
        return _check_takes(value)
    if key == "sha256":
        return None if _HEX64.fullmatch(value) else "sha256 is not a hex digest"
    return None


_TAKE_TYPES: dict[str, tuple[type, ...]] = {
    "n": (int,), "path": (str,), "sha256": (str,), "size": (int,), "mtime_ns": (int, _NONE),
    "fingerprint": (str, _NONE), "seed": (int, _NONE), "backend": (str, _NONE),
    "prompt": (str, _NONE), "seconds": (int, float, _NONE), "created": (str, _NONE),
    "info": (dict,), "rejected": (bool,),
}


def _check_takes(takes: list) -> str | None:
    for i, take in enumerate(takes):
        if not isinstance(take, dict):
            return f"takes[{i}] is not an object"
        for key in ("n", "path", "sha256", "size"):
            if key not in take:
                return f"takes[{i}] has no {key}"
        for key, value in take.items():
            types = _TAKE_TYPES.get(key)
            if types is not None and ((isinstance(value, bool) and bool not in types)
                                      or not isinstance(value, types)):
                return f"takes[{i}].{key} has the wrong type ({type(value).__name__})"
        if take["n"] < 1 or take["size"] < 0 or not _HEX64.fullmatch(take["sha256"]):
            return f"takes[{i}] has a bad number, size or digest"
    return None


def read_json(path: Path) -> Any:
    """Parse a JSON file; any failure is a SessionCorruptError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SessionCorruptError(path, f"not UTF-8 text ({exc})") from exc
    except IsADirectoryError:
        raise SessionCorruptError(path, "expected a file, found a folder") from None
    return parse_json(text, path)


def parse_json(text: str | bytes, path: Path, what: str = "") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        empty = not (text.strip() if isinstance(text, str) else text.strip())
        reason = "empty file" if empty else f"invalid JSON ({exc})"
        raise SessionCorruptError(path, f"{what}{reason}") from exc
    except RecursionError:
        raise SessionCorruptError(path, f"{what}JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # e.g. a huge integer, bad UTF-8 in bytes
        raise SessionCorruptError(path, f"{what}invalid JSON ({exc})") from None


# -- the store ----------------------------------------------------------------------

@attrs.frozen
class AbandonedSession:
    """A session folder whose creation was cut short (a crash before its meta file was
    written): it holds no work. Listed as EMPTY (not the ABANDONED status, which a user
    gives a session); removed by the next create()."""

    id: str
    path: Path
    reason: str = "created but never started (no meta file; nothing in it)"


# -- verify: every recorded file read in full -----------------------------------------

#: What each shot stage's file is called in messages.
_STAGE_LABELS = {"images": "image", "narration": "voice", "videos": "clip"}


@attrs.frozen
class BadFile:
    """A recorded file that is missing or no longer holds the bytes recorded for it."""

    what: str
    "What it is: 'shot 2 clip', 'shot 2 clip take 1', 'film', 'story.json'."
    path: str
    "The file, relative to the session folder."
    problem: str
    "Why it is bad: missing, or damaged and how."
    ref: tuple = ()
    "Which record it belongs to: ('shot', stage, id), ('take', stage, id, n), ('film',) or ('step', step)."
    moved_to: str | None = None
    "With --repair: where the bad file was set aside (relative to the session), if it existed."


@attrs.frozen
class VerifyReport:
    """The outcome of :meth:`SessionStore.verify`."""

    session_id: str
    checked: int
    "Recorded files looked at."
    bytes_read: int
    "Bytes read and hashed."
    bad: tuple[BadFile, ...] = ()
    repaired: bool = False
    "The bad files were set aside and their records marked to be made again."

    @property
    def ok(self) -> bool:
        return not self.bad

    def lines(self) -> list[str]:
        """One line per bad file, then a summary line (what `sessions verify` prints)."""
        out = []
        for b in self.bad:
            moved = f"; moved to {b.moved_to}" if b.moved_to else ""
            out.append(f"BAD {b.path} ({b.what}): {b.problem}{moved}")
        return [*out, self.summary]

    @property
    def summary(self) -> str:
        read = f"{self.bytes_read / 1e6:,.1f} MB read"
        if self.ok:
            return f"verify: all {self.checked} recorded files of {self.session_id} match their sha256 ({read})."
        sid = self.session_id
        text = f"verify: {len(self.bad)} of {self.checked} recorded files of {sid} are missing or damaged ({read})."
        if self.repaired:
            return f"{text} They are set aside and marked todo: `reelforge resume {sid}` makes exactly them again."
        return f"{text} Set them aside and have them made again: reelforge sessions verify {sid} --repair"


def verify_summary(meta: Meta) -> dict[str, Any]:
    """The last verify as a line for `report` and `serve`: ``{state, text}``, state one of
    ok, bad, repaired, never."""
    last = meta.last_verify if isinstance(meta.last_verify, dict) else {}
    cmd = f"reelforge sessions verify {meta.id}"
    if not last:
        return {"state": "never", "text": f"Files not verified yet: `{cmd}` reads each against its sha256."}
    bad = [str(p) for p in last["bad"]] if isinstance(last.get("bad"), list) else []
    when = f"{last.get('at')}: {last.get('checked')} recorded files"
    if not bad:
        return {"state": "ok", "text": f"Verified {when}, all match their sha256."}
    named = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    if last.get("repaired"):
        return {"state": "repaired", "text": f"Verified {when}, {len(bad)} bad ({named}): set aside to be "
                                             f"made again by `reelforge resume {meta.id}`."}
    return {"state": "bad", "text": f"Verified {when}, {len(bad)} bad ({named}): `{cmd} --repair`."}


def _read_check(path: Path, size: int | None, sha256: str | None) -> tuple[str | None, int]:
    """(why the file at ``path`` is not the recorded one or None, bytes read). Reads it in full."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing", 0
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link (never followed)", 0
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file", 0
    if size is not None and st.st_size != size:
        return f"damaged: {st.st_size:,} bytes, recorded {size:,}", 0
    try:
        digest = sha256_file(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}", 0
    if digest != sha256:
        return "damaged: its bytes do not match the recorded sha256 (changed in place)", st.st_size
    return None, st.st_size


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
               review: str | None = None, clock: _dt.datetime | None = None) -> "Session":
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
            session.meta = Meta(id=sid, idea=idea, backends=dict(backends or {}), review=review)
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
        if all(n == ".lock" or n.endswith(".tmp") for n in names):
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
                try:
                    os.unlink(path / ".lock")
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


class Session:
    """One session: its files, meta and journal. Thread-safe for the runner's workers."""

    def __init__(self, store: SessionStore, session_id: str):
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
            raise SessionLockedError(
                f"session {self.id} is being run by another reelforge process "
                f"(lock {lock_path} is held); wait for it to finish or stop it"
            ) from None
        self._lock_file = lock

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
                    self._lock_file.release()
                    self._lock_file = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
        try:
            st = os.lstat(self.meta_path)
        except FileNotFoundError:
            raise SessionCorruptError(self.meta_path, "file is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise SessionCorruptError(self.meta_path, "not a regular file")
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
        music = m.film_settings.get("music")
        if music is not None:  # mixed into the film: music.<ext> at the session root, nothing else
            from reelforge.media.film import music_file

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
            contained(self.path, art.path, under=(stage,), source=where, checked=self._checked)
        if paths:
            for take in art.takes:
                contained(self.path, take["path"], under=(stage,), source=where, checked=self._checked)
        if paths and art.pending is not None:
            contained(self.path, art.pending, under=(".work", stage), source=where, checked=self._checked)

    def _replay(self, *, repair: bool) -> None:
        path = self.journal_path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            raise SessionCorruptError(path, "not a regular file (a link or a folder)")
        with open(open_nofollow(path, os.O_RDONLY), "rb", closefd=True) as fh:
            lines = fh.read().splitlines(keepends=True)
        good_bytes = 0
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            try:
                event = parse_json(line, path, f"line {i + 1}: ")
                self._check_event(event, i + 1)
            except SessionCorruptError as exc:
                if not last:
                    raise
                if line.endswith(b"\n"):
                    # Not a torn append (those never end in a newline): something wrote a bad
                    # line. Left out like a torn one, but said, so damage is never unseen.
                    warnings.warn(f"reelforge: {path}: the last line is complete but not a valid "
                                  f"journal event ({exc.reason}); it is left out"
                                  f"{' and removed' if repair else ''}", RuntimeWarning, stacklevel=2)
                break  # a torn final line: the crash hit mid-append, so it never counted
            if not line.endswith(b"\n"):
                break  # complete JSON but no newline: still a torn append
            good_bytes += len(line)
            if event["seq"] > self.meta.journal_seq:
                self._apply(event)
                self._journal_events += 1
        if repair and good_bytes < st.st_size:
            fd = open_nofollow(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, good_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)

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
            contained(self.path, fields["path"], under=(stage,), source=where, checked=self._checked)
        for take in fields.get("takes") or ():
            contained(self.path, take["path"], under=(stage,), source=where, checked=self._checked)
        if fields.get("pending") is not None:
            contained(self.path, fields["pending"], under=(".work", stage), source=where, checked=self._checked)

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
                       info: dict[str, Any] | None = None, spent: float | None = None) -> ArtifactState:
        """Commit ``produced`` (a file in the session's scratch folder) as the shot's
        artifact: fsync it, journal the done record (digest, size, mtime, and the scratch
        name), then rename it into place. See the module docstring for why in this order."""
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
            if os.path.lexists(dest):
                move_aside(dest)  # not vouched for by any record: kept, not overwritten
            fields = {
                "state": DONE, "path": dest.relative_to(self.path).as_posix(), "sha256": digest,
                "size": st.st_size, "mtime_ns": st.st_mtime_ns, "pending": rel_pending,
                "backend": backend, "seed": seed,
                "seconds": None if seconds is None else round(seconds, 3),
                "fingerprint": fingerprint, "last_error": None, "info": dict(info or {}),
                "pinned": False,
            }
            if spent is not None:
                fields["backend_seconds"] = self._spent(stage, shot_id, spent)
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": fields})
            os.replace(produced, dest)
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

    # -- takes: earlier versions of an artifact, kept and selectable
    def _take_path(self, stage: str, shot_id: int, n: int, suffix: str) -> Path:
        return self.path / stage / "takes" / f"shot_{shot_id:03d}.{n}{suffix}"

    @uninterruptible
    def keep_as_take(self, stage: str, shot_id: int, reason: str, *, prompt: str | None = None,
                     rejected: bool = False) -> dict | None:
        """Move the shot's done artifact to ``<stage>/takes/shot_NNN.<n>.<ext>``, record it as
        take ``n``, and set the artifact to be made again. Returns the take (None if the
        artifact was not done). The record is journalled before the move; a crash between
        the two is settled by the next check (see _settle_takes)."""
        with self._mutex:
            art = self.shot_state(shot_id).artifact(stage)
            if art.state != DONE or art.path is None:
                return None
            src = self.path / art.path
            n = max((t["n"] for t in art.takes), default=0) + 1
            dest = self._take_path(stage, shot_id, n, src.suffix)
            take = {"n": n, "path": dest.relative_to(self.path).as_posix(), "sha256": art.sha256,
                    "size": art.size, "mtime_ns": art.mtime_ns, "fingerprint": art.fingerprint,
                    "seed": art.seed, "backend": art.backend, "prompt": prompt,
                    "seconds": art.seconds, "created": art.updated, "info": dict(art.info),
                    "rejected": rejected}
            ensure_dir(self.path, stage, "takes")
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": {
                "state": TODO, "last_error": reason, "sha256": None, "size": None, "mtime_ns": None,
                "pending": None, "pinned": False, "takes": [*art.takes, take]}})
            if os.path.lexists(src):
                os.replace(src, dest)
                fsync_dir(dest.parent)
                fsync_dir(src.parent)
            return take

    @uninterruptible
    def use_take(self, stage: str, shot_id: int, n: int, *, pinned: bool = False,
                 prompt: str | None = None) -> ArtifactState:
        """Make take ``n`` the shot's artifact again; the current one (if done) becomes a new
        take. ``pinned``: the user chose it, so it is kept even though its inputs differ."""
        with self._mutex:
            art = self.shot_state(shot_id).artifact(stage)
            take = next((t for t in art.takes if t["n"] == n), None)
            if take is None:
                have = ", ".join(str(t["n"]) for t in art.takes) or "none"
                raise SessionError(f"shot {shot_id} has no {stage} take {n} (takes: {have})")
            src = contained(self.path, take["path"], under=(stage,), source=self.meta_path)
            if self._check_file_like(take, src) is not None:
                raise SessionError(f"take {n} of shot {shot_id} ({take['path']}) is missing or damaged")
            if art.state == DONE:
                self.keep_as_take(stage, shot_id, f"replaced by take {n}", prompt=prompt)
                art = self.shot_state(shot_id).artifact(stage)
            dest = ensure_dir(self.path, stage) / f"shot_{shot_id:03d}{src.suffix}"
            if os.path.lexists(dest):
                move_aside(dest)
            fields = {"state": DONE, "path": dest.relative_to(self.path).as_posix(),
                      "sha256": take["sha256"], "size": take["size"], "mtime_ns": take.get("mtime_ns"),
                      "fingerprint": take.get("fingerprint"), "seed": take.get("seed"),
                      "backend": take.get("backend"), "seconds": take.get("seconds"),
                      "info": dict(take.get("info") or {}), "last_error": None, "pinned": pinned,
                      "pending": take["path"],
                      "takes": [t for t in art.takes if t["n"] != n]}
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": fields})
            os.replace(src, dest)
            fsync_dir(dest.parent)
            art.pending = None
            return art

    @uninterruptible
    def prune_takes(self, stage: str, shot_id: int) -> list[str]:
        """Delete a shot's takes for ``stage`` (the only place reelforge deletes a finished
        file: `reelforge takes ID N --prune`). The records go first, then the files."""
        with self._mutex:
            art = self.shot_state(shot_id).artifact(stage)
            paths = [t["path"] for t in art.takes]
            if not paths:
                return []
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": {"takes": []}})
            for rel in paths:
                path = contained(self.path, rel, under=(stage,), source=self.meta_path)
                try:
                    os.unlink(path)  # a link is removed itself, never followed
                except FileNotFoundError:
                    pass
            return paths

    @uninterruptible
    def repin(self, stage: str, shot_id: int, fingerprint: str) -> None:
        """Record a chosen take as made from the shot's current inputs (``fingerprint``)."""
        with self._mutex:
            self._log({"op": "shot", "shot": shot_id, "stage": stage,
                       "set": {"fingerprint": fingerprint, "pinned": True}})

    def _check_file_like(self, record: dict, path: Path) -> str | None:
        probe = ArtifactState(state=DONE, path="x", sha256=record["sha256"], size=record["size"],
                              mtime_ns=record.get("mtime_ns"))
        return self._check_file(probe, path)

    def _settle_takes(self, stage: str, art: ArtifactState, dest: Path) -> None:
        """Finish moves a crash cut short: a take whose file is missing while the artifact's
        own file still holds exactly that take's bytes gets its file."""
        for take in art.takes:
            path = self.path / take["path"]
            if os.path.lexists(path) or not os.path.lexists(dest):
                continue
            if art.state == DONE and art.sha256 == take["sha256"]:
                continue  # the artifact's own bytes: never taken away from it
            if self._check_file_like(take, dest) is None:
                ensure_dir(self.path, stage, "takes")
                os.replace(dest, path)
                fsync_dir(path.parent)

    @uninterruptible
    def reset_shot(self, stage: str, shot_id: int, reason: str) -> None:
        """Forget a done artifact that is missing, damaged or stale, so it is made again."""
        with self._mutex:
            self._log({"op": "shot", "shot": shot_id, "stage": stage,
                       "set": {"state": TODO, "last_error": reason, "sha256": None,
                               "size": None, "mtime_ns": None, "pending": None, "pinned": False}})

    # -- verify: every recorded file read in full (resume trusts size + mtime)
    def verify_files(self) -> VerifyReport:
        """Read every file the session records: the step outputs (they have no recorded
        digest: they must parse), each done image, voice and clip and its takes, and the
        film, against the sha256 and size recorded for them."""
        bad: list[BadFile] = []
        checked = read = 0
        for step, (name, _cls) in STEP_FILES.items():
            if self.meta.steps.get(step) != DONE:
                continue
            checked += 1
            try:
                found = self.read_step_output(step)
                problem = "missing" if found is None else None
            except SessionCorruptError as exc:
                problem = exc.reason
            if problem:
                bad.append(BadFile(name, name, problem, ("step", step)))
        for shot in self.meta.shots:
            for stage, label in _STAGE_LABELS.items():
                art = shot.artifact(stage)
                records = [(art, f"shot {shot.id} {label}", ("shot", stage, shot.id))] if art.state == DONE else []
                records += [(t, f"shot {shot.id} {label} take {t['n']}", ("take", stage, shot.id, t["n"]))
                            for t in art.takes]
                for rec, what, ref in records:
                    checked += 1
                    problem, n = self._verify_record(rec)
                    read += n
                    if problem:
                        rel = rec.path if isinstance(rec, ArtifactState) else rec["path"]
                        bad.append(BadFile(what, rel, problem, ref))
        f = self.meta.film
        if f.state == DONE:
            checked += 1
            problem, n = _read_check(self.film_path, f.size, f.sha256)
            read += n
            for name in [] if problem else f.info.get("subtitles", []):
                if name not in ("film.srt", "film.vtt") or not (self.path / name).is_file():
                    problem = f"its subtitle file {name} is missing"
            if problem:
                bad.append(BadFile("film", FILM_NAME, problem, ("film",)))
        return VerifyReport(self.id, checked, read, tuple(bad))

    def _verify_record(self, rec: ArtifactState | dict) -> tuple[str | None, int]:
        if isinstance(rec, dict):
            return _read_check(self.path / rec["path"], rec.get("size"), rec.get("sha256"))
        path = self.path / rec.path
        if rec.pending and not os.path.lexists(path):  # a commit a kill cut short: its bytes are in .work/
            path = self.path / rec.pending
        return _read_check(path, rec.size, rec.sha256)

    @uninterruptible
    def set_aside_bad(self, bad: BadFile) -> BadFile:
        """Move a bad file into ``.replaced/`` beside it (nothing is deleted) and mark its
        record todo, so the next run makes exactly it again; a bad take is only set aside
        and forgotten (a take cannot be made again)."""
        with self._mutex:
            kind, *ref = bad.ref
            path = self.path / bad.path
            moved = None
            if kind == "shot":
                art = self.shot_state(ref[1]).artifact(ref[0])
                if art.pending and not os.path.lexists(path):
                    path = self.path / art.pending
            if os.path.lexists(path):
                moved = move_aside(path).relative_to(self.path).as_posix()
            reason = f"verify: {bad.path} {bad.problem}"
            if kind == "shot":
                self.reset_shot(ref[0], ref[1], reason)
            elif kind == "take":
                art = self.shot_state(ref[1]).artifact(ref[0])
                self._log({"op": "shot", "shot": ref[1], "stage": ref[0],
                           "set": {"takes": [t for t in art.takes if t["n"] != ref[2]]}})
            elif kind == "film":
                self.reset_film(reason)
            else:
                self.meta.steps[ref[0]] = TODO
            if kind != "take" and self.meta.status == COMPLETE:
                self.meta.status, self.meta.last_error = IN_PROGRESS, reason
            self.write_meta()
            return attrs.evolve(bad, moved_to=moved)

    @uninterruptible
    def record_verify(self, report: VerifyReport) -> None:
        """Keep the outcome in the meta (for `report` and `serve`) and fold the journal in."""
        with self._mutex:
            self.meta.last_verify = {"at": now(), "checked": report.checked,
                                     "bad": [b.path for b in report.bad], "repaired": report.repaired}
            self.compact()

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

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.meta.status if self.meta else '?'}>"
