"""The plate's subject, who or what the shot is about: people framed by the shot type (a head
and shoulders for a close-up, small figures for a wide shot) or a single object for a detail
shot. Each routine draws with a :class:`Look`."""

from __future__ import annotations

from reelforge.plugins.image_gen.storyboard.look import Look
from reelforge.plugins.image_gen.storyboard.palette import RGB, _mix, _shade


def subject(look: Look, img, draw, horizon: int) -> None:
    w, h, rng = look.w, look.h, look.rng
    cast = list(look.shot.characters[:3])
    figure = look.figure_colour()
    rim = _mix(look.accent(1.3), (255, 255, 255), 0.3)
    if look.kind == "detail":
        detail_object(look, draw, horizon)
        return
    if look.kind == "closeup":
        # Head and shoulders filling the frame, a third in from one side, eyes on the upper third.
        cx = int(w * rng.choice((0.36, 0.64)))
        person(look, draw, cx, int(h * 0.14), int(h * 0.36), figure, rim, detail=True)
        return
    if look.kind == "medium":
        n = max(1, min(2, len(cast)))
        for i in range(n):
            cx = int(w * (0.36 + 0.28 * i if n == 2 else rng.choice((0.4, 0.6))))
            person(look, draw, cx, int(h * rng.uniform(0.2, 0.26)), int(h * 0.15), figure, rim, detail=True)
        return
    if not cast and look.kind in ("wide", "aerial"):
        return
    count = max(1, len(cast))
    sizes = {"aerial": 0.06, "wide": 0.2, "low": 0.62, "silhouette": 0.36}
    for i in range(count):
        fh = int(h * sizes.get(look.kind, 0.2) * rng.uniform(0.9, 1.1))
        fx = int(w * (0.3 + 0.4 * rng.random())) + int((i - (count - 1) / 2) * fh * 0.5)
        base = {"low": int(h * 1.02), "aerial": int(horizon + (h - horizon) * 0.45)}.get(look.kind, int(h * 0.78))
        person(look, draw, fx, base - fh, max(3, fh // 7), figure, rim if look.kind == "low" else None)


def person(look: Look, draw, cx: int, top: int, head: int, colour: RGB, rim: RGB | None,
           detail: bool = False) -> None:
    """A figure whose head (``head`` pixels tall) starts at ``top``; the body runs on
    down, off the bottom of the frame for close and medium framings."""
    head = max(3, head)
    height = head * 7
    feet = top + height
    neck_y = top + int(head * 1.05)
    shoulder_y = neck_y + head // 4
    half = int(head * 1.25)
    bottom = min(feet, look.h + head)
    # torso: shoulders rounded, a slight taper to the waist and on down
    draw.polygon([(cx - half, shoulder_y + head // 3), (cx + half, shoulder_y + head // 3),
                  (cx + int(half * 0.82), bottom), (cx - int(half * 0.82), bottom)], fill=colour)
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
        draw.line((edge, shoulder_y + head // 3, cx + side * int(half * 0.82), bottom), fill=rim, width=width)
    if detail:
        # A collar in the film's accent colour.
        draw.polygon([(cx - head // 2, shoulder_y), (cx, shoulder_y + head // 2), (cx + head // 2, shoulder_y),
                      (cx + head // 3, shoulder_y + head * 3 // 4), (cx - head // 3, shoulder_y + head * 3 // 4)],
                     fill=look.accent(0.8))


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
