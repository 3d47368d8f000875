"""What a session's meta file holds (the records of steps, shots, artifacts and takes),
the session's states and statuses, and the checks every record read from disk passes."""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from pathlib import Path
from typing import Any

import attrs

from reelforge.errors import SessionCorruptError
from reelforge.records import SceneGraph, ShotPlan, Story, lenient_converter
from reelforge.store.safefs import contained

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
    inputs: dict[str, Any] = attrs.Factory(dict)
    """The shot's fields that made it (its stage's prompts, narration, seed, duration, and the
    fields its backend draws), with ``options``: the backend's options. Empty for a file an
    older version made ("inputs not recorded")."""
    takes: list[dict[str, Any]] = attrs.Factory(list)
    """Earlier versions kept when the artifact was made again: ``{n, path, sha256, size,
    fingerprint, seed, backend, inputs, prompt, seconds, created, rejected}`` (``inputs`` as
    above; a take an older version kept has none, and its ``prompt`` may be the one that
    replaced it)."""


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
    continuity: str | None = None
    "'last-frame': in each scene a clip starts from the last frame of the one before (``run --continuity``)."
    film_settings: dict[str, Any] = attrs.Factory(dict)
    "How the film is put together (reelforge.media.film.FilmSettings), so a resume makes the same film."
    step_usage: dict[str, dict[str, Any]] = attrs.Factory(dict)
    "Cost ledger of the story steps: seconds, attempts, prompt/completion tokens per step."
    journal_seq: int = 0
    "The last journal event folded into this snapshot."
    edited: list[int] = attrs.Factory(list)
    "Shots changed (`shots edit`, `redo`, `use`) since the film was last made: their work and the film are pending."
    cast: dict[str, ArtifactState] | None = None
    "The cast's portraits, by character name (see reelforge.engine.cast); None in a session made before the cast step existed."
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


_NONE = type(None)


#: The type(s) each ArtifactState field may hold in a session file.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "state": (str,), "attempts": (int,), "last_error": (str, _NONE), "path": (str, _NONE),
    "sha256": (str, _NONE), "size": (int, _NONE), "mtime_ns": (int, _NONE),
    "pending": (str, _NONE), "backend": (str, _NONE), "seed": (int, _NONE),
    "seconds": (int, float, _NONE), "fingerprint": (str, _NONE), "checkpoint": (dict,),
    "updated": (str, _NONE), "info": (dict,), "backend_seconds": (int, float, _NONE),
    "pinned": (bool,), "inputs": (dict,), "takes": (list,),
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
    "info": (dict,), "rejected": (bool,), "inputs": (dict,),
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


#: What each shot stage's file is called in messages.
_STAGE_LABELS = {"images": "image", "narration": "voice", "videos": "clip"}


#: The only names a music bed has in a session: ``music.<ext>`` at its root (adopt_music's names).
MUSIC_FILE = re.compile(r"music\.[a-z0-9]{1,7}", re.ASCII)


def music_file(root: Path, name: Any, source: Path) -> Path:
    """The music bed ``name`` (as a session's film settings record it) inside ``root``.

    A meta may come from anywhere (copied, shared, edited), and its music is mixed into the
    film: it must be ``music.<ext>`` at the session root, as :func:`adopt_music` names it,
    and it goes through the one containment check every stored path gets. Anything else is
    a SessionCorruptError naming ``source`` (the meta), so nothing outside is ever read."""
    try:
        path = contained(root, name, source=source)
    except SessionCorruptError as exc:
        raise SessionCorruptError(source, f"film_settings.music: {exc.reason}") from None
    if not MUSIC_FILE.fullmatch(name):
        raise SessionCorruptError(source, f"film_settings.music {name!r} is not a music file of the "
                                          f"session (music.<ext> at its root); run again with --music FILE")
    return path
