"""The records that flow between stages: story, scene graph, shot plan, and the
JSON converter that reads and writes them at the edges (files, HTTP, CLI)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.preconf.json import make_converter

T = TypeVar("T")


@attrs.frozen
class Character:
    name: str
    "The character's name, as used in scenes and shots."
    description: str
    "What the character looks like: carried into every image prompt they appear in."


@attrs.frozen
class Story:
    title: str
    "The film's title."
    logline: str
    "One sentence: who wants what, and what stands in the way."
    synopsis: str
    "A few paragraphs, separated by blank lines."
    characters: tuple[Character, ...] = ()
    "The cast, each with a visual description."
    style: str = ""
    "The visual style bible: palette, lens, lighting, era. Carried into every image prompt."


@attrs.frozen
class Scene:
    id: str
    "A short stable id, e.g. 's1'. Shots refer to it."
    order: int
    "Position in the film, 1-based."
    summary: str
    "What happens in the scene."
    setting: str = ""
    "Where and when it takes place."
    characters: tuple[str, ...] = ()
    "Names of the characters present."


@attrs.frozen
class SceneGraph:
    scenes: tuple[Scene, ...]
    "The scenes, in film order."


@attrs.frozen
class Shot:
    id: int
    "1-based shot number; files are named shot_001.png, shot_001.mp4, ..."
    scene_id: str
    "The scene this shot belongs to."
    description: str
    "One line a person reads in `sessions view`."
    image_prompt: str
    "The prompt for the still image, style bible included."
    motion_prompt: str = ""
    "Camera and motion note for the video renderer."
    negative_prompt: str = ""
    "What the image and video models should avoid."
    duration_s: float = 3.0
    "Length of the clip in seconds."
    characters: tuple[str, ...] = ()
    "Names of the characters in frame."
    seed: int = 0
    "Seed for image and video generation, so a rerun gives the same pictures."
    narration: str = ""
    "The voice-over line spoken over this shot (empty in plans written before narration)."


@attrs.frozen
class ShotPlan:
    shots: tuple[Shot, ...]
    "The shots, in film order."


def _make_converter(*, forbid_extra_keys: bool) -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=forbid_extra_keys)
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


#: Strict converter for data that comes from people, LLMs or session files.
converter = _make_converter(forbid_extra_keys=True)
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
    conv = converter if strict else lenient_converter
    try:
        return conv.structure(data, cls)
    except Exception as exc:  # cattrs raises several kinds; all become one readable message
        raise ValueError(describe_errors(exc, what)) from exc


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)


def to_json(obj: Any) -> str:
    return json.dumps(unstructure(obj), indent=2, ensure_ascii=False) + "\n"
