"""The film's palette, read from the colour words of its style bible, and the small colour
arithmetic (HSV to RGB, shade, mix) the plate is painted with."""

from __future__ import annotations

import colorsys
import hashlib
import re
from typing import NamedTuple

RGB = tuple[int, int, int]

#: Colour words a style bible uses -> RGB.
COLOURS: dict[str, RGB] = {
    "ochre": (204, 142, 53), "lapis": (38, 97, 156), "terracotta": (201, 100, 66), "teal": (0, 128, 128),
    "amber": (255, 176, 0), "indigo": (63, 40, 130), "cyan": (0, 183, 235), "orange": (240, 120, 30),
    "sodium": (255, 150, 40), "steel": (113, 128, 150), "red": (200, 30, 40), "emergency": (220, 20, 30),
    "slate": (96, 110, 128), "grey": (128, 128, 128), "gray": (128, 128, 128), "green": (60, 150, 70),
    "sea": (46, 139, 120), "navy": (20, 36, 90), "gold": (212, 175, 55), "lantern": (240, 190, 80),
    "pine": (1, 121, 111), "frost": (220, 235, 245), "white": (240, 240, 235), "golden": (230, 180, 60),
    "meadow": (150, 190, 80), "blue": (40, 90, 200), "tungsten": (255, 180, 100), "pastel": (200, 180, 220),
    "yellow": (240, 210, 50), "purple": (110, 50, 150), "violet": (140, 80, 200), "pink": (240, 140, 180),
    "brown": (120, 80, 45), "black": (20, 20, 24), "silver": (190, 195, 200), "copper": (184, 115, 51),
    "bronze": (165, 113, 60), "crimson": (170, 20, 50), "scarlet": (230, 35, 20), "emerald": (20, 150, 90),
    "jade": (0, 168, 107), "turquoise": (64, 200, 200), "cobalt": (0, 71, 171), "ivory": (245, 240, 220),
    "cream": (240, 230, 200), "sepia": (112, 66, 20), "rust": (183, 65, 14), "olive": (110, 120, 40),
    "magenta": (200, 30, 150), "lavender": (180, 160, 220), "rose": (230, 110, 130), "coral": (250, 120, 90),
    "mint": (150, 230, 190), "sand": (220, 195, 140), "charcoal": (54, 60, 66), "umber": (99, 81, 71),
    "sienna": (160, 82, 45), "azure": (0, 127, 255), "saffron": (244, 196, 48), "plum": (120, 60, 110),
    "moss": (100, 120, 60), "honey": (235, 170, 60), "cerulean": (42, 130, 190), "burgundy": (128, 0, 32),
}
_DARKER = {"deep", "dark", "night", "inky", "midnight", "muted", "dusky"}
_PALER = {"pale", "light", "soft", "faded", "sun-bleached", "bleached", "washed", "pastel", "misty"}
_WARM, _COLD = {"warm", "sunlit", "sun-bleached", "golden"}, {"cold", "cool", "icy", "wintry"}


class Palette(NamedTuple):
    """The film's colours, derived from its style bible."""

    primary: RGB
    secondary: RGB

    def hsv(self, which: str) -> tuple[float, float, float]:
        r, g, b = getattr(self, which)
        return colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)


def _rgb(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, max(0.0, min(1.0, s)), max(0.0, min(1.0, v)))
    return int(r * 255), int(g * 255), int(b * 255)


def _shade(c: RGB, v: float = 1.0, s: float = 1.0, hue_shift: float = 0.0) -> RGB:
    h, sat, val = colorsys.rgb_to_hsv(*(x / 255 for x in c))
    return _rgb(h + hue_shift, sat * s, val * v)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _colour_of(phrase: str) -> RGB | None:
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", phrase.lower())
    pieces = [p for w in words for p in w.split("-")]
    found = None
    for piece in pieces:
        if piece in COLOURS:
            found = COLOURS[piece] if found is None else _mix(found, COLOURS[piece], 0.5)
    if found is None:
        return None
    mods = set(words) | set(pieces)
    if mods & _DARKER:
        found = _shade(found, v=0.6)
    if mods & _PALER:
        found = _shade(found, v=1.1, s=0.6)
    if mods & _WARM:
        found = _mix(found, (255, 170, 80), 0.2)
    if mods & _COLD:
        found = _mix(found, (80, 140, 220), 0.2)
    return found


_PALETTE_PHRASE = re.compile(r"([^,.;:]*?)\bpalette\b", re.IGNORECASE)


def palette_for(prompt: str) -> Palette:
    """The palette of the film a prompt belongs to: the colours named in its style bible's
    "... palette" phrase (or, failing that, the first colour words anywhere), else hues from
    a hash of the style text. Every shot of a film carries the same style, so they all get
    the same palette; films with different styles get different ones."""
    anchors: list[RGB] = []
    for phrase in _PALETTE_PHRASE.findall(prompt):
        for part in re.split(r"\band\b|&|/|\+|,", phrase):
            colour = _colour_of(part)
            if colour is not None:
                anchors.append(colour)
        if anchors:
            break
    if not anchors:
        for word in re.findall(r"[a-z]+", prompt.lower()):
            if word in COLOURS and COLOURS[word] not in anchors:
                anchors.append(COLOURS[word])
            if len(anchors) == 2:
                break
    if not anchors:
        style = prompt.split("Style:", 1)[-1]
        digest = hashlib.sha256(style.encode("utf-8")).digest()
        anchors = [_rgb(digest[0] / 255, 0.55, 0.6)]
    if len(anchors) == 1:
        h, s, v = colorsys.rgb_to_hsv(*(x / 255 for x in anchors[0]))
        anchors.append(_rgb(h + 0.45, max(0.35, s * 0.8), max(0.5, v)))
    return Palette(anchors[0], anchors[1])
