"""The offline planner's story of a sentence idea: its subject does its action, where and
when the idea says.

"A robot learns to paint in Tokyo": a robot is the protagonist, it wants to learn to paint,
fails, doubts, finds another way and learns to paint at last; every scene is in Tokyo (its
streets, a quiet corner of it) and every shot says so. Nothing here brings in a setting the
idea does not suggest: places are the idea's own and parts of them, details come from the
action, its object and (only when the idea's places suggest one) a theme.
"""

from __future__ import annotations

import random
import re

import attrs

from reelforge.plugins.story_llm.offline_idea import _article, _seed_of, _theme, _title_case, _upper_first
from reelforge.plugins.story_llm.offline_premise import Premise, gerund, read_premise, third_person
from reelforge.plugins.story_llm.offline_words import (
    _ACTION_BEATS,
    _IRREGULAR,
    _NAMES,
    _NEUTRAL_DETAILS,
    _NEUTRAL_HOMES,
    _NONHUMAN_LOOKS,
    _NOUN_PROPS,
    _PLACE_NOUNS,
    _THEMES,
    _VERB_HOMES,
    _VERB_PROPS,
    singular,
)
from reelforge.records import Character, Scene, SceneGraph, Story

_MAX_IDEA = 600
_MAX_TITLE = 120
_BUILDINGS = frozenset("""lighthouse bakery library school castle temple palace hotel cafe café shop museum theatre
theater observatory monastery church hospital studio workshop factory prison cathedral fortress tower house cabin
station kitchen mine ship boat train bus barn mill inn pub restaurant office apartment flat""".split())
_WATERS = frozenset("sea ocean lake river".split())
_SHORES = frozenset("coast beach shore bay harbour harbor pier quay port".split())


def clean_idea(idea: str) -> str:
    """The idea on one line, at most a few hundred characters (cut at a word)."""
    text = " ".join(idea.split())
    if len(text) > _MAX_IDEA:
        text = text[:_MAX_IDEA].rsplit(" ", 1)[0]
    return text


def title_of(idea: str) -> str:
    """The film's title: the idea in title case (a long idea cut at a word)."""
    text = clean_idea(idea).rstrip(".!?")
    if len(text) > _MAX_TITLE:
        text = text[:_MAX_TITLE].rsplit(" ", 1)[0].rstrip(",;:") + "..."
    return _title_case(text) or "Untitled"


def idea_of(story: Story) -> str:
    """The idea a story was written from: its synopsis opens with it (when the title agrees),
    else its title."""
    first = story.synopsis.split("\n\n", 1)[0].strip()
    if first and title_of(first) == story.title:
        return first
    return story.title


@attrs.frozen
class Telling:
    """What the story, scenes and shots of a sentence idea share, all read from the idea."""

    premise: Premise
    locations: tuple[tuple[str, str], ...]
    "Where scenes happen, home first: (preposition, place) pairs."
    details: tuple[str, ...]
    doing: str
    "The action as the protagonists do it in a shot: 'learning to paint'."
    does: str
    "The action done, agreeing with the subject: 'learns to paint', 'open the bakery'."
    theme: str
    "The theme the idea's places suggest ('' for none)."

    def preposition(self, place: str) -> str:
        for prep, noun in self.locations:
            if noun.lower() == place.lower():
                return prep
        return "at"


def _verbs(p: Premise) -> list[str]:
    """The action's verbs, innermost first: 'learn to paint' -> ['paint', 'learn']."""
    words = p.core.split()
    inner = [words[k + 1] for k in range(len(words) - 1) if words[k] == "to"]
    return [*inner, words[0]]


def _nouns(text: str) -> list[str]:
    return [singular(w) for w in re.findall(r"[\w'-]+", text.lower())]


