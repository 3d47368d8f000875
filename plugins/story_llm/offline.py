"""The ``offline`` story writer: a deterministic template planner, not an LLM.

It fills hand-written templates with words drawn from the idea and a random generator
seeded by a hash of the idea, so it needs no server or network and the same idea always
gives the same story, scenes and shots.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import ClassVar

import attrs

from reelforge import hookimpl
from reelforge.records import Character, Scene, SceneGraph, Shot, ShotPlan, Story

# -- vocabulary ----------------------------------------------------------------------

#: Phrases stripped from the front of an idea to find what it is about.
_LEADING = re.compile(
    r"^(?:(?:a|an|the)\s+)?(?:(?:short\s+)?(?:film|story|tale|movie)\s+(?:about|of)\s+)?"
    r"(?:(?:the\s+)?(?:rise\s+and\s+fall|rise|fall|story|tale|legend|birth|death|end|"
    r"journey|return|last\s+days|secret)\s+of\s+)?",
    re.IGNORECASE,
)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_VERB_FOLLOWERS = {"a", "an", "the", "to", "his", "her", "their", "its", "my", "our", "that",
                   "how", "on", "in", "into", "with", "from", "for", "out", "up", "back"}
_PREPOSITIONS = {"of", "in", "on", "at", "for", "from", "with", "into", "to", "by", "and",
                 "or", "under", "over", "beyond", "after", "before", "like", "across", "through"}
_SMALL_WORDS = {"a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "with"}

#: Themes: keywords that select them, and the words templates draw from.
_THEMES: dict[str, dict[str, tuple[str, ...]]] = {
    "ancient": {
        "keywords": ("ancient", "city", "trade", "trading", "empire", "kingdom", "temple",
                     "pharaoh", "rome", "roman", "merchant", "market", "caravan", "king",
                     "queen", "medieval", "castle", "bronze", "desert", "silk"),
        "roles": ("a spice merchant", "a young harbour scribe", "an ageing queen",
                  "a caravan master", "a temple astronomer", "a mercenary captain",
                  "a glassblower's apprentice"),
        "looks": ("in an indigo robe with a brass-buckled satchel",
                  "with ink-stained fingers and a linen tunic",
                  "wearing a heavy gold collar and a faded crimson mantle",
                  "with a sun-darkened face and a dusty striped headwrap",
                  "in a patched leather cuirass, a scar across one cheek",
                  "with braided hair threaded with copper beads"),
        "places": ("the harbour quays", "the great market square", "the palace terraces",
                   "the caravan gate", "the temple steps", "the salt warehouses",
                   "the city walls at dusk", "the ruined colonnade"),
        "details": ("bolts of dyed silk", "stacked amphorae", "a bronze weighing scale",
                    "a cracked clay tablet", "sails crowding the harbour", "a column of camels",
                    "oil lamps in a narrow alley", "a toppled statue"),
        "styles": ("sun-bleached ochre and lapis palette, 35mm anamorphic, long golden-hour shadows, "
                   "drifting dust in the light, painterly epic realism",
                   "warm terracotta and teal palette, wide-angle lens, hazy desert light, "
                   "matte-painting grandeur, fine film grain",
                   "amber and deep indigo palette, low-angle compositions, oil-lamp glow, "
                   "classical history painting feel"),
    },
    "future": {
        "keywords": ("space", "star", "planet", "robot", "future", "android", "ai", "cyber",
                     "galaxy", "alien", "station", "mars", "moon", "ship", "orbit"),
        "roles": ("a station engineer", "a salvage pilot", "a maintenance android",
                  "a colony doctor", "a signal analyst", "a disgraced captain"),
        "looks": ("in a scuffed orange pressure suit", "with a cracked visor and a shaved head",
                  "with a pale ceramic face and one flickering eye",
                  "in a grey jumpsuit covered in mission patches",
                  "with cropped silver hair and a neural port behind one ear"),
        "places": ("the observation deck", "the docking ring", "the hydroponics bay",
                   "the control room", "the planet's frozen surface", "the dark corridor"),
        "details": ("blinking status lights", "a frosted viewport", "a drifting toolkit",
                    "a flickering hologram", "a dead console", "a distant blue planet"),
        "styles": ("cold cyan and sodium-orange palette, 40mm lens, volumetric haze, "
                   "practical lights, hard science-fiction realism",
                   "muted steel and emergency-red palette, wide lens, deep shadows, "
                   "retro-futurist production design, subtle film grain"),
    },
    "sea": {
        "keywords": ("sea", "ocean", "island", "boat", "sailor", "fisher", "fishing", "storm",
                     "lighthouse", "whale", "harbour", "harbor", "pirate", "coast", "river"),
        "roles": ("a lighthouse keeper", "a young fisher", "a retired sea captain",
                  "a cartographer", "a smuggler", "a net mender"),
        "looks": ("in a salt-stained oilskin coat", "with wind-knotted red hair and bare feet",
                  "with a white beard and a brass telescope",
                  "in a knitted blue sweater with rolled sleeves",
                  "with tattooed forearms and a gold earring"),
        "places": ("the lighthouse gallery", "the storm-lashed pier", "the fishing village",
                   "the open sea", "the sea cave", "the shingle beach at dawn"),
        "details": ("a swinging lantern", "coiled wet rope", "gulls over the swell",
                    "a half-sunk hull", "a bottle with a rolled map", "foam on black rocks"),
        "styles": ("slate grey and sea-green palette, 50mm lens, overcast soft light, "
                   "spray and mist, naturalistic seafaring drama",
                   "deep navy and lantern-gold palette, wide lens, storm light, "
                   "romantic maritime painting feel"),
    },
    "nature": {
        "keywords": ("forest", "mountain", "wolf", "bear", "bird", "tree", "garden", "river",
                     "snow", "winter", "spring", "animal", "wild", "valley", "fox"),
        "roles": ("a forest ranger", "a lone wolf", "a botanist", "a mountain guide",
                  "a child who talks to birds", "an old beekeeper"),
        "looks": ("in a moss-green parka with a worn map case", "with grey fur frosted white",
                  "with round spectacles and a canvas field bag",
                  "in a red wool hat and cracked climbing boots",
                  "with a straw hat and a veil pushed back"),
        "places": ("the old-growth forest", "the mountain pass", "the frozen lake",
                   "the valley meadow", "the ranger's cabin", "the ridge at first light"),
        "details": ("breath steaming in cold air", "pawprints in fresh snow", "a circling hawk",
                    "sunbeams through pine needles", "a swollen river", "wildflowers in wind"),
        "styles": ("deep pine green and frost white palette, telephoto lens, soft morning mist, "
                   "nature documentary realism",
                   "golden meadow and slate-blue palette, wide lens, backlit dawn light, "
                   "lyrical naturalism"),
    },
    "everyday": {
        "keywords": (),
        "roles": ("a night-shift nurse", "a retired teacher", "a street musician",
                  "a teenage inventor", "a baker", "a bus driver", "a widowed architect"),
        "looks": ("in a faded denim jacket with a canvas tote",
                  "with grey curls and reading glasses on a cord",
                  "in a yellow raincoat with headphones around the neck",
                  "with flour on the sleeves of a checked shirt",
                  "in a crisp navy uniform and scuffed shoes"),
        "places": ("a rain-wet street corner", "a small kitchen at dawn", "a crowded bus",
                   "a rooftop at sunset", "an empty workshop", "a city park in autumn"),
        "details": ("steam rising from a mug", "neon reflected in puddles",
                    "a handwritten note", "keys on a hook", "a flickering streetlight",
                    "leaves blowing across asphalt"),
        "styles": ("warm tungsten and cool blue palette, 35mm lens, shallow depth of field, "
                   "soft naturalistic light, intimate indie drama",
                   "muted pastel palette, 50mm lens, diffused window light, "
                   "gentle film grain, quiet observational style"),
    },
}

#: Story arcs: the beats scenes are built from, with a summary template per beat.
_ARCS: dict[str, tuple[tuple[str, str], ...]] = {
    "rise_and_fall": (
        ("origin", "{subject} begins as little more than a hope; {a} arrives at {place}."),
        ("rise", "Fortune turns: {subject} grows rich and loud, and {a} rises with it."),
        ("height", "At its height {subject} glitters, but {b} sees the first cracks."),
        ("fracture", "Greed and pride split {subject} apart; {a} and {b} choose opposite sides."),
        ("fall", "{subject} falls; {a} walks through what is left at {place}."),
    ),
    "journey": (
        ("departure", "{a} leaves {place}, carrying a promise about {subject}."),
        ("road", "The way is harder than expected; {a} meets {b}."),
        ("trial", "A storm of trouble tests them both at {place}."),
        ("discovery", "{a} finds the truth about {subject}."),
        ("return", "{a} comes home changed, and {place} looks different now."),
    ),
    "classic": (
        ("ordinary world", "At {place}, {a} lives an ordinary life, untouched by {subject}."),
        ("disturbance", "{subject} intrudes; {a} cannot ignore it."),
        ("struggle", "{a} and {b} clash over what to do at {place}."),
        ("turning point", "A single choice changes everything about {subject}."),
        ("resolution", "In the quiet after, {a} understands what {subject} meant."),
    ),
}

_SHOT_TYPES: tuple[tuple[str, str], ...] = (
    ("Sweeping aerial view of", "aerial establishing shot"),
    ("Wide shot of", "wide shot"),
    ("Medium shot:", "medium shot"),
    ("Close-up:", "close-up"),
    ("Low-angle shot of", "low-angle shot"),
    ("Silhouette against the sky:", "silhouette shot"),
    ("Detail insert:", "macro detail shot"),
)

#: Camera moves the kenburns renderer understands (see reelforge.plugins.kenburns).
CAMERA_MOVES: tuple[str, ...] = (
    "slow push in", "pull out", "pan left", "pan right", "tilt up", "tilt down",
)

_NAMES = ("Ilyana", "Tarek", "Mira", "Oskar", "Sefa", "Daro", "Nour", "Lio", "Amara",
          "Kasim", "Edda", "Ruy", "Zohra", "Bram", "Yael", "Teodor", "Ines", "Hollis")

_NEGATIVE = ("blurry, low resolution, watermark, text, logo, extra limbs, deformed hands, "
             "duplicate faces, oversaturated, jpeg artifacts")


# -- helpers -------------------------------------------------------------------------

def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _subject(idea: str) -> str:
    """What the idea is about, e.g. 'an ancient trading city' -> 'the ancient trading city'."""
    core = _LEADING.sub("", idea.strip().rstrip(".!?")).strip() or idea.strip() or "an untold story"
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


#: Nouns that name a place: found in an idea, they become the film's home setting.
_PLACE_NOUNS = frozenset("""
lighthouse city town village harbour harbor port island forest woods jungle mountain mountains desert
station castle temple palace market bakery kitchen library school ship boat garden farm house cabin
hotel cafe café shop museum theatre theater observatory monastery mine river lake sea ocean coast
beach valley cave tower bridge street alley train bus hospital studio workshop factory prison church
planet moon mars orbit kingdom empire square pier quay quays cathedral fortress camp colony
""".split())
_COUNTS = {"two": 2, "three": 3, "twin": 2, "twins": 2}
_IRREGULAR = {"women": "woman", "men": "man", "children": "child", "people": "person", "wolves": "wolf",
              "thieves": "thief", "wives": "wife", "geese": "goose", "mice": "mouse"}


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


def _singular(word: str) -> str:
    low = word.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    if low.endswith("ies") and len(low) > 4:
        return word[:-3] + "y"
    if low.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if low.endswith("s") and not low.endswith("ss"):
        return word[:-1]
    return word


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
        if (low in _PLACE_NOUNS or _singular(low) in _PLACE_NOUNS) and low not in ("moon", "mars") \
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
                head[-1] = _singular(head[-1])
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


# -- the backend ---------------------------------------------------------------------

@attrs.frozen
class OfflinePlannerOptions:
    shots: int = attrs.field(default=7, validator=attrs.validators.in_(range(1, 1000)))
    "How many shots to plan (spread over 3-5 scenes)."
    shot_seconds: float = attrs.field(default=3.0, validator=attrs.validators.gt(0))
    "Length of each shot in seconds."


class OfflinePlanner:
    """A deterministic template planner (not an LLM): fills story, scene and shot templates
    from the idea, seeded by its hash. Works offline; the same idea gives the same plan."""

    name: ClassVar[str] = "offline"
    Options: ClassVar[type] = OfflinePlannerOptions
    description: ClassVar[str] = "Deterministic template planner (no LLM, works offline)"
    concurrency: int = 1

    def __init__(self, options: OfflinePlannerOptions | None = None):
        self.options = options if options is not None else OfflinePlannerOptions()

    # Each method reseeds from its own inputs so that it can be called alone on resume.
    def _rng(self, *parts: str) -> random.Random:
        return random.Random(_seed_of("\x1f".join(("reelforge-offline", *parts))))

    def write_story(self, idea: str) -> Story:
        rng = self._rng("story", idea)
        theme = _THEMES[_theme(idea)]
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
        title = _title_case(idea.strip().rstrip(".!?")) or "Untitled"
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
        style = rng.choice(theme["styles"])
        return Story(title=title, logline=logline, synopsis="\n\n".join(paragraphs),
                     characters=characters, style=style)

    def build_scene_graph(self, story: Story) -> SceneGraph:
        idea = story.title
        rng = self._rng("scenes", story.title, story.logline)
        theme = _THEMES[_theme(idea)]
        arc = _ARCS[_arc(idea, rng)]
        subject = _story_subject(story)
        shots = self.options.shots
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

    def plan_shots(self, story: Story, scenes: SceneGraph) -> ShotPlan:
        rng = self._rng("shots", story.title, *(s.summary for s in scenes.scenes))
        theme = _THEMES[_theme(story.title)]
        looks = {c.name: c.description for c in story.characters}
        subject = _story_subject(story)
        lead = story.characters[0].name if story.characters else "someone"
        n_shots = self.options.shots
        all_scenes = list(scenes.scenes) or [Scene(id="s1", order=1, summary=story.logline)]
        # Spread shots over scenes: one each, the rest to the middle scenes first.
        counts = [1] * len(all_scenes)
        if n_shots < len(all_scenes):
            counts = [1 if i < n_shots else 0 for i in range(len(all_scenes))]
        order = sorted(range(len(all_scenes)), key=lambda i: abs(i - (len(all_scenes) - 1) / 2))
        k = 0
        while sum(counts) < n_shots:
            counts[order[k % len(order)]] += 1
            k += 1
        person_kinds = ("close-up", "medium shot", "low-angle shot", "silhouette shot")
        seen: dict[str, int] = {}
        specs: list[dict] = []
        last_move = ""
        for scene, count in zip(all_scenes, counts):
            for j in range(count):
                shot_id = len(specs) + 1
                if shot_id == 1:
                    type_index = 0
                elif shot_id == n_shots and n_shots > 1:
                    type_index = 5
                else:  # any type but the one just used
                    previous = specs[-1]["type_index"] if specs else -1
                    type_index = rng.choice([t for t in range(1, len(_SHOT_TYPES)) if t != previous])
                unseen = [n for n in scene.characters if n in looks and n not in seen]
                if unseen and shot_id != 1 and _SHOT_TYPES[type_index][1] not in person_kinds:
                    type_index = 2  # a medium shot, so everyone in the story is seen
                move = rng.choice([m for m in CAMERA_MOVES if m != last_move])
                last_move = move
                ranked = sorted(scene.characters, key=lambda n: (seen.get(n, 0), scene.characters.index(n)))
                cast = ranked[:1]
                if _SHOT_TYPES[type_index][1] in person_kinds:
                    for name in cast:
                        seen[name] = seen.get(name, 0) + 1
                specs.append(dict(shot_id=shot_id, scene=scene, type_index=type_index, move=move, cast=cast,
                                  first_in_scene=j == 0, detail=rng.choice(theme["details"]),
                                  pace=rng.choice(("slow", "steady", "gentle")), line=rng.random()))
        # Anyone still unseen joins a shot of a scene they are in (never the aerial opening):
        # beside the people already in frame, or as the subject of a shot that had none.
        for name in [c.name for c in story.characters if c.name not in seen]:
            candidates = [sp for sp in specs[1:] if name in sp["scene"].characters] or specs[1:]
            with_people = [sp for sp in candidates if _SHOT_TYPES[sp["type_index"]][1] in person_kinds
                           and len(sp["cast"]) < 3]
            if with_people:
                with_people[-1]["cast"].append(name)
            elif candidates:
                spec = candidates[-1]
                spec.update(cast=[name], type_index=2 if spec["shot_id"] != n_shots else 5)
            else:
                continue
            seen[name] = 1
        shots = [self._shot(story, spec, looks, subject, lead, n_shots) for spec in specs]
        return ShotPlan(shots=tuple(shots))

    def _shot(self, story: Story, spec: dict, looks: dict[str, str], subject: str, lead: str,
              n_shots: int) -> Shot:
        scene, shot_id, cast_names = spec["scene"], spec["shot_id"], tuple(spec["cast"])
        who = cast_names[0] if cast_names else ""
        together = ", ".join(cast_names[:-1]) + f" and {cast_names[-1]}" if len(cast_names) > 1 else who
        prefix, kind = _SHOT_TYPES[spec["type_index"]]
        place = scene.setting.split(",")[0] or "the place"
        detail = spec["detail"]
        # at the pier, in Lisbon, on Mars
        at = "on" if place.lower() in _ON_PLACES else "at" if _lower_place(place) != place or place[:1].islower() else "in"
        if kind in ("close-up", "medium shot", "low-angle shot", "silhouette shot") and who:
            subject_text = f"{together} {at} {_lower_place(place)}, {detail}"
            in_frame: tuple[str, ...] = cast_names
        elif kind == "macro detail shot":
            subject_text = f"{detail} {at} {_lower_place(place)}"
            in_frame = ()
        else:
            subject_text = f"{_lower_place(place)}, {detail}"
            in_frame = ()
        description = f"{prefix} {subject_text}"
        cast = "; ".join(f"{n}: {looks[n]}" for n in in_frame if n in looks)
        image_prompt = ", ".join(p for p in (
            f"{kind} of {subject_text}",
            scene.summary.split(". ", 1)[-1].rstrip("."),
            cast,
            story.style,
            "highly detailed, cinematic composition",
        ) if p)
        motion_prompt = f"{spec['move']}, {spec['pace']} camera, {kind}"
        seed = _seed_of(f"{story.title}\x1f{shot_id}\x1f{description}") % (2**31)
        narration = _narration(spec, kind, who, _lower_place(place), detail, subject, lead, shot_id == n_shots > 1)
        return Shot(
            id=shot_id, scene_id=scene.id, description=description,
            image_prompt=image_prompt, motion_prompt=motion_prompt,
            negative_prompt=_NEGATIVE, duration_s=float(self.options.shot_seconds),
            characters=in_frame, seed=seed, narration=narration,
        )


_ON_PLACES = frozenset(("mars", "venus", "jupiter", "saturn", "mercury", "the moon", "moon", "the island"))


def _lower_place(place: str) -> str:
    """A scene's place inside a sentence: 'The lighthouse gallery' -> 'the lighthouse
    gallery', names kept ('Lisbon')."""
    return place[:1].lower() + place[1:] if place[:4].lower() in ("the ", "a ", "an ") or \
        place.split(" ", 1)[0].lower() in ("the", "a", "an") else place


