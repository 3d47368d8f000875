"""JSON schemas the LLM answers in, the wire records they are structured into, and the
checks and fix-ups applied after parsing (style bible, seeds, durations).

The schemas keep to the subset OpenAI's strict ``json_schema`` mode accepts (every object
closes ``additionalProperties`` and lists all its properties as required), which llama.cpp,
vLLM and Ollama's ``format`` also understand.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import attrs

from reelforge.records import (
    MAX_DURATION_S,
    MAX_PROMPT,
    MIN_DURATION_S,
    Character,
    SceneGraph,
    Shot,
    ShotPlan,
    Story,
    structure,
)


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _names(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


CHARACTER_SCHEMA = _object({
    "name": _string("The character's name, used in scenes and shots."),
    "description": _string(
        "A concrete visual description an image model can repeat in every shot: age, build, "
        "face, hair, clothing and colours."),
})

STORY_SCHEMA = _object({
    "title": _string("The film's title."),
    "logline": _string("One sentence: who wants what, and what stands in the way."),
    "synopsis": _string("A few short paragraphs, separated by blank lines."),
    "characters": {"type": "array", "items": CHARACTER_SCHEMA, "description": "The cast."},
    "style": _string(
        "The visual style bible in one or two sentences: medium, palette, lighting, lens, era, mood."),
})

SCENE_SCHEMA = _object({
    "id": _string("A short unique id: s1, s2, ..."),
    "order": {"type": "integer", "description": "Position in the film, 1-based."},
    "summary": _string("What happens in the scene."),
    "setting": _string("Where and when it takes place, visually."),
    "characters": _names("Names of the characters present, as in the story."),
})

SCENE_GRAPH_SCHEMA = _object({
    "scenes": {"type": "array", "items": SCENE_SCHEMA, "description": "The scenes, in film order."},
})

SHOT_SCHEMA = _object({
    "id": {"type": "integer", "description": "Shot number, counting on from the first id asked for."},
    "scene_id": _string("The id of the scene this shot belongs to."),
    "description": _string("One line saying what the shot shows."),
    "image_prompt": _string(
        "A self-contained prompt for the still image: subject, action, framing, setting, light "
        "(not the film's style, which is added to every shot)."),
    "motion_prompt": _string("Camera move and motion in the shot, for the image-to-video model."),
    "negative_prompt": _string("What the image and video models should avoid."),
    "duration_s": {"type": "number", "description": "Length of the shot in seconds."},
    "characters": _names("Names of the characters in frame, as in the story."),
    "narration": _string(
        "One line of voice-over spoken over this shot: one sentence of about 8 to 20 words, "
        "in the language of the idea."),
})

SHOT_PLAN_SCHEMA = _object({
    "shots": {"type": "array", "items": SHOT_SCHEMA, "description": "The shots, in film order."},
})

#: Schema name (as sent in OpenAI's ``json_schema.name``) -> schema.
SCHEMAS: dict[str, dict[str, Any]] = {
    "story": STORY_SCHEMA,
    "scene_graph": SCENE_GRAPH_SCHEMA,
    "shot_plan": SHOT_PLAN_SCHEMA,
}

DEFAULT_NEGATIVE_PROMPT = "blurry, low quality, deformed hands, extra limbs, text, watermark, logo"


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, separators=(",", ":"))


# -- wire records: what the model sends, before fix-ups ---------------------------------

@attrs.frozen
class ShotDraft:
    """One shot as the model wrote it. ``seed`` is optional: models rarely pick good ones."""

    id: int
    scene_id: str
    description: str
    image_prompt: str
    motion_prompt: str = ""
    negative_prompt: str = ""
    duration_s: float = 3.0
    characters: tuple[str, ...] = ()
    seed: int | None = None
    narration: str = ""


@attrs.frozen
class ShotDrafts:
    shots: tuple[ShotDraft, ...]


class InvalidReply(ValueError):
    """The model's reply cannot be used; the message is sent back to it for repair."""


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)


