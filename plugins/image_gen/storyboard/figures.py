"""The plate's subject, who or what the shot is about: people framed by the shot type (a head
and shoulders for a close-up, small figures for a wide shot) or a single object for a detail
shot. Each routine draws with a :class:`Look`."""

from __future__ import annotations

import colorsys
import json
from typing import NamedTuple

from reelforge.plugins.image_gen.storyboard.look import Look
from reelforge.plugins.image_gen.storyboard.palette import RGB, _mix, _shade

#: PNG text chunk of a storyboard portrait card: the figure it shows (an Identity as JSON).
FIGURE_KEY = "reelforge-figure"
#: Silhouettes and marks a character's figure is drawn with.
SHAPES = ("coat", "broad", "slim")
MARKS = ("circle", "diamond", "bar")


class Identity(NamedTuple):
    """How one character is drawn in every shot: a colour, a silhouette and a mark."""

    colour: RGB
    shape: str
    mark: str

    def to_json(self) -> str:
        return json.dumps({"colour": list(self.colour), "shape": self.shape, "mark": self.mark})

    @classmethod
    def from_json(cls, text: str) -> "Identity | None":
        try:
            data = json.loads(text)
            colour = tuple(int(c) for c in data["colour"])
            if len(colour) != 3 or not all(0 <= c <= 255 for c in colour) or data["shape"] not in SHAPES \
                    or data["mark"] not in MARKS:
                return None
            return cls(colour, data["shape"], data["mark"])  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            return None


def _colour(hue: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.78, 0.88)
    return int(r * 255), int(g * 255), int(b * 255)