#: Narration lines by what the shot shows (one is picked per shot, deterministically).
_LINES: dict[str, tuple[str, ...]] = {
    "person": ("{who} watches {detail}, and says nothing.",
               "{who} has seen {detail} before, but never like this.",
               "For {who}, {place} has never felt so small.",
               "{who} knows that {subject} will not wait."),
    "detail": ("{Detail}: the smallest sign of what is coming.",
               "Even {detail} seems to know what {subject} means now.",
               "Nobody else notices {detail}."),
    "place": ("{Place} holds its breath.",
              "Around {place}, the light begins to change.",
              "Here, {subject} is all anyone talks about."),
}


def _narration(spec: dict, kind: str, who: str, place: str, detail: str, subject: str, lead: str,
               last: bool) -> str:
    """One line of voice-over for the shot, in English: the scene's own sentence (its
    first clause) on its first shot, then a line about what the shot shows; the film's last shot closes it."""
    if last:
        return f"In the end, {who or lead} looks back at {subject} one last time."
    if spec["first_in_scene"]:
        # The scene's own sentence, up to its semicolon: a line is spoken in a few seconds.
        sentence = spec["scene"].summary.split(". ", 1)[-1].strip()
        return sentence.split("; ", 1)[0].rstrip(".") + "."
    group = "person" if who and kind in ("close-up", "medium shot", "low-angle shot", "silhouette shot") else \
        "detail" if kind == "macro detail shot" else "place"
    options = _LINES[group]
    line = options[int(spec["line"] * len(options)) % len(options)]
    return _upper_first(line.format(who=who, detail=detail, Detail=_upper_first(detail), place=place,
                                    Place=_upper_first(place), subject=subject))


@hookimpl
def register_story_llms(register):
    register(OfflinePlanner)