def parse_json_object(content: str) -> dict[str, Any]:
    """Decode a reply that should be one JSON object. Markdown fences and prose around a
    complete object (which local models like to add) are tolerated; anything else wrong
    raises InvalidReply saying where."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        raise InvalidReply("the reply was empty; expected one JSON object")
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidReply("the reply's JSON is nested too deeply; expected the flat object "
                           "the schema describes") from None
    except json.JSONDecodeError as exc:
        # Local models like to wrap the object in a sentence; a complete object inside is fine.
        start = text.find("{")
        try:
            data, _ = json.JSONDecoder().raw_decode(text, start) if start >= 0 else (None, 0)
        except (json.JSONDecodeError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise InvalidReply(f"the reply is not valid JSON: {exc.msg} at line {exc.lineno} "
                               f"column {exc.colno} (char {exc.pos})") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvalidReply(f"the reply is not usable JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise InvalidReply(f"expected one JSON object, got a JSON {type(data).__name__}")
    return data


def _structure(data: Any, cls: type, what: str) -> Any:
    try:
        return structure(data, cls, what)
    except RecursionError:
        raise InvalidReply(f"{what}: nested too deeply") from None
    except ValueError as exc:
        raise InvalidReply(str(exc)) from None


# -- bounds on what a model may send ------------------------------------------------------
# Generous for a film (an image prompt of 4,000 characters is about 1,000 tokens, twice what
# T5-based image models read) and small enough that a runaway or hostile answer is refused,
# naming the field, instead of being stored and sent back in every later prompt.

#: Longest text, in characters, per record and field.
TEXT_LIMITS: dict[str, dict[str, int]] = {
    "Story": {"title": 300, "logline": 1_000, "synopsis": 20_000, "style": 2_000},
    "Character": {"name": 100, "description": 2_000},
    "Scene": {"id": 50, "summary": 4_000, "setting": 2_000},
    "ShotDraft": {"scene_id": 50, "description": 1_000, "image_prompt": 4_000,
                  "motion_prompt": 2_000, "negative_prompt": 2_000, "narration": 1_000},
}
#: Most characters in a story; most names listed in one scene or shot.
MAX_CHARACTERS = 100
MAX_NAMES = 50
#: Longest name in a scene's or shot's character list.
MAX_NAME_LEN = 100
#: Longest shot the model may ask for, in seconds (durations are rescaled afterwards).
MAX_DRAFT_SECONDS = 3_600.0


def _check_lengths(data: Any, record: str, path: str, *, names: bool = True) -> None:
    """InvalidReply naming the first text field of the raw answer ``data`` (one ``record``)
    over its limit (see TEXT_LIMITS). Checked before structuring, so the message names the
    field whatever the records' own validators would say."""
    if not isinstance(data, dict):
        return  # structuring reports the wrong type
    for name, limit in TEXT_LIMITS[record].items():
        value = data.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise InvalidReply(f"{path}.{name}: {len(value):,} characters; at most {limit:,} "
                               f"are allowed")
    listed = data.get("characters") if names else None
    if isinstance(listed, list):
        if len(listed) > MAX_NAMES:
            raise InvalidReply(f"{path}.characters: {len(listed)} names; at most {MAX_NAMES} are allowed")
        for i, name in enumerate(listed):
            if isinstance(name, str) and len(name) > MAX_NAME_LEN:
                raise InvalidReply(f"{path}.characters[{i}]: {len(name):,} characters; at most "
                                   f"{MAX_NAME_LEN} are allowed")


