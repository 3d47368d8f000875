"""The records that flow between stages: story, scene graph, shot plan, and the
JSON converter that reads and writes them at the edges (files, HTTP, CLI)."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.preconf.json import make_converter

T = TypeVar("T")

# Bounds on what a story, scene graph or shot plan may hold. They come from people (a
# hand-edited shots.json) and from LLMs, and every value ends up in prompts, files and the
# terminal: a 50 MB title or an infinite duration must be refused at the edge.
MAX_TITLE = 300
MAX_LINE = 4_000
MAX_PROMPT = 20_000
MAX_SYNOPSIS = 50_000
MAX_NAME = 200
MAX_LIST = 200
MAX_SCENES = 1_000
MAX_SHOTS = 10_000
MAX_SHOT_ID = 99_999
MIN_DURATION_S, MAX_DURATION_S = 0.1, 600.0
MAX_SEED = 2**64 - 1  # ComfyUI's seed inputs take 0 .. 2**64-1


def _text(limit: int):
    def check(_inst, attribute, value):
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"{attribute.name} is {len(value):,} characters long; at most "
                             f"{limit:,} are accepted")
    return check


def _items(limit: int, item_limit: int | None = None):
    def check(_inst, attribute, value):
        if len(value) > limit:
            raise ValueError(f"{attribute.name} has {len(value):,} entries; at most {limit:,} "
                             f"are accepted")
        if item_limit is not None:
            for item in value:
                if isinstance(item, str) and len(item) > item_limit:
                    raise ValueError(f"an entry of {attribute.name} is {len(item):,} characters "
                                     f"long; at most {item_limit:,} are accepted")
    return check


def _int_in(low: int, high: int):
    def check(_inst, attribute, value):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{attribute.name} must be a whole number from {low} to {high:,}, "
                             f"got {value!r}")
    return check


def _duration(_inst, attribute, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not MIN_DURATION_S <= value <= MAX_DURATION_S:
        raise ValueError(f"{attribute.name} must be a number of seconds from {MIN_DURATION_S:g} "
                         f"to {MAX_DURATION_S:g}, got {value!r}")


@attrs.frozen
class Character:
    name: str = attrs.field(validator=_text(MAX_NAME))
    "The character's name, as used in scenes and shots."
    description: str = attrs.field(validator=_text(MAX_LINE))
    "What the character looks like: carried into every image prompt they appear in."


@attrs.frozen
class Story:
    title: str = attrs.field(validator=_text(MAX_TITLE))
    "The film's title."
    logline: str = attrs.field(validator=_text(MAX_LINE))
    "One sentence: who wants what, and what stands in the way."
    synopsis: str = attrs.field(validator=_text(MAX_SYNOPSIS))
    "A few paragraphs, separated by blank lines."
    characters: tuple[Character, ...] = attrs.field(default=(), validator=_items(MAX_LIST))
    "The cast, each with a visual description."
    style: str = attrs.field(default="", validator=_text(MAX_LINE))
    """The film's look, its visual style bible: palette, lens, lighting, era. Kept out of the
    shots' image prompts: each backend applies it to every shot without a look of its own
    (see :mod:`reelforge.looks`)."""


@attrs.frozen
class Scene:
    id: str = attrs.field(validator=_text(MAX_NAME))
    "A short stable id, e.g. 's1'. Shots refer to it."
    order: int = attrs.field(validator=_int_in(-MAX_SCENES * 100, MAX_SCENES * 100))
    "Position in the film, 1-based."
    summary: str = attrs.field(validator=_text(MAX_LINE))
    "What happens in the scene."
    setting: str = attrs.field(default="", validator=_text(MAX_LINE))
    "Where and when it takes place."
    characters: tuple[str, ...] = attrs.field(default=(), validator=_items(MAX_LIST, MAX_NAME))
    "Names of the characters present."


@attrs.frozen
class SceneGraph:
    scenes: tuple[Scene, ...] = attrs.field(validator=_items(MAX_SCENES))
    "The scenes, in film order."


@attrs.frozen
class Shot:
    id: int = attrs.field(validator=_int_in(1, MAX_SHOT_ID))
    "1-based shot number; files are named shot_001.png, shot_001.mp4, ..."
    scene_id: str = attrs.field(validator=_text(MAX_NAME))
    "The scene this shot belongs to."
    description: str = attrs.field(validator=_text(MAX_LINE))
    "One line a person reads in `sessions view`."
    image_prompt: str = attrs.field(validator=_text(MAX_PROMPT))
    """What is in the still image: subject, action, framing, setting. The film's look (the
    story's style, or the shot's own ``look``) is applied by the backend, not written here."""
    motion_prompt: str = attrs.field(default="", validator=_text(MAX_PROMPT))
    "Camera and motion note for the video renderer."
    negative_prompt: str = attrs.field(default="", validator=_text(MAX_PROMPT))
    "What the image and video models should avoid."
    duration_s: float = attrs.field(default=3.0, validator=_duration)
    "Length of the clip in seconds."
    characters: tuple[str, ...] = attrs.field(default=(), validator=_items(MAX_LIST, MAX_NAME))
    "Names of the characters in frame."
    seed: int = attrs.field(default=0, validator=_int_in(0, MAX_SEED))
    "Seed for image and video generation, so a rerun gives the same pictures."
    narration: str = attrs.field(default="", validator=_text(MAX_LINE))
    "What the narrator says over this shot (empty: the shot is silent)."
    look: str = attrs.field(default="", validator=_text(MAX_LINE))
    """This shot's own look (palette, lens, light), in place of the film's (the story's
    style); empty: the film's. A backend is handed the shot with the look it is made with
    filled in here (and in ``ShotJob.look``)."""


@attrs.frozen
class ShotPlan:
    shots: tuple[Shot, ...] = attrs.field()
    "The shots, in film order."

    @shots.validator
    def _check_shots(self, attribute, value):
        if len(value) > MAX_SHOTS:
            raise ValueError(f"shots has {len(value):,} entries; at most {MAX_SHOTS:,} are accepted")
        seen: set[int] = set()
        for shot in value:
            if shot.id in seen:
                raise ValueError(f"shot id {shot.id} is used twice; every shot needs its own id")
            seen.add(shot.id)


def _make_converter(*, forbid_extra_keys: bool, exact_types: bool = False) -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=forbid_extra_keys)
    if exact_types:
        # Files and LLM answers: a number where text belongs (or "3" where a number belongs,
        # or true where an id belongs) is an error, not something to coerce.
        def _exact(kinds: tuple[type, ...], label: str):
            def hook(value: Any, _type: Any):
                if isinstance(value, bool) or not isinstance(value, kinds):
                    raise ValueError(f"expected {label}, got {type(value).__name__} {value!r:.40}")
                return _type(value) if _type is float else value
            return hook

        conv.register_structure_hook(int, _exact((int,), "a whole number"))
        conv.register_structure_hook(float, _exact((int, float), "a number"))
        conv.register_structure_hook(str, _exact((str,), "text"))
    # Options arrive as strings from `-o key=value`; bool("false") is True, so be explicit.
    def _bool(value: Any, _type: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected a boolean (true/false), got {value!r}")

    conv.register_structure_hook(bool, _bool)
    return conv


#: Converter for options from the command line and config files (strings become numbers).
converter = _make_converter(forbid_extra_keys=True)
#: Strict converter for records that come from people, LLMs or session files.
record_converter = _make_converter(forbid_extra_keys=True, exact_types=True)
#: Lenient converter for data we wrote ourselves in an older schema.
lenient_converter = _make_converter(forbid_extra_keys=False)


def _format_exception(exc: BaseException, type_: Any) -> str:
    text = cattrs.v.format_exception(exc, type_)
    # attrs validators raise with their own message; keep it (cattrs' default drops it)
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    if type_ is None and message and message not in text:
        text = f"{text}: {message}"
    return text


def describe_errors(exc: BaseException, what: str = "$") -> str:
    """Turn a cattrs error into one line per failure, e.g. ``shots[3].duration_s: expected float``."""
    if isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        return "; ".join(cattrs.transform_error(exc, path=what, format_exception=_format_exception))
    return f"{what}: {exc}"


def structure(data: Any, cls: type[T], what: str = "$", *, strict: bool = True) -> T:
    """Structure ``data`` into ``cls``; raise ValueError with a readable, path-naming message."""
    conv = record_converter if strict else lenient_converter
    try:
        return conv.structure(data, cls)
    except Exception as exc:  # cattrs raises several kinds; all become one readable message
        raise ValueError(describe_errors(exc, what)) from exc


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)


def to_json(obj: Any) -> str:
    return json.dumps(unstructure(obj), indent=2, ensure_ascii=False) + "\n"
