"""The small interfaces backends implement. A backend is a class with a ``name``, an attrs
``Options`` class and the methods of its stage; the runner creates it as ``Backend(options)``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol, runtime_checkable

import attrs

from reelforge.records import SceneGraph, Shot, ShotPlan, Story


@attrs.frozen
class NoOptions:
    """Options of a backend that takes none."""


@runtime_checkable
class StoryWriter(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type]

    def write_story(self, idea: str) -> Story: ...

    def build_scene_graph(self, story: Story) -> SceneGraph: ...

    def plan_shots(self, story: Story, scenes: SceneGraph) -> ShotPlan: ...


@attrs.frozen
class Reference:
    """A reference picture a shot's image generator may use: a character's portrait from the
    session's cast (``reelforge cast show``)."""

    name: str
    "The character's name, as in the story."
    path: Path
    "The portrait file, absolute, inside the session folder (under cast/)."
    sha256: str
    "The portrait's digest: a shot's fingerprint covers it (a new portrait remakes the shot)."
    kind: str = "character"
    "What the reference shows; 'character' for a cast portrait."


@runtime_checkable
class ImageGenerator(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type]
    #: How many shots this backend may work on at once.
    concurrency: int

    def generate(self, shot: Shot, job: "ShotJob") -> Path:
        """Write the shot's image (PNG) under ``job.work_dir`` and return its path."""


# An image generator that can use reference pictures sets the class attribute
# ``takes_references = True``: the runner then hands each shot the portraits of the characters
# it names (ShotJob.references, in the order of Shot.characters), and the shot's fingerprint
# covers their digests. Left False (the default), ShotJob.references is always empty.
# The cast step (after the story) asks the image generator for one portrait per character:
# ``generate(shot, job)`` with ``job.stage == "cast"`` and a shot made for the portrait
# (scene_id "cast", characters = (name,), the character's description in the film's look).
TAKES_REFERENCES_ATTRIBUTE = "takes_references"


def takes_references(instance: Any) -> bool:
    """Whether an image generator (instance or class) says it uses reference pictures."""
    return getattr(instance, TAKES_REFERENCES_ATTRIBUTE, False) is True


# Optional on any backend:
#   close(self) -> None      called once when the run ends (however it ends), e.g. to close
#                            HTTP clients.
#   preflight(self) -> None  a cheap check (well under a second, no retries) that the
#                            backend's server is there and speaks its API; raise ConfigError
#                            or ServiceError with one clear message when the run cannot work.
#                            Runner.validate() and Runner.start() call it for every selected
#                            backend before a session is created; Runner.resume() calls it
#                            for a backend with work left, before its first step or shot.
# On Ctrl-C the runner sets ShotJob.cancelled; a backend should stop waiting soon and may
# return or raise anything: once cancelled, the runner keeps finished files and ignores
# errors, and the shot stays todo for the next run.


@runtime_checkable
class Renderer(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type]
    concurrency: int

    def render(self, shot: Shot, image: Path, job: "ShotJob") -> Path:
        """Write the shot's clip (MP4 or WebM) under ``job.work_dir`` and return its path."""


# Optional on a renderer:
#   starts_from_image: ClassVar[bool] = True   its clip starts from the picture it is given
#                            (image-to-video). Only such a renderer may run a session with
#                            --continuity last-frame, where ``image`` is then the last frame of
#                            the clip before in the scene (a PNG in the shot's scratch folder).


@runtime_checkable
class Narrator(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type]
    concurrency: int

    def narrate(self, shot: Shot, job: "ShotJob") -> Path:
        """Speak ``shot.narration`` into a WAV file under ``job.work_dir`` and return its
        path. Raise StageError (clearly worded) for text the voice cannot speak, a missing
        voice or model file, or audio implausibly short for the text."""


#: A backend class may set ``remote = True`` when its work runs on servers that every process
#: of a run may share (GPU servers): an engine with workers sends such calls to its render
#: queue, and runs the others (Pillow, ffmpeg, a local voice) where the film is made.
REMOTE_ATTRIBUTE = "remote"