def _items(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _require_text(value: str, path: str) -> None:
    if not value.strip():
        raise InvalidReply(f"{path}: must not be empty")


def check_story(data: dict[str, Any]) -> Story:
    _check_lengths(data, "Story", "$", names=False)
    cast = _items(data, "characters")
    if len(cast) > MAX_CHARACTERS:
        raise InvalidReply(f"$.characters: {len(cast)} characters; at most {MAX_CHARACTERS} are allowed")
    for i, character in enumerate(cast):
        _check_lengths(character, "Character", f"$.characters[{i}]")
    story = _structure(data, Story, "$")
    _require_text(story.title, "$.title")
    _require_text(story.synopsis, "$.synopsis")
    seen: set[str] = set()
    for i, character in enumerate(story.characters):
        _require_text(character.name, f"$.characters[{i}].name")
        key = character.name.strip().casefold()
        if key in seen:
            raise InvalidReply(f"$.characters[{i}].name: {character.name!r} appears twice")
        seen.add(key)
    return attrs.evolve(
        story,
        characters=tuple(Character(c.name.strip(), c.description.strip()) for c in story.characters),
        style=story.style.strip(),
    )


def check_scene_graph(data: dict[str, Any], *, max_scenes: int, story: Story | None = None) -> SceneGraph:
    """Structure and check the scene graph; scenes are put in ``order`` and renumbered 1..n,
    and character names spelled as in ``story`` (matched case-insensitively)."""
    for i, scene in enumerate(_items(data, "scenes")):
        _check_lengths(scene, "Scene", f"$.scenes[{i}]")
    graph = _structure(data, SceneGraph, "$")
    names = {c.name.casefold(): c.name for c in story.characters} if story else {}
    if not graph.scenes:
        raise InvalidReply("$.scenes: expected at least one scene")
    if len(graph.scenes) > max_scenes:
        raise InvalidReply(f"$.scenes: {len(graph.scenes)} scenes for {max_scenes} shots; "
                           f"write at most {max_scenes} scenes")
    seen: set[str] = set()
    for i, scene in enumerate(graph.scenes):
        _require_text(scene.id, f"$.scenes[{i}].id")
        if scene.id.strip() in seen:
            raise InvalidReply(f"$.scenes[{i}].id: {scene.id!r} is used by another scene")
        seen.add(scene.id.strip())
    ordered = sorted(enumerate(graph.scenes), key=lambda pair: (pair[1].order, pair[0]))
    return SceneGraph(tuple(
        attrs.evolve(scene, id=scene.id.strip(), order=n, characters=tuple(
            names.get(name.strip().casefold(), name.strip()) for name in scene.characters))
        for n, (_, scene) in enumerate(ordered, start=1)
    ))


def check_shot_batch(data: dict[str, Any], *, count: int, scene_ids: list[str]) -> list[ShotDraft]:
    """Structure one batch of shots and check it is exactly what was asked for: ``count``
    shots, each in one of ``scene_ids``, and every one of those scenes covered."""
    for i, draft in enumerate(_items(data, "shots")):
        _check_lengths(draft, "ShotDraft", f"$.shots[{i}]")
    drafts = _structure(data, ShotDrafts, "$").shots
    if len(drafts) != count:
        raise InvalidReply(f"$.shots: expected exactly {count} shots, got {len(drafts)}")
    allowed = set(scene_ids)
    for i, draft in enumerate(drafts):
        if draft.scene_id.strip() not in allowed:
            raise InvalidReply(f"$.shots[{i}].scene_id: {draft.scene_id!r} is not one of the "
                               f"scenes asked for ({', '.join(scene_ids)})")
        _require_text(draft.image_prompt, f"$.shots[{i}].image_prompt")
        if not draft.narration.strip():
            # A shot without its line would be silently silent in the film: ask again.
            raise InvalidReply(f"$.shots[{i}].narration: must not be empty; write one sentence of "
                               f"voice-over for every shot")
        if not 0 < draft.duration_s <= MAX_DRAFT_SECONDS:  # also refuses NaN and infinity
            raise InvalidReply(f"$.shots[{i}].duration_s: must be more than 0 and at most "
                               f"{MAX_DRAFT_SECONDS:g} seconds, got {draft.duration_s!r}")
    if count >= len(scene_ids):
        missing = [s for s in scene_ids if s not in {d.scene_id.strip() for d in drafts}]
        if missing:
            raise InvalidReply(f"$.shots: no shot for scene(s) {', '.join(missing)}; every scene "
                               f"needs at least one shot")
    return list(drafts)


# -- fix-ups applied in code, so they hold even when the model forgets -------------------

def derive_seed(base: int | None, title: str, shot_id: int) -> int:
    """A stable seed per shot, from the backend's seed option and the film's title."""
    digest = hashlib.sha256(f"{base or 0}\x1f{title}\x1f{shot_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def with_bible(prompt: str, story: Story, in_frame: tuple[str, ...], *, limit: int = MAX_PROMPT) -> str:
    """``prompt`` followed by the look of every character in frame, each added only if the
    prompt does not already carry it word for word, within ``limit`` characters (character
    looks while room is left). The film's style is not added: it is the film's look, which
    the backend applies (reelforge.looks); one the model wrote in word for word is taken out."""
    from reelforge.looks import without

    prompt = without(prompt.strip(), story.style).strip().rstrip(".")
    folded = prompt.casefold()
    parts = [prompt] if prompt else []
    room = limit - len(prompt) - 4
    for character in story.characters:
        if character.name in in_frame and character.description:
            if character.description.casefold().rstrip(".") not in folded:
                part = f"{character.name}: {character.description.rstrip('.')}"
                if len(part) + 2 > room:
                    break
                parts.append(part)
                room -= len(part) + 2
    return (". ".join(parts) + ".")[:limit] if parts else ""


def _in_frame(draft: ShotDraft, story: Story) -> tuple[str, ...]:
    """The story characters in the shot: those the model listed (matched case-insensitively)
    plus any named in its description or image prompt; other names it listed are kept."""
    by_key = {c.name.casefold(): c.name for c in story.characters}
    names: list[str] = []
    for name in draft.characters:
        name = by_key.get(name.strip().casefold(), name.strip())
        if name and name not in names:
            names.append(name)
    text = f"{draft.description}\n{draft.image_prompt}"
    for character in story.characters:
        if character.name not in names and _mentions(text, character.name):
            names.append(character.name)
    return tuple(names)


def fit_durations(durations: list[float], target_seconds: float) -> list[float]:
    """Scale the shot lengths so they add up to ``target_seconds`` (rounded to 0.1 s,
    at least 1 s each), keeping the model's pacing."""
    total = sum(durations)
    if target_seconds <= 0 or total <= 0:
        return durations
    factor = target_seconds / total
    # within what a Shot takes (reelforge.records), whatever pacing the model chose
    return [min(MAX_DURATION_S, max(1.0, MIN_DURATION_S, round(d * factor, 1))) for d in durations]


def finish_plan(drafts: list[ShotDraft], story: Story, *, base_seed: int | None,
                target_seconds: float) -> ShotPlan:
    """Turn checked drafts into the ShotPlan: ids renumbered 1..n in film order, the cast's
    looks in every image prompt (the style is the film's look, applied by the backend),
    seeds where the model gave none, durations fitted."""
    durations = fit_durations([d.duration_s for d in drafts], target_seconds)
    shots = []
    for n, (draft, duration) in enumerate(zip(drafts, durations), start=1):
        in_frame = _in_frame(draft, story)
        usable = draft.seed is not None and 0 <= draft.seed < 2**63  # what image models take
        seed = draft.seed if usable else derive_seed(base_seed, story.title, n)
        shots.append(Shot(
            id=n,
            scene_id=draft.scene_id.strip(),
            description=draft.description.strip(),
            image_prompt=with_bible(draft.image_prompt, story, in_frame),
            motion_prompt=draft.motion_prompt.strip(),
            negative_prompt=draft.negative_prompt.strip() or DEFAULT_NEGATIVE_PROMPT,
            duration_s=duration,
            characters=in_frame,
            seed=seed,
            narration=" ".join(draft.narration.split()),
        ))
    return ShotPlan(tuple(shots))


__all__ = [
    "SCHEMAS", "STORY_SCHEMA", "SCENE_GRAPH_SCHEMA", "SHOT_PLAN_SCHEMA", "ShotDraft", "ShotDrafts",
    "InvalidReply", "parse_json_object", "check_story", "check_scene_graph", "check_shot_batch",
    "finish_plan", "with_bible", "derive_seed", "fit_durations",
]
