"""Reading the idea for the offline planner: what it is about, who it follows, how many,
where it happens, its theme and arc; plus the small text helpers the templates share and
the seed a text gives."""

from __future__ import annotations

import hashlib
import random
import re

import attrs

from reelforge.plugins.story_llm.offline_words import (
    _ARTICLE,
    _COUNTS,
    _IRREGULAR,
    _LEADING,
    _NEUTRAL_DETAILS,
    _PLACE_NOUNS,
    _PLAIN_PLACES,
    _PREPOSITIONS,
    _SMALL_WORDS,
    _THEMES,
    _VERB_FOLLOWERS,
    singular,
)
from reelforge.records import Story


def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _subject(idea: str) -> str:
    """What the idea is about, e.g. 'an ancient trading city' -> 'the ancient trading city'."""
    core = _LEADING.sub("", idea.strip().rstrip(".!?")).strip() or idea.strip() or "an untold story"
    # An idea of odd words ('In Tokyo', 'Mira, a baker,'): no leading preposition, no stray commas.
    core, named = re.subn(r"^(?:in|on|at|of|to|from|with)\s+(?=\S)", "", " ".join(core.replace(",", " ").split()),
                          flags=re.IGNORECASE)
    if named and core[:1].isupper():
        return core  # 'In Tokyo' -> 'Tokyo'
    words = core.split()
    # A sentence idea ("a keeper finds a message in a bottle") has a verb: take its object
    # when that is a noun phrase, else the phrase before the verb, so templates stay grammatical.
    for i in range(1, len(words) - 1):
        w, nxt = words[i].lower(), words[i + 1].lower()
        verbish = (w.endswith(("s", "ed")) and not w.endswith("ss") and nxt in _VERB_FOLLOWERS) or (
            nxt in ("a", "an", "the") and w not in _PREPOSITIONS)
        if verbish:
            after = " ".join(words[i + 2:]) if nxt in ("a", "an", "the") else ""
            core = after if after else " ".join(words[:i])
            break
    core = _ARTICLE.sub("", core)
    return "the " + core[0].lower() + core[1:] if core else "the story"


@attrs.frozen
class _Idea:
    """What the offline planner keeps from the idea itself."""

    subject: str
    agent: str = ""
    "The idea's own protagonist, e.g. 'lighthouse keeper' (empty when it names none)."
    count: int = 1
    "How many of them ('Two sisters ...' -> 2)."
    places: tuple[str, ...] = ()
    "The places the idea names, home first: 'the lighthouse', 'Lisbon'."




def _verb_index(words: list[str]) -> int | None:
    for i in range(1, len(words) - 1):
        w, nxt = words[i].lower(), words[i + 1].lower()
        if (w.endswith(("s", "ed")) and not w.endswith("ss") and nxt in _VERB_FOLLOWERS) or (
                nxt in ("a", "an", "the") and w not in _PREPOSITIONS):
            return i
    return None


def _places(words: list[str], skip_last: bool) -> list[str]:
    """Place phrases in ``words``: a place noun with its adjectives ('the ancient trading
    city'), a place noun that qualifies another ('lighthouse' keeper -> 'the lighthouse'),
    and a capitalised name after in/on/at ('Lisbon')."""
    found: list[str] = []
    for k, word in enumerate(words):
        low = re.sub(r"[^\w'-]", "", word.lower())
        if (low in _PLACE_NOUNS or singular(low) in _PLACE_NOUNS) and low not in ("moon", "mars") \
                and not (skip_last and k == len(words) - 1):
            start = k
            while start > 0 and words[start - 1].lower() not in _PREPOSITIONS | {"a", "an", "the", "my", "his", "her", "their"} \
                    and words[start - 1].lower() not in _COUNTS and k - start < 3:
                start -= 1
            if k + 1 < len(words) and words[k + 1].lower() not in _PREPOSITIONS | _SMALL_WORDS:
                start = k  # 'lighthouse keeper': the noun alone is the place
            phrase = " ".join(w.lower() for w in words[start:k + 1])
            found.append("the " + re.sub(r"[^\w' -]", "", phrase))
        elif k > 0 and words[k - 1].lower() in ("in", "on", "at", "from", "to", "of") and word[:1].isupper():
            found.append(re.sub(r"[^\w' -]", "", word))
    unique: list[str] = []
    for place in found:
        if place not in unique:
            unique.append(place)
    return unique


