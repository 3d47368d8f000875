"""Reading a sentence idea for the offline planner: who does what, where and when.

"Mira, a young baker, opens a bakery in Lisbon at dawn" -> the protagonist (name Mira,
role 'young baker'), the action ('opens a bakery'), the place ('Lisbon') and the time
('at dawn'). An idea with no verb ("The rise and fall of an ancient trading city") has no
premise: the planner tells it as a subject instead. Plain word rules, no model: the same
idea always reads the same way, and no input makes it fail (odd input reads as no premise).
"""

from __future__ import annotations

import re

import attrs

from reelforge.plugins.story_llm.offline_words import (
    _COMMON_VERBS,
    _COUNTS,
    _IRREGULAR,
    _PLACE_NOUNS,
    _TIME_WORDS,
    _VERB_FOLLOWERS,
    _WISH_VERBS,
    singular,
)

#: Words that open a place or time phrase ("in Tokyo", "at dawn", "off the coast of Norway").
_PLACE_PREPS = {"in", "on", "at", "near", "off", "inside", "outside", "under", "beneath", "above", "across",
                "beyond", "during", "before", "after", "around", "throughout", "among", "within", "aboard"}
_TIME_PREPS = {"during", "before", "after", "throughout"}
#: Words that end a noun phrase.
_STOPS = _PLACE_PREPS | {"and", "or", "but", "who", "that", "which", "where", "while", "when", "to", "because",
                         "as", "so", "until", "for", "with", "from", "into", "by", "like", "if", "than"}
_DETERMINERS = {"a", "an", "the", "his", "her", "their", "its", "my", "our", "your", "this", "that", "some"}
#: Where the short form of an action ends ("builds a clock | to win back his daughter").
_CUTS = {"to", "for", "so", "because", "while", "and", "but", "who", "that", "which", "when", "after", "before",
         "until", "as", "if", "although", "though", "since", "where"}
_NOT_VERBS = {"this", "his", "its", "us", "yes", "news", "always", "perhaps", "whereas",
              "across", "towards", "as", "thus", "less", "unless", "various", "famous", "nervous", "anxious",
              "curious", "jealous", "generous", "previous", "serious", "dangerous", "mysterious", "enormous"}
_LEAD_IN = re.compile(r"^(?:(?:a|an|the)\s+)?(?:(?:short\s+)?(?:film|story|tale|movie|legend)\s+"
                      r"(?:about|of|in\s+which)\s+)", re.IGNORECASE)
#: Ideas that are a noun phrase about something ("The rise and fall of ...") unless a clause follows.
_NOUN_IDEA = re.compile(r"^(?:the\s+)?(?:rise|fall|birth|death|end|last\s+days|secret|history|memories|"
                        r"life|lives|ghosts?|ruins|return|journey)\b[^,]*?\bof\b", re.IGNORECASE)
_RELATIVE = re.compile(r"\b(?:who|that)\s+", re.IGNORECASE)
_MAX_WORDS = 40


@attrs.frozen
class Premise:
    """What a sentence idea says: who, does what, where and when."""

    names: tuple[str, ...]
    "Names the idea gives its protagonists ('Mira'), else empty."
    roles: tuple[str, ...]
    "What each protagonist is, singular, lower case: ('lighthouse keeper',) or ('sister', 'sister')."
    count: int
    "How many protagonists: 1, or 2-3 for a plural subject."
    plural: bool
    verb: str
    "The idea's verb as written ('learns', 'open')."
    base: str
    "The action in the base form: 'learn to paint', 'befriend a storm'."
    core: str
    "The action's base form, short and with its object made definite: 'befriend the storm'."
    full: str
    "The whole action in the base form, up to 20 words: 'build a mechanical bird to win back his daughter'."
    wish: bool
    "The idea's verb is itself a wish ('wants to fly'): the action is what follows."
    wish_verb: str = ""
    places: tuple[tuple[str, str], ...] = ()
    "The places the idea names, home first, each (preposition, noun phrase): ('in', 'Tokyo')."
    time: str = ""
    "The time the idea names, with its preposition: 'at dawn', 'in 1920' ('' for none)."
    obj: str = ""
    "The action's object, definite ('the storm'), when it is a noun phrase."


def _words(idea: str) -> list[str]:
    text = re.split(r"(?<=[.!?;])\s+", " ".join(idea.split()), maxsplit=1)[0]
    text, lead = _LEAD_IN.subn("", text.strip())
    if lead:  # 'A story about a girl who learns to fly' -> 'a girl learns to fly'
        text = _RELATIVE.sub("", text, count=1)
    return re.findall(r"[^\W_][\w'’-]*|,", text)[:_MAX_WORDS]




