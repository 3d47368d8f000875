"""The storyboard card's furniture drawn over a frame: header and caption bands, corner
marks, shot number, scene and length, caption, camera note and motion arrow. The
``kenburns`` renderer draws it over each frame *after* its zoom and pan, so no camera move
ever crops a caption."""

from __future__ import annotations

import functools
from typing import NamedTuple

from reelforge.plugins.image_gen.storyboard.scene import prompt_head
from reelforge.records import Shot


@functools.lru_cache(maxsize=16)
def font(size: int):
    """The shipped DejaVu Sans at ``size`` (Pillow's embedded font if it cannot be read)."""
    from PIL import ImageFont

    from reelforge.media.fonts import font as shipped

    try:
        return shipped(size)
    except OSError:
        return ImageFont.load_default(size=size)


def _wrap(draw, text: str, fnt, width: int, max_lines: int) -> list[str]:
    from reelforge.media.soundtrack import wrap_text

    return wrap_text(draw, " ".join(text.split()), fnt, width, max_lines) if text.split() else []


def _camera_move(motion_prompt: str) -> str:
    low = motion_prompt.lower()
    for move in ("push in", "pull out", "pan left", "pan right", "tilt up", "tilt down"):
        if move in low:
            return move
    return ""


class CardText(NamedTuple):
    """The words a storyboard card shows, as drawn (the caption and camera note before
    they are wrapped to the card's width)."""

    number: str
    "SHOT 003"
    label: str
    "SCENE s2 · 3.0 s · STORYBOARD"
    caption: str
    "What the picture shows: the start of the image prompt."
    camera: str
    "CAMERA: the motion prompt (or static)."


def caption_of(shot: Shot) -> str:
    """What the card says the picture shows: the first clauses of the image prompt (what the
    plate is drawn from), or the description for a shot without an image prompt."""
    head = ", ".join(prompt_head(shot.image_prompt, 2)).strip().rstrip(".;,")
    text = " ".join((head or shot.description).split())
    return text[:1].upper() + text[1:]


def card_text(shot: Shot, *, duration_s: float | None = None) -> CardText:
    """The words :func:`card_overlay` draws for ``shot``."""
    seconds = shot.duration_s if duration_s is None else duration_s
    return CardText(number=f"SHOT {shot.id:03d}",
                    label=f"SCENE {shot.scene_id}   ·   {seconds:.1f} s   ·   STORYBOARD",
                    caption=caption_of(shot), camera=f"CAMERA: {shot.motion_prompt or 'static'}")


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


def card_overlay(shot: Shot, size: tuple[int, int], *, duration_s: float | None = None,
                 layer: str = "all", caption: str | None = None):
    """The storyboard card's furniture for ``shot`` as a transparent RGBA image of ``size``:
    ``layer="bands"`` the header and caption bands, corner marks and frame; ``"text"`` the
    shot number, scene and length, caption, camera note and motion arrow; ``"all"`` both.
    Everything lies inside the frame with a margin, whatever the text's length. ``caption``
    replaces the one read from the shot (the renderer passes the one its plate records)."""
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
        words = card_text(shot, duration_s=duration_s)
        if caption is not None:
            words = words._replace(caption=caption)
        label_w = draw.textlength(words.label, font=small)
        draw.text((lay.pad, lay.header // 2), words.number, font=big, fill=accent, anchor="lm")
        if lay.pad * 3 + draw.textlength(words.number, font=big) + label_w <= w:
            draw.text((w - lay.pad, lay.header // 2), words.label, font=small, fill=grey, anchor="rm")
        y = h - lay.caption + int(14 * s)
        for line in _wrap(draw, words.caption, mid, w - 2 * lay.pad, 2):
            draw.text((lay.pad, y), line, font=mid, fill=white)
            y += int(32 * s)
        camera_line = _wrap(draw, words.camera, small, w - 2 * lay.pad, 1)[0]
        draw.text((lay.pad, h - lay.pad), camera_line, font=small, fill=accent, anchor="ls")
        move = _camera_move(shot.motion_prompt or "static")
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


def portrait_card(shot: Shot, identity, size: tuple[int, int]):
    """A character's portrait card (the cast step's picture): the character's figure
    (``identity``: colour, silhouette, mark) head and shoulders on a plain ground, with
    the name and description below. A PIL RGB image of ``size``."""
    from PIL import Image, ImageDraw

    from reelforge.plugins.image_gen.storyboard.figures import person
    from reelforge.plugins.image_gen.storyboard.look import Look

    w, h = size
    img = Image.new("RGB", (w, h), (214, 210, 200))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, int(h * 0.7), w, h), fill=(32, 32, 38))
    look = Look(shot, size)
    person(look, draw, w // 2, int(h * 0.08), int(h * 0.2), identity.colour, None, detail=True, identity=identity)
    draw.rectangle((0, int(h * 0.74), w, h), fill=(24, 24, 30))
    s = h / 720
    name = shot.characters[0] if shot.characters else shot.description
    draw.text((int(24 * s), int(h * 0.76)), f"CAST · {name}", font=font(max(10, int(34 * s))), fill=identity.colour)
    description = shot.description.split(":", 1)[-1].strip()
    y = int(h * 0.76) + int(48 * s)
    for line in _wrap(draw, description, font(max(9, int(22 * s))), w - int(48 * s), 3):
        draw.text((int(24 * s), y), line, font=font(max(9, int(22 * s))), fill=(235, 235, 230))
        y += int(30 * s)
    return img
