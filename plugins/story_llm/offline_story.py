"""The offline planner's story and scene graph: a story cast and set from the idea and its
theme, and scenes along a story arc, at home where the story is set."""

from __future__ import annotations

import random
import re

import attrs

from reelforge.plugins.story_llm import offline_action
from reelforge.plugins.story_llm.offline_action import clean_idea, idea_of, telling, title_of
from reelforge.plugins.story_llm.offline_idea import (
    _arc,
    _article,
    _read_idea,
    _setting,
    _story_subject,
    _theme,
    _upper_first,
)
from reelforge.plugins.story_llm.offline_words import _ARCS, _NAMES, _THEMES
from reelforge.records import Character, Scene, SceneGraph, Story


def write_story(idea: str, rng: random.Random) -> Story:
    """The story of ``idea``: title, logline, synopsis, two or three characters and a style.
    A sentence idea ('A robot learns to paint in Tokyo') is told as its subject doing its
    action; an idea that is a subject ('The rise and fall of ...') as a story about it."""
    told = telling(idea)
    if told is not None:
        return offline_action.write_story(idea, told, rng)
    idea = clean_idea(idea)
    theme = _setting(idea)
    parsed = _read_idea(idea)
    subject = parsed.subject
    n_chars = min(3, max(rng.choice((2, 3)), parsed.count))
    names = rng.sample(_NAMES, n_chars)
    # The idea's own protagonist leads; the theme casts the others (never the same role twice).
    others = [r for r in theme["roles"] if not parsed.agent or parsed.agent not in r]
    roles = rng.sample(others, n_chars)
    if parsed.agent and parsed.count >= 2:
        plural = parsed.agent + ("es" if parsed.agent.endswith(("s", "sh", "ch", "x")) else "s")
        number = {2: "two", 3: "three"}.get(parsed.count, str(parsed.count))
        kin = [f"one of the {number} {plural}", f"the other {parsed.agent}"] if parsed.count == 2 else [
            f"the eldest of the {number} {plural}", f"the middle {parsed.agent}", f"the youngest {parsed.agent}"]
        roles[:len(kin)] = kin[:n_chars]
    elif parsed.agent:
        roles[0] = _article(parsed.agent)
    looks = rng.sample(theme["looks"], n_chars)
    characters = tuple(
        Character(name=n, description=f"{_upper_first(r)} {l}")
        for n, r, l in zip(names, roles, looks)
    )
    # The idea's places come first: the film is set where the idea says.
    places = list(parsed.places[:2])
    places += [p for p in rng.sample(theme["places"], 3) if p not in places][:3 - len(places)]
    details = rng.sample(theme["details"], 2)
    a, b = characters[0], characters[1]
    title = title_of(idea)
    logline = (
        f"{a.name}, {roles[0]}, must hold on to {subject} while {b.name}, "
        f"{roles[1]}, is ready to let it go."
    )
    paragraphs = [
        f"{_upper_first(subject)} is first seen from far away: {places[0]}, {details[0]}, "
        f"and {a.name}, {roles[0]}, who believes it will last forever.",
        f"{b.name}, {roles[1]}, knows better. Between {places[1]} and {places[2]} "
        f"the two of them watch {subject} change, and {details[1]} becomes the sign "
        f"of what is coming.",
    ]
    if n_chars == 3:
        c = characters[2]
        paragraphs.append(
            f"{c.name}, {roles[2]}, stands between them and decides, at the last moment, "
            f"which of them is right."
        )
    paragraphs.append(
        f"In the end only images remain: {places[0]} in changing light, and {a.name} "
        f"looking back at {subject} one last time."
    )
    style = rng.choice(_THEMES[_theme(idea)]["styles"])
    return Story(title=title, logline=logline, synopsis="\n\n".join(paragraphs),
                 characters=characters, style=style)


def build_scene_graph(story: Story, rng: random.Random, shots: int) -> SceneGraph:
    """Three to five scenes (fewer for fewer shots) along the arc the title picks."""
    told = telling(idea_of(story))
    if told is not None:
        return offline_action.build_scene_graph(story, told, rng, shots)
    idea = story.title
    theme = _setting(idea.lower())
    arc = _ARCS[_arc(idea, rng)]
    subject = _story_subject(story)
    n_scenes = rng.randint(3, min(5, shots)) if shots >= 3 else shots
    # Always keep the first and last beat; pick the middle ones in order.
    middle = sorted(rng.sample(range(1, len(arc) - 1), max(0, n_scenes - 2)))
    beats = [0, *middle, len(arc) - 1][:n_scenes] if n_scenes > 1 else [0]
    names = [c.name for c in story.characters] or ["A stranger", "a friend"]
    # Home: where write_story set the film (else the places the title names); the first
    # and last scenes happen there, the others around it.
    home = re.search(r"first seen from far away: (.+?), ", story.synopsis)
    between = re.search(r"Between (.+?) and (.+?) the two of them", story.synopsis)
    if home:
        own = [home.group(1), *(between.groups() if between else ())]
    else:  # a story written elsewhere: the place nouns of its title (no names: title case)
        own = list(_read_idea(story.title.lower()).places)
    own = list(dict.fromkeys(own))
    pool = own[1:] + [p for p in rng.sample(theme["places"], len(theme["places"])) if p not in own]
    places = []
    for k in range(len(beats)):
        if own and (k == 0 or (k == len(beats) - 1 and len(beats) >= 3)):
            places.append(own[0])
        else:
            places.append(pool.pop(0) if pool else rng.choice(theme["places"]))
    scenes = []
    for order, (beat, place) in enumerate(zip(beats, places), start=1):
        label, template = arc[beat]
        a = names[0] if beat % 2 == 0 or len(names) < 2 else names[1]
        b = names[1] if a == names[0] and len(names) > 1 else names[0]
        summary = _upper_first(template.format(subject=subject, a=a, b=b, place=place))
        present = tuple(n for n in names if n in summary) or (names[0],)
        scenes.append(Scene(id=f"s{order}", order=order,
                            summary=f"{_upper_first(label)}. {summary}",
                            setting=f"{_upper_first(place)}, {subject}", characters=present))
    # Everyone in the story is in some scene: the missing join the middle scenes.
    for name in names:
        if len(story.characters) and not any(name in sc.characters for sc in scenes):
            k = len(scenes) // 2 if len(scenes) > 2 else len(scenes) - 1
            scenes[k] = attrs.evolve(scenes[k], characters=(*scenes[k].characters, name))
    return SceneGraph(scenes=tuple(scenes))