def base_of(verb: str) -> str:
    """The base form of a third-person verb: 'learns' -> 'learn', 'flies' -> 'fly', 'goes' -> 'go'."""
    low = verb.lower()
    special = {"has": "have", "is": "be", "does": "do", "goes": "go", "was": "be", "had": "have", "did": "do",
               "went": "go", "made": "make", "found": "find", "took": "take", "built": "build", "fell": "fall"}
    if low in special:
        return special[low]
    if low.endswith("ies") and len(low) > 4:
        return low[:-3] + "y"
    if low.endswith(("ches", "shes", "sses", "xes", "zzes", "oes")):
        return low[:-2]
    if low.endswith("s") and not low.endswith(("ss", "us", "is")):
        return low[:-1]
    if low.endswith("ed") and len(low) > 4:
        stem = low[:-2]
        if stem.endswith("i"):
            return stem[:-1] + "y"
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
            return stem[:-1]
        return stem + "e" if stem[-1] in "vcgzu" or stem.endswith(("at", "it", "ur", "as")) else stem
    return low


def third_person(base: str) -> str:
    """'learn' -> 'learns', 'fly' -> 'flies', 'watch' -> 'watches', 'be' -> 'is'."""
    special = {"be": "is", "have": "has", "do": "does", "go": "goes"}
    if base in special:
        return special[base]
    if base.endswith("y") and len(base) > 2 and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    return base + "s"


def gerund(base: str) -> str:
    """'paint' -> 'painting', 'make' -> 'making', 'swim' -> 'swimming', 'die' -> 'dying'."""
    if base in ("be", "see", "flee", "agree"):
        return base + "ing"
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")) and len(base) > 2:
        return base[:-1] + "ing"
    vowels = [c for c in base if c in "aeiou"]
    if len(base) >= 3 and len(vowels) == 1 and base[-1] not in "aeiouwxy" and base[-2] in "aeiou" \
            and base[-3] not in "aeiou":
        return base + base[-1] + "ing"
    return base + "ing"


def _is_verb(words: list[str], i: int, plural_hint: bool) -> bool:
    w = words[i].lower()
    if w == "," or (i > 0 and words[i][:1].isupper()) or w in _NOT_VERBS or w in _DETERMINERS or w in _STOPS - {"that"}:
        return False
    nxt = words[i + 1].lower() if i + 1 < len(words) else ""
    if nxt == "of" and base_of(w) not in ("dream", "think", "speak", "hear", "learn", "know", "tire"):
        return False
    if base_of(w) in _COMMON_VERBS and (w != base_of(w) or plural_hint):
        return True
    if w in _COMMON_VERBS and plural_hint:
        return True
    third = w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3
    if third and (nxt in _VERB_FOLLOWERS or not nxt):
        return True
    return nxt in ("a", "an", "the") and w not in _STOPS and (plural_hint or third)


def _phrase(words: list[str], i: int) -> tuple[int, str, str] | None:
    """A place or time phrase opened by words[i]: (end index, kind, text without the preposition)."""
    prep = words[i].lower()
    j, head, kind = i + 1, -1, ""
    while j < len(words) and j - i <= 7:
        w, low = words[j], words[j].lower()
        if low == "," or (low in _STOPS and low != "of") or (low == "of" and head < 0):
            break
        if j > i + 1 and head >= 0 and low != "of" and not (w[:1].isupper() or singular(low) in _PLACE_NOUNS):
            break  # the phrase ended at its head ('in Prague | builds ...')
        if _is_verb(words, j, False) and head >= 0:
            break
        parts = set(re.split(r"[-']", low))
        if parts & _TIME_WORDS or re.fullmatch(r"\d{2,4}s?", low):
            head, kind = j, kind or "time"
        if (w[:1].isupper() and low not in _DETERMINERS) or singular(low) in _PLACE_NOUNS:
            head, kind = j, "place"
        j += 1
    if head < 0:
        return None
    text = " ".join(words[i + 1:head + 1])
    if prep in _TIME_PREPS:
        kind = "time"
    return head + 1, kind, text