@runtime_checkable
class Places(Protocol):
    """Slots on shared places (e.g. GPU servers) held across every process of an engine
    that runs backend calls on many hosts. A backend that picks a server for a shot asks
    for a slot there first, and skips a server whose slots are all held elsewhere."""

    def hold(self, place: str, slots: int) -> Callable[[], None] | None:
        """Hold one of ``slots`` slots of ``place`` for this job: returns the call that
        releases it, or None when every slot is held by other jobs. Holding again a slot
        this job already holds (a job run again after a crash) succeeds."""


@attrs.frozen
class Reference:
    """A reference image a shot is drawn with (a character's portrait, a recurring place)."""

    name: str
    "Who or what it shows (the character's name)."
    path: Path
    "The image file: absolute, inside the session folder."
    sha256: str
    "Hex digest of the file's bytes."
    kind: str = "character"
    "'character' or 'place'."


class _Job:
    """What StageJob and ShotJob share: durable checkpoints and progress reports."""

    def save_checkpoint(self, **data: Any) -> None:
        """Durably record backend state (e.g. a remote job id, or the parts of a stage
        already received) *before* doing the expensive thing, so a resumed run can reattach
        or carry on instead of starting over. Values must be JSON-serialisable and must
        not contain secrets. A stage's checkpoint is cleared once its output is saved."""
        self._save(data)
        self.checkpoint = {**self.checkpoint, **data}

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0.0 to 1.0, and a short message); observers get a
        ``shot_progress`` or ``stage_progress`` hook call and the live bars show it."""
        self._progress(fraction, message)


@attrs.define
class StageJob(_Job):
    """What the runner hands a story writer method that accepts a ``job`` keyword argument
    (``write_story(idea, *, job)`` and so on): a place to save partial work, so a stage
    made of several requests (a long shot plan asked for in parts) resumes where it failed."""

    session_id: str
    "The session's id."
    stage: str
    "'story', 'scene_graph' or 'shots'."
    checkpoint: Mapping[str, Any]
    "What this stage saved with save_checkpoint() in an earlier attempt or run."
    cancelled: threading.Event
    "Set when the user pressed Ctrl-C."
    _save: Callable[[dict[str, Any]], None] = attrs.field(repr=False)
    _progress: Callable[[float, str], None] = attrs.field(repr=False, default=lambda f, m: None)


@attrs.define
class ShotJob(_Job):
    """What the runner hands a backend for one attempt at one shot."""

    session_id: str
    "The session's id: stable across runs, usable in deterministic ids."
    stage: str
    "'images', 'narration', 'videos', or 'cast' (a character's portrait, see above)."
    shot: Shot
    "The shot being worked on."
    attempt: int
    "Attempt number, counting from 1 across runs of the session."
    work_dir: Path
    "A scratch folder for this shot and stage, inside the session folder; kept across runs."
    checkpoint: Mapping[str, Any]
    "What this backend saved for this shot with save_checkpoint(), in this run or an earlier one."
    cancelled: threading.Event
    "Set when the user pressed Ctrl-C: stop waiting and return/raise soon."
    _save: Callable[[dict[str, Any]], None] = attrs.field(repr=False)
    _progress: Callable[[float, str], None] = attrs.field(repr=False, default=lambda f, m: None)
    places: Places | None = attrs.field(default=None, repr=False)
    "Slots on servers shared with other processes (an engine with workers), else None."
    references: tuple[Reference, ...] = ()
    "The portraits of the characters the shot names (Shot.characters order), for an image generator with ``takes_references = True``; else empty."
    film_overlap_s: float = 0.0
    """Seconds the film lays this shot's clip over each neighbour (its crossfade; 0 when the
    shots are cut together). A renderer that draws text over the picture keeps the text out
    of these seconds at each end, so two shots' text never shows at once and none blinks at
    a cut. A renderer whose clip depends on it sets the class attribute
    ``uses_film_overlap = True``: a changed transition then makes its clips again."""

    @property
    def look(self) -> str:
        """The look to make this shot with (palette, lens, light): the shot's own, else the
        film's (the story's style); "" when the film has none. ``shot.image_prompt`` says
        only what is in the picture: a backend applies the look itself (e.g. with
        :attr:`prompt`), and never needs to find it inside the prompt."""
        return self.shot.look

    @property
    def prompt(self) -> str:
        """The positive prompt for a text-to-image model: the image prompt, then the look
        (not added again to a prompt planned before looks were kept apart, which holds it)."""
        from reelforge.looks import compose

        return compose(self.shot.image_prompt, self.shot.look)
