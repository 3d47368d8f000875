"""The ``storyboard`` image generator: draws a storyboard frame per shot with Pillow.

The picture follows the shot: one palette per film, read from the style bible every prompt
carries ("deep navy and lantern-gold palette"); a background built from the setting's words
(sea, city, forest, storm, night, desert, mountain, interior, ...); framing from the shot
type (aerial, wide, medium, close-up, low angle, silhouette, detail). Deterministic: the
same shot always gives the same pixels. No model, GPU or network.

The image written is a text-free *plate*, marked as such in a PNG text chunk. The card's
text (shot number, caption, camera note) is drawn by :func:`card_overlay`, which the
``kenburns`` renderer puts on top of each frame *after* its zoom and pan, so no camera move
ever crops a caption. :meth:`StoryboardGenerator.draw` gives plate and card together.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import math
import os
import random
import re
from pathlib import Path
from typing import ClassVar, NamedTuple

import attrs

from reelforge import hookimpl
from reelforge.errors import StageError
from reelforge.limits import MAX_SIDE, between, check_frame_size
from reelforge.protocols import ShotJob
from reelforge.records import Shot

#: PNG text chunk that marks a storyboard plate (a renderer may draw the card over it).
PLATE_KEY = "reelforge-plate"
PLATE_VALUE = "storyboard"

RGB = tuple[int, int, int]


@functools.lru_cache(maxsize=16)
def font(size: int):
    """The shipped DejaVu Sans at ``size`` (Pillow's embedded font if it cannot be read)."""
    from PIL import ImageFont

    from reelforge.media.fonts import font as shipped

    try:
        return shipped(size)
    except OSError:
        return ImageFont.load_default(size=size)


# -- palette ---------------------------------------------------------------------------

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


# -- what the shot shows -------------------------------------------------------------------

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
    """aerial, closeup, detail, silhouette, low, medium or wide (the default)."""
    text = f"{shot.description} {shot.image_prompt}".lower()
    found = [(text.find(w), kind) for kind, words in SHOT_TYPES for w in words if w in text]
    return min(found)[1] if found else "wide"


def setting_text(shot: Shot) -> str:
    """The words that say where the shot is: its description and the start of its prompt
    (not the style bible or the cast, whose colour and costume words would mislead)."""
    head = re.split(r"(?<=[.;])\s|,\s", shot.image_prompt)
    kept = []
    for segment in head[:3]:
        low = segment.lower()
        if "palette" in low or "style" in low or "lens" in low or ":" in segment:
            break
        kept.append(segment)
    return f"{shot.description} {' '.join(kept)}".lower()


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


# -- helpers ---------------------------------------------------------------------------------

def _wrap(draw, text: str, fnt, width: int, max_lines: int) -> list[str]:
    from reelforge.media.soundtrack import wrap_text

    return wrap_text(draw, " ".join(text.split()), fnt, width, max_lines) if text.split() else []


def _camera_move(motion_prompt: str) -> str:
    low = motion_prompt.lower()
    for move in ("push in", "pull out", "pan left", "pan right", "tilt up", "tilt down"):
        if move in low:
            return move
    return ""


class CardLayout(NamedTuple):
    """Where the card's text sits, in pixels of a ``width`` x ``height`` frame."""

    pad: int
    header: int
    caption: int


#: The share of the frame's height the card's caption band covers at the bottom: burnt
#: subtitles go above it (``reelforge.media.soundtrack.finish_film(bottom_margin=...)``).
CAPTION_BAND = 150 / 720


def card_layout(width: int, height: int) -> CardLayout:
    s = height / 720
    return CardLayout(pad=int(24 * s), header=int(54 * s), caption=int(CAPTION_BAND * height))


# -- the card's text layer ---------------------------------------------------------------------

def card_overlay(shot: Shot, size: tuple[int, int], *, duration_s: float | None = None,
                 layer: str = "all"):
    """The storyboard card's furniture for ``shot`` as a transparent RGBA image of ``size``:
    ``layer="bands"`` the header and caption bands, corner marks and frame; ``"text"`` the
    shot number, scene and length, caption, camera note and motion arrow; ``"all"`` both.
    Everything lies inside the frame with a margin, whatever the text's length."""
    from PIL import Image, ImageDraw

    w, h = size
    lay = card_layout(w, h)
    s = h / 720
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    white, grey, accent = (245, 245, 240, 255), (190, 190, 195, 255), (255, 196, 64, 255)
    if layer in ("all", "bands"):
        draw.rectangle((0, 0, w, lay.header), fill=(10, 10, 14, 190))
        draw.rectangle((0, h - lay.caption, w, h), fill=(10, 10, 14, 200))
        m, L = int(70 * s), int(30 * s)
        for x, y, dx, dy in ((m, lay.header + m // 2, 1, 1), (w - m, lay.header + m // 2, -1, 1),
                             (m, h - lay.caption - m // 2, 1, -1), (w - m, h - lay.caption - m // 2, -1, -1)):
            draw.line((x, y, x + dx * L, y), fill=(245, 245, 240, 200), width=max(1, int(2 * s)))
            draw.line((x, y, x, y + dy * L), fill=(245, 245, 240, 200), width=max(1, int(2 * s)))
        draw.rectangle((0, 0, w - 1, h - 1), outline=white, width=max(1, int(3 * s)))
    if layer in ("all", "text"):
        big, mid, small = font(max(10, int(30 * s))), font(max(10, int(23 * s))), font(max(9, int(19 * s)))
        seconds = shot.duration_s if duration_s is None else duration_s
        label = f"SCENE {shot.scene_id}   ·   {seconds:.1f} s   ·   STORYBOARD"
        label_w = draw.textlength(label, font=small)
        number = f"SHOT {shot.id:03d}"
        draw.text((lay.pad, lay.header // 2), number, font=big, fill=accent, anchor="lm")
        if lay.pad * 3 + draw.textlength(number, font=big) + label_w <= w:
            draw.text((w - lay.pad, lay.header // 2), label, font=small, fill=grey, anchor="rm")
        y = h - lay.caption + int(14 * s)
        for line in _wrap(draw, shot.description, mid, w - 2 * lay.pad, 2):
            draw.text((lay.pad, y), line, font=mid, fill=white)
            y += int(32 * s)
        camera = shot.motion_prompt or "static"
        camera_line = _wrap(draw, f"CAMERA: {camera}", small, w - 2 * lay.pad, 1)[0]
        draw.text((lay.pad, h - lay.pad), camera_line, font=small, fill=accent, anchor="ls")
        move = _camera_move(camera)
        if move:
            _arrow(draw, move, (w // 2, (lay.header + h - lay.caption) // 2), int(50 * s), accent,
                   max(2, int(4 * s)))
    return img


def _arrow(draw, move: str, centre: tuple[int, int], size: int, colour, width: int) -> None:
    cx, cy = centre
    if move in ("push in", "pull out"):
        # Four corner arrows pointing inward (push in) or outward (pull out).
        for dx, dy in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
            outer = (cx + dx * size * 2, cy + dy * size)
            inner = (cx + dx * size, cy + dy * size // 2)
            start, end = (outer, inner) if move == "push in" else (inner, outer)
            draw.line((*start, *end), fill=colour, width=width)
            draw.ellipse((end[0] - width * 2, end[1] - width * 2, end[0] + width * 2, end[1] + width * 2), fill=colour)
        return
    vec = {"pan left": (-1, 0), "pan right": (1, 0), "tilt up": (0, -1), "tilt down": (0, 1)}[move]
    sx, sy = cx - vec[0] * size, cy - vec[1] * size
    ex, ey = cx + vec[0] * size, cy + vec[1] * size
    draw.line((sx, sy, ex, ey), fill=colour, width=width)
    hx, hy = -vec[1], vec[0]  # perpendicular, for the arrow head
    head = size // 3
    draw.polygon([(ex + vec[0] * head, ey + vec[1] * head),
                  (ex + hx * head, ey + hy * head), (ex - hx * head, ey - hy * head)], fill=colour)


# -- the plate ---------------------------------------------------------------------------------

class _Painter:
    """Draws one plate: sky, far and near layers, landmarks and figures."""

    def __init__(self, shot: Shot, size: tuple[int, int]):
        self.shot = shot
        self.w, self.h = size
        digest = hashlib.sha256(f"{shot.image_prompt}\x1f{shot.seed}".encode("utf-8")).digest()
        self.rng = random.Random(int.from_bytes(digest[:8], "big"))
        self.palette = palette_for(shot.image_prompt)
        self.where = setting(shot)
        self.kind = shot_type(shot)
        self.night = "night" in self.where or ("space" in self.where and "interior" not in self.where)
        self.storm = "storm" in self.where
        self.time = "night" if self.night else "dusk" if "dusk" in self.where else "dawn" if "dawn" in self.where else "day"

    # horizon height per framing: aerial looks down (high horizon), low angle looks up.
    def horizon(self) -> int:
        # (The card's bands cover the top 8 % and bottom 21 %: keep what matters between.)
        frac = {"aerial": 0.3, "low": 0.74, "silhouette": 0.7, "closeup": 0.62, "medium": 0.6,
                "detail": 0.55, "wide": 0.56}[self.kind]
        return int(self.h * (frac + self.rng.uniform(-0.03, 0.03)))

    def colours(self):
        p = self.palette
        ph, ps, pv = p.hsv("primary")
        sh, ss, sv = p.hsv("secondary")
        if self.time == "night":
            top, bottom = _rgb(ph, min(1, ps * 0.9 + 0.2), 0.12), _rgb(ph, ps * 0.8, 0.32)
        elif self.time == "dusk":
            top, bottom = _rgb(ph, ps * 0.7, 0.45), _mix(_rgb(sh, ss, 0.95), (255, 140, 70), 0.35)
        elif self.time == "dawn":
            top, bottom = _rgb(ph, ps * 0.5, 0.7), _mix(_rgb(sh, ss * 0.6, 1.0), (255, 200, 170), 0.3)
        else:
            top, bottom = _rgb(ph, ps * 0.75, min(1.0, 0.45 + pv * 0.5)), _rgb(sh, ss * 0.35, 0.95)
        if self.storm:
            top, bottom = _mix(top, (40, 44, 52), 0.6), _mix(bottom, (90, 96, 104), 0.55)
        if self.kind == "silhouette":
            bottom = _mix(_rgb(sh, ss, 1.0), (255, 200, 120), 0.4)
        return top, bottom

    def land(self, depth: float) -> RGB:
        """Ground colour at ``depth`` (0 far, 1 near): the primary hue, darker when near."""
        ph, ps, _ = self.palette.hsv("primary")
        v = (0.55 - 0.38 * depth) * (0.45 if self.night else 1.0) * (0.75 if self.storm else 1.0)
        if self.kind == "silhouette":
            v *= 0.35
        return _rgb(ph + 0.03 * depth, min(1.0, ps * 0.6 + 0.15 + 0.15 * depth), v)

    def accent(self, bright: float = 1.0) -> RGB:
        sh, ss, sv = self.palette.hsv("secondary")
        return _rgb(sh, ss, min(1.0, max(0.55, sv) * bright))

    def paint(self):
        from PIL import Image, ImageDraw, ImageFilter

        w, h = self.w, self.h
        top, bottom = self.colours()
        img = Image.composite(Image.new("RGB", (w, h), bottom), Image.new("RGB", (w, h), top),
                              Image.linear_gradient("L").resize((w, h)))
        draw = ImageDraw.Draw(img)
        horizon = self.horizon()
        if "interior" in self.where and "space" not in self.where:
            self.interior(draw, horizon)
        else:
            self.sky(draw, horizon)
            self.landscape(draw, horizon)
        if self.kind in ("closeup", "detail", "medium"):
            # Shallow depth of field: the background goes soft behind the subject.
            img = img.filter(ImageFilter.GaussianBlur(radius={"closeup": 9, "detail": 12, "medium": 3}[self.kind] * h / 720))
            draw = ImageDraw.Draw(img)
        if self.storm and "interior" not in self.where:
            self.rain(draw)
        self.subject(img, draw, horizon)
        if self.kind in ("closeup", "detail", "silhouette", "low"):
            self.vignette(img)
        return img

    # -- sky -------------------------------------------------------------------------
    def sky(self, draw, horizon: int) -> None:
        w, h, rng = self.w, self.h, self.rng
        if self.night or "space" in self.where:
            for _ in range(int(140 * w / 1280)):
                x, y = rng.randrange(w), rng.randrange(max(1, horizon))
                r = rng.choice((1, 1, 1, 2))
                draw.ellipse((x, y, x + r, y + r), fill=_mix((255, 255, 240), self.colours()[0], rng.uniform(0, 0.5)))
        if self.storm:
            for _ in range(7):  # heavy cloud banks
                cx, cy = rng.randrange(-w // 8, w + w // 8), rng.randrange(-h // 10, max(1, horizon // 2))
                rw, rh = rng.randint(w // 5, w // 2), rng.randint(h // 12, h // 6)
                draw.ellipse((cx - rw, cy - rh, cx + rw, cy + rh), fill=_mix(self.colours()[0], (30, 32, 38), rng.uniform(0.1, 0.5)))
            if rng.random() < 0.7:
                x, y = rng.randint(w // 5, 4 * w // 5), int(h * 0.08)
                points = [(x, y)]
                while y < horizon:
                    x += rng.randint(-w // 40, w // 40)
                    y += rng.randint(h // 30, h // 14)
                    points.append((x, min(y, horizon)))
                draw.line(points, fill=(240, 240, 255), width=max(2, h // 240))
            return
        # Sun or moon, with a soft halo, placed off centre.
        cx = int(w * rng.choice((rng.uniform(0.12, 0.35), rng.uniform(0.65, 0.88))))
        cy = int(max(h * 0.08, horizon * rng.uniform(0.3, 0.7)))
        r = int(h * rng.uniform(0.045, 0.075))
        glow = (235, 235, 245) if self.night else _mix(self.accent(1.2), (255, 246, 215), 0.8)
        top, bottom = self.colours()
        for k in range(5, 0, -1):
            draw.ellipse((cx - r - k * r // 2, cy - r - k * r // 2, cx + r + k * r // 2, cy + r + k * r // 2),
                         fill=_mix(bottom if cy > horizon / 2 else top, glow, 0.12 * (6 - k)))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=glow)
        if self.time in ("day", "dawn") and "space" not in self.where:
            for _ in range(rng.randint(2, 4)):  # a few soft clouds
                x0, y0 = rng.randrange(w), rng.randint(int(h * 0.05), max(int(h * 0.06), horizon // 2))
                for j in range(4):
                    rr = rng.randint(h // 30, h // 16)
                    draw.ellipse((x0 + j * rr - rr, y0 - rr // 2, x0 + j * rr + rr, y0 + rr // 2),
                                 fill=_mix(self.colours()[1], (255, 255, 255), 0.6))

    # -- ground layers -----------------------------------------------------------------
    def landscape(self, draw, horizon: int) -> None:
        w, h, where = self.w, self.h, self.where
        if "space" in where:
            # A planet's limb across the lower frame.
            r = int(w * 0.9)
            cy = horizon + r - int(h * 0.08)
            draw.ellipse((w // 2 - r, cy - r, w // 2 + r, cy + r), fill=self.land(0.4))
            draw.arc((w // 2 - r, cy - r, w // 2 + r, cy + r), 200, 340, fill=self.accent(1.2), width=max(2, h // 120))
            return
        far = self.land(0.0)
        if "mountain" in where or "snow" in where:
            self.peaks(draw, horizon, far, snow=("snow" in where or "mountain" in where))
        elif "desert" in where:
            self.dunes(draw, horizon, far)
        else:
            self.hills(draw, horizon, far, amp=0.06)
        if "city" in where:
            self.skyline(draw, horizon, self.land(0.35))
        if "forest" in where:
            self.trees(draw, horizon, self.land(0.5), count=int(26 * w / 1280))
        if "sea" in where:
            self.sea(draw, horizon)
        else:
            self.hills(draw, horizon + int((h - horizon) * 0.35), self.land(0.75), amp=0.05)
            if "forest" in where:
                self.trees(draw, horizon + int((h - horizon) * 0.45), self.land(0.9), count=int(9 * w / 1280), big=True)
        if "lighthouse" in where:
            self.lighthouse(draw, horizon)

    def hills(self, draw, base: int, colour: RGB, amp: float) -> None:
        w, h, rng = self.w, self.h, self.rng
        steps = rng.randint(5, 9)
        points = [(0, h)]
        for i in range(steps + 1):
            points.append((int(w * i / steps), base - int(rng.uniform(0, h * amp))))
        points.append((w, h))
        draw.polygon(points, fill=colour)

    def peaks(self, draw, base: int, colour: RGB, snow: bool) -> None:
        w, h, rng = self.w, self.h, self.rng
        x = -rng.randint(0, w // 8)
        while x < w:
            pw, ph = rng.randint(w // 6, w // 3), rng.randint(int(h * 0.12), int(h * 0.3))
            peak = (x + pw // 2, base - ph)
            draw.polygon([(x, base + 2), peak, (x + pw, base + 2)], fill=colour)
            if snow:
                cap = ph // 3
                draw.polygon([(peak[0] - pw * cap // (2 * ph), peak[1] + cap), peak,
                              (peak[0] + pw * cap // (2 * ph), peak[1] + cap)], fill=(235, 240, 245))
            x += int(pw * rng.uniform(0.5, 0.8))
        draw.rectangle((0, base, w, h), fill=colour)

    def dunes(self, draw, base: int, colour: RGB) -> None:
        w, h, rng = self.w, self.h, self.rng
        sand = _mix(colour, (220, 180, 120), 0.55)
        for layer in range(3):
            y0 = base + int(layer * (h - base) * 0.3)
            shade = _shade(sand, v=1.0 - 0.15 * layer)
            points = [(0, h)]
            for i in range(0, w + 1, max(8, w // 64)):
                points.append((i, y0 - int(h * 0.04 * (1 + math.sin(i / w * math.pi * rng.uniform(1.5, 3) + layer)))))
            points.append((w, h))
            draw.polygon(points, fill=shade)

    def skyline(self, draw, base: int, colour: RGB) -> None:
        w, h, rng = self.w, self.h, self.rng
        lit = _mix(self.accent(1.3), (255, 220, 140), 0.5)
        x = -rng.randint(0, 40)
        scale = 0.5 if self.kind == "aerial" else 1.0
        while x < w:
            bw = rng.randint(w // 40, w // 14)
            bh = int(rng.randint(h // 12, h // 4) * scale)
            draw.rectangle((x, base - bh, x + bw, base + h // 20), fill=colour)
            if rng.random() < 0.2:  # a dome or a tower top
                draw.ellipse((x, base - bh - bw // 2, x + bw, base - bh + bw // 2), fill=colour)
            if self.night or self.time == "dusk" or self.storm:
                for wy in range(base - bh + 6, base - 4, max(6, h // 70)):
                    for wx in range(x + 4, x + bw - 4, max(6, w // 120)):
                        if rng.random() < 0.3:
                            draw.rectangle((wx, wy, wx + 2, wy + 3), fill=lit)
            x += bw + rng.randint(0, w // 80)

    def trees(self, draw, base: int, colour: RGB, count: int, big: bool = False) -> None:
        w, h, rng = self.w, self.h, self.rng
        for _ in range(count):
            x = rng.randrange(-20, w + 20)
            th = rng.randint(h // 10, h // 5) * (2 if big else 1) * (0.5 if self.kind == "aerial" else 1)
            tw = th // 3
            y = base + rng.randint(-h // 60, h // 40)
            draw.polygon([(x - tw, y), (x, y - th), (x + tw, y)], fill=_shade(colour, v=rng.uniform(0.85, 1.1)))
            draw.rectangle((x - tw // 8, y, x + tw // 8, y + th // 8), fill=_shade(colour, v=0.6))

    def sea(self, draw, horizon: int) -> None:
        w, h, rng = self.w, self.h, self.rng
        # Water: the film's primary colour pulled towards sea blue.
        wh, ws, _ = colorsys.rgb_to_hsv(*(x / 255 for x in _mix(self.palette.primary, (25, 95, 150), 0.55)))
        water_top = _rgb(wh, min(1, ws * 0.8 + 0.15), 0.45 * (0.5 if self.night else 1) * (0.7 if self.storm else 1))
        water_bot = _shade(water_top, v=0.45)
        for i in range(horizon, h):
            draw.line((0, i, w, i), fill=_mix(water_top, water_bot, (i - horizon) / max(1, h - horizon)))
        crest = _mix(water_top, (240, 245, 250), 0.6 if self.storm else 0.45)
        n = 60 if self.storm else 30
        for _ in range(int(n * w / 1280)):
            y0 = rng.randint(horizon + 4, h - 4)
            near = (y0 - horizon) / max(1, h - horizon)
            length = int((20 + 120 * near) * w / 1280)
            x0 = rng.randrange(-length, w)
            draw.arc((x0, y0, x0 + length, y0 + max(4, int(18 * near))), 200, 340, fill=crest,
                     width=max(1, int((1 + 3 * near) * h / 720)))
        if not self.storm and not self.night:  # sun path on the water
            draw.polygon([(w // 2 - w // 50, horizon), (w // 2 + w // 50, horizon), (w // 2 + w // 8, h),
                          (w // 2 - w // 8, h)], fill=_mix(water_top, self.accent(1.2), 0.25))

    def lighthouse(self, draw, horizon: int) -> None:
        w, h, rng = self.w, self.h, self.rng
        scale = {"aerial": 0.45, "wide": 1.0, "low": 1.6, "silhouette": 1.2}.get(self.kind, 0.8)
        x = int(w * rng.choice((0.22, 0.72)))
        tower_h = int(h * 0.36 * scale)
        base_w, top_w = int(h * 0.07 * scale), int(h * 0.045 * scale)
        ground = horizon + int(h * (0.25 if self.kind == "aerial" else 0.02))
        rock = self.land(0.85)
        draw.ellipse((x - base_w * 3, ground - base_w // 2, x + base_w * 3, ground + base_w), fill=rock)
        body = (230, 228, 220) if self.kind != "silhouette" else self.land(1.0)
        stripe = self.accent(0.9) if self.kind != "silhouette" else body
        top_y = ground - tower_h
        draw.polygon([(x - base_w, ground), (x - top_w, top_y), (x + top_w, top_y), (x + base_w, ground)], fill=body)
        for k in (0.3, 0.6):
            y = ground - int(tower_h * k)
            half = int(base_w + (top_w - base_w) * k)
            draw.polygon([(x - half, y), (x + half, y), (x + half - 2, y - tower_h // 10), (x - half + 2, y - tower_h // 10)],
                         fill=stripe)
        lamp_h = int(tower_h * 0.12)
        lamp = (255, 230, 150)
        draw.rectangle((x - top_w, top_y - lamp_h, x + top_w, top_y), fill=lamp)
        draw.polygon([(x - top_w - 4, top_y - lamp_h), (x, top_y - lamp_h * 2), (x + top_w + 4, top_y - lamp_h)],
                     fill=self.land(1.0))
        if self.night or self.storm or self.time == "dusk":
            side = 1 if x < w / 2 else -1
            beam = [(x, top_y - lamp_h // 2), (x + side * w, top_y - lamp_h * 3), (x + side * w, top_y + lamp_h * 3)]
            draw.polygon(beam, fill=_mix(self.colours()[1], lamp, 0.35))

    def interior(self, draw, horizon: int) -> None:
        w, h, rng = self.w, self.h, self.rng
        wall = _shade(self.land(0.2), v=1.3, s=0.7)
        floor = self.land(0.8)
        draw.rectangle((0, 0, w, horizon), fill=wall)
        draw.rectangle((0, horizon, w, h), fill=floor)
        for i in range(0, w, max(20, w // 14)):  # floorboards in perspective
            draw.line((w // 2 + (i - w // 2) // 4, horizon, i, h), fill=_shade(floor, v=0.8), width=1)
        # A window onto the sky outside (night: dark with a moon, day: bright).
        ww, wh = int(w * 0.22), int(h * 0.32)
        wx, wy = int(w * rng.choice((0.12, 0.62))), int(horizon * 0.25)
        outside = self.colours()[1] if not self.night else _rgb(self.palette.hsv("primary")[0], 0.6, 0.25)
        draw.rectangle((wx, wy, wx + ww, wy + wh), fill=outside)
        if self.storm:
            for _ in range(30):
                rx, ry = rng.randint(wx, wx + ww), rng.randint(wy, wy + wh - 10)
                draw.line((rx, ry, rx - 3, ry + 10), fill=(200, 210, 220))
        frame = _shade(wall, v=0.55)
        draw.rectangle((wx, wy, wx + ww, wy + wh), outline=frame, width=max(3, h // 90))
        draw.line((wx + ww // 2, wy, wx + ww // 2, wy + wh), fill=frame, width=max(2, h // 160))
        draw.line((wx, wy + wh // 2, wx + ww, wy + wh // 2), fill=frame, width=max(2, h // 160))
        # A warm lamp pool on the floor.
        lx = int(w * rng.uniform(0.3, 0.7))
        draw.ellipse((lx - w // 6, horizon + (h - horizon) // 4, lx + w // 6, h - (h - horizon) // 6),
                     fill=_mix(floor, self.accent(1.3), 0.25))

    def rain(self, draw) -> None:
        w, h, rng = self.w, self.h, self.rng
        colour = _mix(self.colours()[1], (220, 225, 235), 0.5)
        for _ in range(int(260 * w / 1280)):
            x, y = rng.randrange(-w // 10, w), rng.randrange(-h // 10, h)
            L = rng.randint(h // 40, h // 18)
            draw.line((x, y, x + L // 4, y + L), fill=colour, width=1)

    def vignette(self, img) -> None:
        from PIL import Image

        w, h = img.size
        mask = Image.radial_gradient("L").resize((w, h)).point(lambda d: int(min(255, max(0, (d - 140) * 1.6))))
        img.paste(Image.composite(Image.new("RGB", (w, h), (0, 0, 0)), img, mask))

    # -- the subject: who or what the shot is about ----------------------------------------
    def subject(self, img, draw, horizon: int) -> None:
        w, h, rng = self.w, self.h, self.rng
        cast = list(self.shot.characters[:3])
        figure = self.figure_colour()
        rim = _mix(self.accent(1.3), (255, 255, 255), 0.3)
        if self.kind == "detail":
            self.detail_object(draw, horizon)
            return
        if self.kind == "closeup":
            # Head and shoulders filling the frame, a third in from one side, eyes on the upper third.
            cx = int(w * rng.choice((0.36, 0.64)))
            self.person(draw, cx, int(h * 0.14), int(h * 0.36), figure, rim, detail=True)
            return
        if self.kind == "medium":
            n = max(1, min(2, len(cast)))
            for i in range(n):
                cx = int(w * (0.36 + 0.28 * i if n == 2 else rng.choice((0.4, 0.6))))
                self.person(draw, cx, int(h * rng.uniform(0.2, 0.26)), int(h * 0.15), figure, rim, detail=True)
            return
        if not cast and self.kind in ("wide", "aerial"):
            return
        count = max(1, len(cast))
        sizes = {"aerial": 0.06, "wide": 0.2, "low": 0.62, "silhouette": 0.36}
        for i in range(count):
            fh = int(h * sizes.get(self.kind, 0.2) * rng.uniform(0.9, 1.1))
            fx = int(w * (0.3 + 0.4 * rng.random())) + int((i - (count - 1) / 2) * fh * 0.5)
            base = {"low": int(h * 1.02), "aerial": int(horizon + (h - horizon) * 0.45)}.get(self.kind, int(h * 0.78))
            self.person(draw, fx, base - fh, max(3, fh // 7), figure, rim if self.kind == "low" else None)

    def figure_colour(self) -> RGB:
        return self.land(1.0) if self.kind == "silhouette" else _shade(self.land(0.9), v=0.6)

    def person(self, draw, cx: int, top: int, head: int, colour: RGB, rim: RGB | None,
               detail: bool = False) -> None:
        """A figure whose head (``head`` pixels tall) starts at ``top``; the body runs on
        down, off the bottom of the frame for close and medium framings."""
        head = max(3, head)
        height = head * 7
        feet = top + height
        neck_y = top + int(head * 1.05)
        shoulder_y = neck_y + head // 4
        half = int(head * 1.25)
        bottom = min(feet, self.h + head)
        # torso: shoulders rounded, a slight taper to the waist and on down
        draw.polygon([(cx - half, shoulder_y + head // 3), (cx + half, shoulder_y + head // 3),
                      (cx + int(half * 0.82), bottom), (cx - int(half * 0.82), bottom)], fill=colour)
        draw.ellipse((cx - half, shoulder_y, cx - half + head * 2 // 3, shoulder_y + head * 2 // 3), fill=colour)
        draw.ellipse((cx + half - head * 2 // 3, shoulder_y, cx + half, shoulder_y + head * 2 // 3), fill=colour)
        draw.rectangle((cx - half + head // 3, shoulder_y, cx + half - head // 3, shoulder_y + head // 2), fill=colour)
        draw.rectangle((cx - head // 5, neck_y - head // 5, cx + head // 5, shoulder_y + head // 5), fill=colour)
        draw.ellipse((cx - int(head * 0.42), top, cx + int(head * 0.42), top + int(head * 1.1)), fill=colour)
        if rim is not None:
            side = 1 if cx < self.w / 2 else -1
            width = max(1, head // 16)
            draw.arc((cx - int(head * 0.42), top, cx + int(head * 0.42), top + int(head * 1.1)),
                     -80 if side > 0 else 100, 60 if side > 0 else 260, fill=rim, width=width)
            edge = cx + side * half
            draw.line((edge, shoulder_y + head // 3, cx + side * int(half * 0.82), bottom), fill=rim, width=width)
        if detail:
            # A collar in the film's accent colour.
            draw.polygon([(cx - head // 2, shoulder_y), (cx, shoulder_y + head // 2), (cx + head // 2, shoulder_y),
                          (cx + head // 3, shoulder_y + head * 3 // 4), (cx - head // 3, shoulder_y + head * 3 // 4)],
                         fill=self.accent(0.8))

    def detail_object(self, draw, horizon: int) -> None:
        """A single object large in frame: a lantern-like glow on a surface."""
        w, h, rng = self.w, self.h, self.rng
        table = _shade(self.land(0.7), v=0.9)
        draw.rectangle((0, int(h * 0.68), w, h), fill=table)
        cx, cy = int(w * rng.uniform(0.4, 0.6)), int(h * 0.45)
        r = int(h * 0.2)
        glow = self.accent(1.3)
        for k in range(6, 0, -1):
            draw.ellipse((cx - r - k * r // 4, cy - r - k * r // 4, cx + r + k * r // 4, cy + r + k * r // 4),
                         fill=_mix(self.colours()[0], glow, 0.08 * (7 - k)))
        body = _shade(self.land(1.0), v=0.8)
        draw.rounded_rectangle((cx - r // 2, cy - r, cx + r // 2, int(h * 0.7)), radius=r // 6, fill=body)
        draw.rounded_rectangle((cx - r // 3, cy - int(r * 0.75), cx + r // 3, int(h * 0.64)), radius=r // 8,
                               fill=_mix(glow, (255, 250, 230), 0.4))
        draw.ellipse((cx - r // 2, int(h * 0.66), cx + r // 2, int(h * 0.74)), fill=_shade(body, v=0.7))


# -- the backend ---------------------------------------------------------------------------

@attrs.frozen
class StoryboardOptions:
    width: int = attrs.field(default=1280, validator=between(64, MAX_SIDE))
    "Frame width in pixels (64 to 8192)."
    height: int = attrs.field(default=720, validator=between(64, MAX_SIDE))
    "Frame height in pixels (64 to 8192; width x height at most 35.6 megapixels)."

    def __attrs_post_init__(self) -> None:
        check_frame_size(self.width, self.height, what="storyboard size")


class StoryboardGenerator:
    """Storyboard frames drawn with Pillow: the film's palette, a background from the
    setting, framing from the shot type. Writes the text-free plate; the card's text is
    drawn over the moving picture by the renderer (see :func:`card_overlay`). Offline and
    deterministic."""

    name: ClassVar[str] = "storyboard"
    Options: ClassVar[type] = StoryboardOptions
    description: ClassVar[str] = "Storyboard frames drawn with Pillow (offline, deterministic)"
    concurrency: int = 2
    #: Burnt subtitles keep above the card's caption band (fraction of the frame height).
    subtitle_margin: float = CAPTION_BAND + 0.03
    #: The card shows the description and the shot's characters: a changed one redraws it.
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("description", "characters", "scene_id", "duration_s")

    def __init__(self, options: StoryboardOptions | None = None):
        self.options = options if options is not None else StoryboardOptions()

    def generate(self, shot: Shot, job: ShotJob) -> Path:
        from PIL.PngImagePlugin import PngInfo

        out = Path(job.work_dir) / f"shot_{shot.id:03d}.png"
        tmp = out.with_name(out.stem + ".partial.png")
        info = PngInfo()
        info.add_text(PLATE_KEY, PLATE_VALUE)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.draw_plate(shot).save(tmp, format="PNG", compress_level=1, pnginfo=info)
            os.replace(tmp, out)
        except OSError as exc:
            raise StageError(f"could not write the storyboard frame {out}: {exc}") from exc
        return out

    def draw_plate(self, shot: Shot):
        """The picture for ``shot`` without any text, as a PIL RGB image."""
        return _Painter(shot, (self.options.width, self.options.height)).paint()

    def draw(self, shot: Shot):
        """The whole storyboard card (plate and text) as a PIL RGB image."""
        plate = self.draw_plate(shot).convert("RGBA")
        plate.alpha_composite(card_overlay(shot, plate.size))
        return plate.convert("RGB")


def is_plate(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a storyboard plate (a PNG this generator wrote)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return getattr(im, "text", {}).get(PLATE_KEY) == PLATE_VALUE
    except Exception:
        return False


@hookimpl
def register_image_generators(register):
    register(StoryboardGenerator)