def _read_idea(idea: str) -> _Idea:
    """The idea's protagonist, how many, its places, and its subject."""
    subject = _subject(idea)
    core = _LEADING.sub("", idea.strip().rstrip(".!?")).strip()
    words = core.split()
    agent, count = "", 1
    i = _verb_index(words)
    if i is not None:
        head = [w for w in words[:i] if w.lower() not in ("a", "an", "the")]
        if head and head[0].lower() in _COUNTS:
            count = _COUNTS[head[0].lower()]
            head = head[1:]
        if head:
            if count > 1 or head[-1].lower().endswith("s") and head[-1].lower() in _IRREGULAR:
                head[-1] = singular(head[-1])
            agent = " ".join(w.lower() for w in head)
        rest = words[i + 1:]
        if agent and subject.lower() == "the " + _ARTICLE.sub("", " ".join(words[:i])).lower() and rest:
            # "a robot learns to paint on Mars": the idea's subject is the robot itself, so
            # what it holds on to is what it wants.
            if rest[0].lower() == "to":
                subject = "the wish " + " ".join(rest)
            elif rest[0].lower() in ("his", "her", "their", "its", "my", "our") and len(rest) > 1:
                subject = "the " + rest[1]
    return _Idea(subject=subject, agent=agent, count=count, places=tuple(_places(words, skip_last=False)))


def _article(role: str) -> str:
    return ("an " if role[:1].lower() in "aeiou" else "a ") + role


def _story_subject(story: Story) -> str:
    """The subject write_story put in the logline (keeps the idea's own capitals); for a
    story written elsewhere, derive it from the title."""
    found = re.search(r"must hold on to (.+?) while ", story.logline)
    return found.group(1) if found else _subject(story.title.lower())


def _title_case(text: str) -> str:
    words = text.split()
    return " ".join(
        w if (i and w.lower() in _SMALL_WORDS) else w[:1].upper() + w[1:]
        for i, w in enumerate(words)
    )


def _setting(idea: str) -> dict[str, tuple[str, ...]]:
    """The theme whose places and details a subject idea's film draws from. An idea no theme
    fits ('cats', 'In Tokyo') gets no stock setting: its own places and parts of them, or
    plain places, and details any place can show."""
    name = _theme(idea)
    if name != "everyday":
        return _THEMES[name]
    own = _places(_LEADING.sub("", idea.strip()).split(), skip_last=False)
    places = [*own, *(f"the {part} of {own[0]}" for part in ("heart", "edge"))] if own else []
    places += [p for p in _PLAIN_PLACES if p not in places]
    return {**_THEMES[name], "places": tuple(places), "details": _NEUTRAL_DETAILS}


def _theme(idea: str) -> str:
    words = set(re.findall(r"[a-z]+", idea.lower()))
    best, best_hits = "everyday", 0
    for name, theme in _THEMES.items():
        hits = len(words.intersection(theme["keywords"]))
        if hits > best_hits:
            best, best_hits = name, hits
    return best


def _arc(idea: str, rng: random.Random) -> str:
    low = idea.lower()
    if "rise" in low or "fall" in low or "empire" in low or "collapse" in low:
        return "rise_and_fall"
    if any(w in low for w in ("journey", "voyage", "quest", "road", "search", "return")):
        return "journey"
    return rng.choice(("journey", "classic"))


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_place(place: str) -> str:
    """A scene's place inside a sentence: 'The lighthouse gallery' -> 'the lighthouse
    gallery', names kept ('Lisbon')."""
    return place[:1].lower() + place[1:] if place[:4].lower() in ("the ", "a ", "an ") or \
        place.split(" ", 1)[0].lower() in ("the", "a", "an") else place