def identity_for(index: int, seed: int) -> Identity:
    """The figure of the ``index``-th character of a story (from 1) drawn with ``seed``:
    hues a golden-ratio step apart, so the first characters never look alike; the seed
    nudges the hue (a portrait made again with a new seed looks a little different)."""
    k = max(0, index - 1)
    hue = k * 0.381966 + (seed % 997) / 997 * 0.08
    return Identity(_colour(hue), SHAPES[k % 3], MARKS[(k // 3 + seed) % 3])


def identity_from_digest(sha256: str) -> Identity:
    """The figure of a portrait the storyboard did not draw (the user's own picture)."""
    n = int(sha256[:12], 16)
    return Identity(_colour((n & 0xFFFFFF) / 0x1000000), SHAPES[(n >> 24) % 3], MARKS[(n >> 32) % 3])


def identity_of(path, sha256: str) -> Identity:
    """The figure a portrait card shows (its PNG text chunk), else one from its digest."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}).get(FIGURE_KEY)
    except Exception:
        text = None
    return (Identity.from_json(text) if text else None) or identity_from_digest(sha256)


def subject(look: Look, img, draw, horizon: int, identities: dict[str, Identity] | None = None) -> None:
    """The shot's people (a character with an identity is drawn as that character)."""
    w, h, rng = look.w, look.h, look.rng
    cast = list(look.shot.characters[:3])
    figure = look.figure_colour()
    rim = _mix(look.accent(1.3), (255, 255, 255), 0.3)
    ids = identities or {}

    def who(i: int) -> Identity | None:
        return ids.get(cast[i]) if i < len(cast) else None

    if look.kind == "detail":
        detail_object(look, draw, horizon)
        return
    if look.kind == "closeup":
        # Head and shoulders filling the frame, a third in from one side, eyes on the upper third.
        cx = int(w * rng.choice((0.36, 0.64)))
        person(look, draw, cx, int(h * 0.14), int(h * 0.36), figure, rim, detail=True, identity=who(0))
        return
    if look.kind == "medium":
        n = max(1, min(2, len(cast)))
        for i in range(n):
            cx = int(w * (0.36 + 0.28 * i if n == 2 else rng.choice((0.4, 0.6))))
            person(look, draw, cx, int(h * rng.uniform(0.2, 0.26)), int(h * 0.15), figure, rim, detail=True,
                   identity=who(i))
        return
    if not cast and look.kind in ("wide", "aerial"):
        return
    count = max(1, len(cast))
    sizes = {"aerial": 0.06, "wide": 0.2, "low": 0.62, "silhouette": 0.36}
    for i in range(count):
        fh = int(h * sizes.get(look.kind, 0.2) * rng.uniform(0.9, 1.1))
        fx = int(w * (0.3 + 0.4 * rng.random())) + int((i - (count - 1) / 2) * fh * 0.5)
        base = {"low": int(h * 1.02), "aerial": int(horizon + (h - horizon) * 0.45)}.get(look.kind, int(h * 0.78))
        person(look, draw, fx, base - fh, max(3, fh // 7), figure, rim if look.kind == "low" else None,
               identity=who(i))


#: How each silhouette shapes the torso: (half width, in heads; taper at the bottom).
_TORSO = {"coat": (1.25, 0.82), "broad": (1.55, 1.0), "slim": (0.95, 0.55)}


def person(look: Look, draw, cx: int, top: int, head: int, colour: RGB, rim: RGB | None,
           detail: bool = False, identity: Identity | None = None) -> None:
    """A figure whose head (``head`` pixels tall) starts at ``top``; the body runs on
    down, off the bottom of the frame for close and medium framings. A character's
    ``identity`` gives the figure its colour, silhouette and the mark on its chest."""
    head = max(3, head)
    height = head * 7
    feet = top + height
    neck_y = top + int(head * 1.05)
    shoulder_y = neck_y + head // 4
    width, taper = _TORSO[identity.shape] if identity is not None else _TORSO["coat"]
    if identity is not None:
        colour = identity.colour
    half = int(head * width)
    bottom = min(feet, look.h + head)
    # torso: shoulders rounded, a slight taper to the waist and on down
    draw.polygon([(cx - half, shoulder_y + head // 3), (cx + half, shoulder_y + head // 3),
                  (cx + int(half * taper), bottom), (cx - int(half * taper), bottom)], fill=colour)
    draw.ellipse((cx - half, shoulder_y, cx - half + head * 2 // 3, shoulder_y + head * 2 // 3), fill=colour)
    draw.ellipse((cx + half - head * 2 // 3, shoulder_y, cx + half, shoulder_y + head * 2 // 3), fill=colour)
    draw.rectangle((cx - half + head // 3, shoulder_y, cx + half - head // 3, shoulder_y + head // 2), fill=colour)
    draw.rectangle((cx - head // 5, neck_y - head // 5, cx + head // 5, shoulder_y + head // 5), fill=colour)
    draw.ellipse((cx - int(head * 0.42), top, cx + int(head * 0.42), top + int(head * 1.1)), fill=colour)
    if rim is not None:
        side = 1 if cx < look.w / 2 else -1
        width = max(1, head // 16)
        draw.arc((cx - int(head * 0.42), top, cx + int(head * 0.42), top + int(head * 1.1)),
                 -80 if side > 0 else 100, 60 if side > 0 else 260, fill=rim, width=width)
        edge = cx + side * half
        draw.line((edge, shoulder_y + head // 3, cx + side * int(half * taper), bottom), fill=rim, width=width)
    if identity is not None:
        _mark(draw, identity.mark, cx, shoulder_y + head, max(2, head // 3))
    if detail and identity is None:
        # A collar in the film's accent colour.
        draw.polygon([(cx - head // 2, shoulder_y), (cx, shoulder_y + head // 2), (cx + head // 2, shoulder_y),
                      (cx + head // 3, shoulder_y + head * 3 // 4), (cx - head // 3, shoulder_y + head * 3 // 4)],
                     fill=look.accent(0.8))


#: The mark's colour: light on every character's colour.
MARK_COLOUR: RGB = (250, 248, 240)


def _mark(draw, mark: str, cx: int, cy: int, r: int) -> None:
    """A character's mark on the chest: a disc, a diamond or a bar."""
    if mark == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=MARK_COLOUR)
    elif mark == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=MARK_COLOUR)
    else:
        draw.rectangle((cx - r * 2, cy - max(1, r // 2), cx + r * 2, cy + max(1, r // 2)), fill=MARK_COLOUR)


def detail_object(look: Look, draw, horizon: int) -> None:
    """A single object large in frame: a lantern-like glow on a surface."""
    w, h, rng = look.w, look.h, look.rng
    table = _shade(look.land(0.7), v=0.9)
    draw.rectangle((0, int(h * 0.68), w, h), fill=table)
    cx, cy = int(w * rng.uniform(0.4, 0.6)), int(h * 0.45)
    r = int(h * 0.2)
    glow = look.accent(1.3)
    for k in range(6, 0, -1):
        draw.ellipse((cx - r - k * r // 4, cy - r - k * r // 4, cx + r + k * r // 4, cy + r + k * r // 4),
                     fill=_mix(look.colours()[0], glow, 0.08 * (7 - k)))
    body = _shade(look.land(1.0), v=0.8)
    draw.rounded_rectangle((cx - r // 2, cy - r, cx + r // 2, int(h * 0.7)), radius=r // 6, fill=body)
    draw.rounded_rectangle((cx - r // 3, cy - int(r * 0.75), cx + r // 3, int(h * 0.64)), radius=r // 8,
                           fill=_mix(glow, (255, 250, 230), 0.4))
    draw.ellipse((cx - r // 2, int(h * 0.66), cx + r // 2, int(h * 0.74)), fill=_shade(body, v=0.7))