def _sub_places(prep: str, place: str, named: bool) -> list[tuple[str, str]]:
    """Parts of the home, so that every scene stays there."""
    nouns = _nouns(place)
    head = next((n for n in nouns if n in _PLACE_NOUNS or n in _SHORES), nouns[-1] if nouns else "")
    if named:
        return [("in", f"the streets of {place}"), ("in", f"a quiet corner of {place}"), ("at", f"the edge of {place}")]
    if head in _BUILDINGS:
        return [("at", f"the door of {place}"), ("in", f"a room inside {place}"), ("on", f"the path outside {place}")]
    if head in _WATERS:
        return [("on", f"the shore of {place}"), ("on", f"the water of {place}"), ("at", f"the edge of {place}")]
    if head in _SHORES:
        return [("on", f"the rocks of {place}"), ("on", f"the cliffs above {place}"), ("in", f"a cove of {place}")]
    return [("in", f"the heart of {place}"), ("at", f"the edge of {place}"), ("on", f"a path through {place}")]


def _locations(p: Premise, idea: str) -> tuple[tuple[str, str], ...]:
    """The idea's places, home first, and parts of the home."""
    places = [(prep, place) for prep, place in p.places]
    object_place = p.obj and any(n in _PLACE_NOUNS for n in _nouns(p.obj))
    if object_place:
        if places and places[0][1][:1].isupper():  # 'opens a bakery in Lisbon' -> the bakery in Lisbon
            prep, town = places[0]
            places[0] = ("at", f"{p.obj} {prep} {town}")
        else:
            places.append(("at", p.obj))
    for role in p.roles:  # 'lighthouse keeper' -> the lighthouse
        words = role.split()
        places += [("at", f"the {w}") for w in words[:-1] if singular(w) in _PLACE_NOUNS]
    if not places:
        home = next((_VERB_HOMES[v] for v in _verbs(p) if v in _VERB_HOMES), "")
        home = home or _NEUTRAL_HOMES[_seed_of(idea) % len(_NEUTRAL_HOMES)]
        places = [("at" if home == "home" else "in", home)]
        extra = [("in", h) for h in _NEUTRAL_HOMES if h != home and h != "home"] + [("by", "an open window")]
        return tuple(dict.fromkeys([*places, *extra]))
    prep, home = places[0]
    bare = re.sub(r"^.* (?:in|on|at|off) (?=[A-Z])", "", home)
    named = bare[:1].isupper()
    return tuple(dict.fromkeys([*places, *_sub_places(prep, bare, named)]))


def telling(idea: str) -> Telling | None:
    """How to tell ``idea`` as an action, or None when it is a subject ('The rise and fall of ...')."""
    p = read_premise(idea)
    if p is None:
        return None
    words = p.core.split()
    doing = " ".join([gerund(words[0]), *words[1:]])
    does = p.core if p.plural else " ".join([third_person(words[0]), *words[1:]])
    # Only the idea's places and time choose a theme: a robot is not a space station.
    role_places = [w for role in p.roles for w in role.split()[:-1] if singular(w) in _PLACE_NOUNS]
    setting_words = " ".join([*(place for _, place in p.places), p.time, *role_places])
    theme = _theme(setting_words)
    theme = "" if theme == "everyday" else theme
    details: list[str] = []
    for verb in _verbs(p):
        details += _VERB_PROPS.get(verb, ())
    for noun in _nouns(" ".join([p.obj, p.core, *p.roles])):
        details += _NOUN_PROPS.get(noun, ())
    if theme:
        details += _THEMES[theme]["details"]
    details += _NEUTRAL_DETAILS
    return Telling(premise=p, locations=_locations(p, idea), details=tuple(dict.fromkeys(details)), doing=doing,
                   does=does, theme=theme)


def plural_of(role: str) -> str:
    """'sister' -> 'sisters', 'child' -> 'children', 'witch' -> 'witches'."""
    words = role.split()
    irregular = {v: k for k, v in _IRREGULAR.items()}
    last = words[-1] if words else role
    if last in irregular:
        last = irregular[last]
    elif last.endswith("y") and len(last) > 2 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "es" if last.endswith(("s", "sh", "ch", "x")) else "s"
    return " ".join([*words[:-1], last])