def _lift(words: list[str]) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Take the place and time phrases out of ``words``: (the rest, places, times)."""
    rest: list[str] = []
    places: list[tuple[str, str]] = []
    times: list[str] = []
    i = 0
    while i < len(words):
        found = _phrase(words, i) if i > 0 and words[i].lower() in _PLACE_PREPS else None
        if found:
            end, kind, text = found
            if kind == "place":
                places.append((words[i].lower(), text))
            else:
                times.append(f"{words[i].lower()} {text}")
            i = end
            continue
        rest.append(words[i])
        i += 1
    while rest and rest[-1] == ",":
        rest.pop()
    return rest, places, times


def _cut(words: list[str], limit: int) -> list[str]:
    """The action up to where its first clause ends, at most ``limit`` words."""
    out: list[str] = []
    for k, w in enumerate(words):
        if w == "," or (k > 1 and w.lower() in _CUTS and not (w.lower() == "to" and len(out) < 4)) \
                or len(out) >= limit:
            break
        out.append(w)
    while len(out) > 1 and out[-1].lower() in _DETERMINERS | _STOPS | {"of"}:
        out.pop()
    return out


def _definite(words: list[str]) -> list[str]:
    """The object made definite: 'befriend a storm' -> 'befriend the storm'."""
    out = list(words)
    for k in (1, 2):
        if k < len(out) and out[k].lower() in ("a", "an"):
            out[k] = "the"
            break
    return out


def read_premise(idea: str) -> Premise | None:
    """Who does what, where and when in ``idea``; None when it has no verb to read."""
    if _NOUN_IDEA.match(" ".join(idea.split())) and not _RELATIVE.search(idea):
        return None
    words = _words(idea)
    if len(words) < 2:
        return None
    rest, places, times = _lift(words)
    names: list[str] = []
    subject: list[str] = []
    action: list[str] = []
    # "Mira, a young baker, opens a bakery": a name, then what she is.
    if len(rest) >= 5 and rest[0][:1].isupper() and rest[1] == "," and rest[2].lower() in ("a", "an", "the") \
            and "," in rest[3:]:
        close = rest.index(",", 3)
        names, subject, action = [rest[0]], rest[3:close], rest[close + 1:]
    else:
        low0 = rest[0].lower()
        plural_hint = low0 in _COUNTS or any(w.lower() == "and" for w in rest[:4])
        for i in range(1, len(rest)):
            ahead = rest[i - 1].lower()
            hint = plural_hint or ahead in _IRREGULAR or (
                ahead.endswith("s") and ahead not in _DETERMINERS and singular(ahead) != ahead)
            if _is_verb(rest, i, hint):
                subject, action = rest[:i], rest[i:]
                break
    if not names and "," in subject:  # 'A keeper, lonely and old, befriends ...': the words before the comma
        subject = subject[:subject.index(",")]
    subject = [w for w in subject if w != ","]
    if not subject or not action or action[0] == ",":
        return None
    # Who: names ('Mira', 'Mira and Tarek'), a count ('Two sisters'), or a pair ('a king and his daughter').
    count, roles = 1, []
    groups = [g for g in " ".join(subject).split(" and ") if g.strip()]
    if len(groups) >= 2 and not names:
        for group in groups[:3]:
            ws = group.split()
            if len(ws) == 1 and ws[0][:1].isupper() and ws[0].lower() not in _DETERMINERS:
                names.append(ws[0])
                roles.append("")
            else:
                roles.append(" ".join(w.lower() for w in ws if w.lower() not in _DETERMINERS))
        count = len(roles)
    else:
        ws = [w for w in subject if w.lower() not in _DETERMINERS]
        if ws and ws[0].lower() in _COUNTS:
            count = _COUNTS[ws[0].lower()]
            ws = ws[1:]
        elif ws and ((ws[-1][:1].islower() or len(subject) > 1) and ws[-1].lower() != singular(ws[-1]).lower()
                     or ws[-1].lower() in _IRREGULAR):
            count = 2  # 'sisters open a bakery'
        if len(subject) == 1 and subject[0][:1].isupper() and not names and count == 1:
            if singular(subject[0]).lower() != subject[0].lower() and base_of(action[0]) == action[0].lower():
                count = 2  # 'Cats rule the world'
            else:
                names, ws = [subject[0]], []
        if count > 1 and ws:
            ws[-1] = singular(ws[-1])
        role = " ".join(w.lower() for w in ws)
        roles = [role] * count
    plural = count > 1
    verb = action[0]
    wish = base_of(verb) in _WISH_VERBS and len(action) > 2 and action[1].lower() == "to"
    body = action[2:] if wish else action[1:]
    head = base_of(body[0]) if wish else base_of(verb)
    if wish:
        body = body[1:]
    base_words = [head, *body]
    core = _definite(_cut(base_words, 7))
    full = [head, *body]
    full = full[:full.index(",")] if "," in full else full
    full = _cut(full, 20) if len(full) > 20 else full
    obj_words = core[1:] if len(core) > 1 and core[1].lower() == "the" else []
    return Premise(
        names=tuple(names), roles=tuple(roles), count=count, plural=plural, verb=verb,
        base=" ".join(full), core=" ".join(core), full=" ".join(full), wish=wish,
        wish_verb=" ".join(action[:2]) if wish else "",
        places=tuple(dict.fromkeys(places)), time=times[0] if times else "",
        obj=" ".join(obj_words[:5]),
    )
