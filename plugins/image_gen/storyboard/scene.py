"""What a shot shows, read from its words: the setting (sea, city, forest, storm, night, ...)
and the shot type (aerial, wide, medium, close-up, low angle, silhouette, detail)."""

from __future__ import annotations

import re

from reelforge.records import Shot

SETTING_WORDS: dict[str, tuple[str, ...]] = {
    "sea": ("sea", "ocean", "wave", "waves", "beach", "pier", "shore", "coast", "harbour", "harbor", "swell",
            "lighthouse", "quays", "boat", "ship", "sail", "sails", "island", "bay", "cove", "fishing", "lake", "river"),
    "city": ("city", "street", "market", "town", "village", "palace", "temple", "quays", "rooftop", "skyline",
             "walls", "gate", "colonnade", "square", "alley", "warehouses", "tower", "towers", "bakery", "shop"),
    "forest": ("forest", "woods", "wood", "trees", "tree", "pine", "pines", "jungle", "grove", "old-growth"),
    "mountain": ("mountain", "mountains", "peak", "peaks", "pass", "ridge", "summit", "cliff", "cliffs", "alpine"),
    "desert": ("desert", "dune", "dunes", "sand", "caravan", "camel", "camels", "oasis"),
    "snow": ("snow", "snowy", "frozen", "winter", "ice", "icy", "glacier", "blizzard"),
    "storm": ("storm", "storms", "storm-lashed", "tempest", "rain", "rainy", "thunder", "lightning", "gale",
              "squall", "hurricane", "rain-wet"),
    "night": ("night", "midnight", "moon", "moonlit", "starlit", "nocturnal", "night-shift", "neon"),
    "dusk": ("dusk", "sunset", "twilight", "evening", "golden-hour"),
    "dawn": ("dawn", "sunrise", "daybreak", "first light", "morning"),
    "interior": ("room", "kitchen", "cabin", "workshop", "corridor", "hall", "inside", "interior", "library",
                 "bakery", "shop", "control room", "bay", "cave", "deck", "bus", "studio", "cellar", "attic"),
    "space": ("space", "orbit", "planet", "galaxy", "stars", "station", "spaceship", "asteroid", "nebula"),
    "lighthouse": ("lighthouse",),
}

#: Shot types, matched in this order.
SHOT_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aerial", ("aerial", "bird's-eye", "birds-eye", "overhead", "drone")),
    ("closeup", ("close-up", "close up", "closeup", "extreme close")),
    ("detail", ("detail", "macro", "insert")),
    ("silhouette", ("silhouette",)),
    ("low", ("low-angle", "low angle", "worm's-eye")),
    ("medium", ("medium", "mid shot", "waist")),
    ("wide", ("wide", "establishing", "long shot", "panorama")),
)


def shot_type(shot: Shot) -> str:
    """aerial, closeup, detail, silhouette, low, medium or wide (the default), as the image
    prompt names it (the description only for a shot without an image prompt: after an edit
    of the prompt the description may still tell of the old picture)."""
    text = (shot.image_prompt if shot.image_prompt.strip() else shot.description).lower()
    found = [(text.find(w), kind) for kind, words in SHOT_TYPES for w in words if w in text]
    return min(found)[1] if found else "wide"


def prompt_head(prompt: str, segments: int = 3) -> list[str]:
    """The first few clauses of an image prompt, up to the cast or a style phrase (whose
    colour and costume words would mislead): what the picture shows."""
    kept: list[str] = []
    for segment in re.split(r"(?<=[.;])\s|,\s", prompt.strip())[:segments]:
        low = segment.lower()
        # "Name: looks" is the cast; a first clause may be "Medium shot: Ines in the kitchen".
        if "palette" in low or "style" in low or "lens" in low or (":" in segment and kept):
            break
        kept.append(segment)
    return kept


def setting_text(shot: Shot) -> str:
    """The words that say where the shot is: the start of its image prompt (the description
    only for a shot without one: after an edit of the prompt it may tell of the old picture)."""
    if not shot.image_prompt.strip():
        return shot.description.lower()
    return " ".join(prompt_head(shot.image_prompt)).lower()


def setting(shot: Shot) -> frozenset[str]:
    """The setting features a shot's words name: sea, city, forest, mountain, desert, snow,
    storm, night, dusk, dawn, interior, space, lighthouse."""
    text = setting_text(shot)
    words = set(re.findall(r"[a-z]+(?:[-'][a-z]+)*", text))
    found = {name for name, keys in SETTING_WORDS.items()
             if any((k in text) if " " in k else (k in words) for k in keys)}
    if "lighthouse" in found:
        found.add("sea")
    if "interior" in found and {"sea", "city", "forest", "mountain", "desert"} & found:
        # "the lighthouse gallery", "the hydroponics bay" by the sea: keep the outdoors
        # unless the interior word is the main subject.
        if not re.search(r"\b(inside|interior|room|kitchen|cabin|workshop|corridor|library|cellar|attic)\b", text):
            found.discard("interior")
    return frozenset(found)