def _together(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _roles(p: Premise, n: int) -> list[str]:
    """How the protagonists are introduced: 'a robot', 'one of the two sisters', ''."""
    if p.count >= 2 and len(set(p.roles)) == 1 and p.roles[0]:
        role = p.roles[0]
        plural = plural_of(role)
        number = {2: "two", 3: "three"}.get(p.count, str(p.count))
        kin = [f"one of the {number} {plural}", f"the other {role}"] if p.count == 2 else [
            f"the eldest of the {number} {plural}", f"the middle {role}", f"the youngest {role}"]
        return kin[:n]
    return [_article(r) if r else "" for r in p.roles][:n]


def write_story(idea: str, t: Telling, rng: random.Random) -> Story:
    p = t.premise
    n_p = min(3, p.count)
    n_chars = 3 if n_p >= 2 else rng.choice((2, 3))
    names = list(p.names[:n_p])
    names += rng.sample([n for n in _NAMES if n not in names], n_chars - len(names))
    cast_theme = _THEMES[t.theme or "everyday"]
    agent_words = set(" ".join(p.roles).split())
    others = [r for r in cast_theme["roles"] if not agent_words & set(r.split())]
    roles = _roles(p, n_p) + rng.sample(others, n_chars - n_p)
    looks = rng.sample(cast_theme["looks"], n_chars)
    for k, role in enumerate(p.roles[:n_p]):
        kind = (role.split() or [""])[-1]
        if kind in _NONHUMAN_LOOKS:
            looks[k] = rng.choice(_NONHUMAN_LOOKS[kind])
    characters = tuple(
        Character(name=n, description=_upper_first(f"{r} {lk}".strip()))
        for n, r, lk in zip(names, roles, looks)
    )
    lead = _together(names[:n_p])
    intro = _intro(p, roles[:n_p])
    (prep, home), *rest = t.locations
    where = without_object(p, f"{prep} {home}") if p.places else ""
    where = f" {where}" if where else ""
    want = _want(p, p.base)
    b = f"{names[n_p]}, {roles[n_p]}," if n_chars > n_p else ""
    who = ", ".join(x for x in (lead, f"{intro}{where}".strip()) if x)
    logline = f"{who}, {want}, but {b} doubts it can be done." if b else \
        f"{who}, {want}, and nothing will make it easy."
    at = _upper_first(" ".join(x for x in (without_object(p, f"{prep} {home}"), p.time) if x))
    paragraphs = [clean_idea(idea).rstrip(".!?") + ".",
                  f"{at + ', ' if at else ''}{lead}{', ' + intro if intro else ''}, {want}."
                  + (f" {names[n_p]}, {roles[n_p]}, doubts it can be done." if n_chars > n_p else "")]
    second, third = (rest + [(prep, home)] * 2)[:2]
    keep = "keep" if p.plural else "keeps"
    paragraphs.append(f"The first tries fail. Between {second[1]} and {third[1]}, {lead} {keep} {t.doing}.")
    if n_chars - n_p >= 2:
        paragraphs.append(f"{names[-1]}, {roles[-1]}, shows {lead} another way.")
    full = p.full.split()
    done = " ".join([third_person(full[0]) if not p.plural else full[0], *full[1:]])
    end_at = without_object(p, f"{prep} {home}")
    paragraphs.append(f"In the end, {lead} {_definite(done)}{' ' + end_at if end_at else ''}.")
    style = rng.choice(_THEMES[_theme(idea)]["styles"])
    return Story(title=title_of(idea), logline=logline, synopsis="\n\n".join(paragraphs),
                 characters=characters, style=style)


def _capital(place: str) -> str:
    """A place at the start of a setting: 'the streets of Tokyo' -> 'The streets of Tokyo';
    'nineteenth-century Prague' stays as the idea wrote it."""
    return _upper_first(place) if place.split(" ", 1)[0].lower() in ("the", "a", "an") else place


def without_object(p: Premise, loc: str) -> str:
    """A location without the action's own object: 'at the bakery in Lisbon' -> 'in Lisbon'
    (when the action is 'open the bakery')."""
    if p.obj:
        for prefix in (f"at {p.obj} ", f"at {p.obj}"):
            if loc.lower().startswith(prefix.lower()):
                return loc[len(prefix):].strip()
    return loc


def _definite(text: str) -> str:
    words = text.split()
    if len(words) > 1 and words[1].lower() in ("a", "an"):
        words[1] = "the"
    return " ".join(words)


def _intro(p: Premise, roles: list[str]) -> str:
    if p.count >= 2 and len(set(p.roles)) == 1 and p.roles[0]:
        number = {2: "two", 3: "three"}.get(p.count, str(p.count))
        return f"{number} {plural_of(p.roles[0])}"
    return " and ".join(r for r in roles if r)


def _want(p: Premise, action: str) -> str:
    if p.wish:
        return f"{p.wish_verb} {action}"
    return f"{'want' if p.plural else 'wants'} to {action}"


def build_scene_graph(story: Story, t: Telling, rng: random.Random, shots: int) -> SceneGraph:
    """Three to five scenes (fewer for fewer shots): the wish, tries, doubt, another way, done."""
    p = t.premise
    n_scenes = rng.randint(3, min(5, shots)) if shots >= 3 else shots
    middle = sorted(rng.sample(range(1, len(_ACTION_BEATS) - 1), max(0, n_scenes - 2)))
    beats = [0, *middle, len(_ACTION_BEATS) - 1][:n_scenes] if n_scenes > 1 else [0]
    names = [c.name for c in story.characters] or ["Someone"]
    n_p = max(1, min(3, p.count, len(names)))
    lead = _together(names[:n_p])
    other = names[n_p] if len(names) > n_p else "a stranger"
    forms = {verb: verb if p.plural else third_person(verb) for verb in ("try", "fail", "give", "find")}
    pool = list(t.locations[1:]) or [t.locations[0]]
    scenes = []
    for order, beat in enumerate(beats, start=1):
        last = order == len(beats) and len(beats) >= 3
        prep, place = t.locations[0] if order == 1 or last else pool[(order - 2) % len(pool)]
        label, template = _ACTION_BEATS[beat]
        values = dict(a=lead, b=other, B=_upper_first(other), act=p.core, want=_want(p, p.core), does=t.does,
                      tries=forms["try"], fails=forms["fail"], gives=forms["give"], finds=forms["find"])
        sentence = ""
        here = without_object(p, f"{prep} {place}")
        for at in (" ".join(x for x in (here, p.time) if x), here, ""):
            sentence = _upper_first(template.format(At=_upper_first(at), **values)).replace(", ,", ",")
            if not at:
                sentence = re.sub(r"^, ", "", sentence)
                sentence = _upper_first(sentence)
            if len(sentence.split(";")[0].split()) <= 18:
                break
        present = tuple(n for n in names if re.search(rf"\b{re.escape(n)}\b", sentence)) or (names[0],)
        setting = _capital(place) + (f", {p.time}" if p.time else "")
        scenes.append(Scene(id=f"s{order}", order=order, summary=f"{_upper_first(label)}. {sentence}",
                            setting=setting, characters=present))
    for name in names:  # everyone in the story is in some scene
        if not any(name in sc.characters for sc in scenes):
            k = len(scenes) // 2 if len(scenes) > 2 else len(scenes) - 1
            scenes[k] = attrs.evolve(scenes[k], characters=(*scenes[k].characters, name))
    return SceneGraph(scenes=tuple(scenes))
