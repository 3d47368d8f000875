"""The offline planner's shots of a sentence idea: what each shot shows (the protagonists
doing the idea's action, where and when the idea says) and the line said over it."""

from __future__ import annotations

from reelforge.plugins.story_llm.offline_action import Telling, without_object
from reelforge.plugins.story_llm.offline_idea import _lower_place, _upper_first
from reelforge.plugins.story_llm.offline_premise import third_person
from reelforge.plugins.story_llm.offline_words import _ACTION_LINES
from reelforge.records import Story

__all__ = ["Telling", "framing", "narration"]

_PEOPLE = ("close-up", "medium shot", "low-angle shot", "silhouette shot")
_MAX_DESCRIPTION = 139


def _protagonists(told: Telling, story: Story) -> list[str]:
    n = max(1, min(3, told.premise.count))
    return [c.name for c in story.characters[:n]]


def _together(names: list[str] | tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _fit(prefix: str, *options: str) -> str:
    """The first option that makes a description short enough, else the last one cut at a word."""
    for text in options:
        if len(f"{prefix} {text}") <= _MAX_DESCRIPTION:
            return text
    room = _MAX_DESCRIPTION - len(prefix) - 1
    return options[-1][:room].rsplit(" ", 1)[0] if " " in options[-1][:room] else options[-1][:room]


def framing(told: Telling, story: Story, kind: str, place: str, detail: str, cast: tuple[str, ...],
            prefix: str) -> tuple[str, tuple[str, ...]]:
    """What the shot shows, and who is in frame."""
    where = _lower_place(place)
    time = told.premise.time
    loc = " ".join(x for x in (told.preposition(place), where) if x)
    when = f" {time}" if time else ""
    heroes = set(_protagonists(told, story))
    if kind in _PEOPLE and cast:
        together = _together(cast)
        if set(cast) <= heroes:  # the protagonists doing the action, there and then
            here = without_object(told.premise, loc)
            if told.premise.obj and told.premise.obj.lower() in here.lower():
                here = ""  # 'crossing the frozen mountain pass' says where
            at = " ".join(x for x in (here, time) if x)
            doing = " ".join(x for x in (together, told.doing, at) if x)
            return _fit(prefix, f"{doing}, {detail}", doing, " ".join(x for x in (together, at) if x)), cast
        return _fit(prefix, f"{together} {loc}{when}, {detail}", f"{together} {loc}{when}"), cast
    if kind == "macro detail shot":
        return _fit(prefix, f"{detail} {loc}{when}", f"{where}{when}"), ()
    return _fit(prefix, f"{where}{when}, {detail}", f"{where}{when}"), ()


def _pick(options: tuple[str, ...], start: float, said: set[str], **values: str) -> str:
    """A line from ``options`` (from a seeded start) not said before in the film."""
    lines = [_upper_first(o.format(**values)) for o in options]
    first = int(start * len(lines)) % len(lines)
    for k in range(len(lines)):
        line = lines[(first + k) % len(lines)]
        if line not in said:
            return line
    return lines[first]


def narration(told: Telling, story: Story, spec: dict, kind: str, who: str, place: str, detail: str,
              last: bool, said: set[str]) -> str:
    """One line of voice-over: the scene's own sentence on its first shot, the action done on
    the last, and between them a line about what the shot shows, never said twice."""
    heroes = _protagonists(told, story)
    if last:
        line = f"In the end, {_together(heroes)} {told.does}."
    elif spec["first_in_scene"]:
        sentence = spec["scene"].summary.split(". ", 1)[-1].strip()
        line = sentence.split("; ", 1)[0].rstrip(".") + "."
    else:
        values = dict(who=who, doing=told.doing, tries=third_person("try"), detail=detail,
                      Detail=_upper_first(detail), place=place, Place=_upper_first(place))
        if who and kind in _PEOPLE:
            group = "person" if who in heroes else "other"
        else:
            group = "detail" if kind == "macro detail shot" else "place"
        # The shot's own kind of line first, then any other kind, so that no line is said twice.
        others = tuple(line for name, options in _ACTION_LINES.items() if name not in (group, "person", "other")
                       for line in options)
        line = _pick(_ACTION_LINES[group] + others, spec["line"] * len(_ACTION_LINES[group]) / (
            len(_ACTION_LINES[group]) + len(others)), said, **values)
    said.add(line)
    return line
