"""The plate's backdrop: the sky (stars, storm clouds and lightning, sun or moon, clouds), the
ground in far and near layers (hills, peaks, dunes, skyline, trees, the sea), landmarks (the
lighthouse), an interior with its window, and rain. Each routine draws with a :class:`Look`."""

from __future__ import annotations

import colorsys
import math

from reelforge.plugins.image_gen.storyboard.look import Look
from reelforge.plugins.image_gen.storyboard.palette import RGB, _mix, _rgb, _shade

# -- sky -------------------------------------------------------------------------

def sky(look: Look, draw, horizon: int) -> None:
    w, h, rng = look.w, look.h, look.rng
    if look.night or "space" in look.where:
        for _ in range(int(140 * w / 1280)):
            x, y = rng.randrange(w), rng.randrange(max(1, horizon))
            r = rng.choice((1, 1, 1, 2))
            draw.ellipse((x, y, x + r, y + r), fill=_mix((255, 255, 240), look.colours()[0], rng.uniform(0, 0.5)))
    if look.storm:
        for _ in range(7):  # heavy cloud banks
            cx, cy = rng.randrange(-w // 8, w + w // 8), rng.randrange(-h // 10, max(1, horizon // 2))
            rw, rh = rng.randint(w // 5, w // 2), rng.randint(h // 12, h // 6)
            draw.ellipse((cx - rw, cy - rh, cx + rw, cy + rh), fill=_mix(look.colours()[0], (30, 32, 38), rng.uniform(0.1, 0.5)))
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
    glow = (235, 235, 245) if look.night else _mix(look.accent(1.2), (255, 246, 215), 0.8)
    top, bottom = look.colours()
    for k in range(5, 0, -1):
        draw.ellipse((cx - r - k * r // 2, cy - r - k * r // 2, cx + r + k * r // 2, cy + r + k * r // 2),
                     fill=_mix(bottom if cy > horizon / 2 else top, glow, 0.12 * (6 - k)))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=glow)
    if look.time in ("day", "dawn") and "space" not in look.where:
        for _ in range(rng.randint(2, 4)):  # a few soft clouds
            x0, y0 = rng.randrange(w), rng.randint(int(h * 0.05), max(int(h * 0.06), horizon // 2))
            for j in range(4):
                rr = rng.randint(h // 30, h // 16)
                draw.ellipse((x0 + j * rr - rr, y0 - rr // 2, x0 + j * rr + rr, y0 + rr // 2),
                             fill=_mix(look.colours()[1], (255, 255, 255), 0.6))


# -- ground layers -----------------------------------------------------------------

def landscape(look: Look, draw, horizon: int) -> None:
    w, h, where = look.w, look.h, look.where
    if "space" in where:
        # A planet's limb across the lower frame.
        r = int(w * 0.9)
        cy = horizon + r - int(h * 0.08)
        draw.ellipse((w // 2 - r, cy - r, w // 2 + r, cy + r), fill=look.land(0.4))
        draw.arc((w // 2 - r, cy - r, w // 2 + r, cy + r), 200, 340, fill=look.accent(1.2), width=max(2, h // 120))
        return
    far = look.land(0.0)
    if "mountain" in where or "snow" in where:
        peaks(look, draw, horizon, far, snow=("snow" in where or "mountain" in where))
    elif "desert" in where:
        dunes(look, draw, horizon, far)
    else:
        hills(look, draw, horizon, far, amp=0.06)
    if "city" in where:
        skyline(look, draw, horizon, look.land(0.35))
    if "forest" in where:
        trees(look, draw, horizon, look.land(0.5), count=int(26 * w / 1280))
    if "sea" in where:
        sea(look, draw, horizon)
    else:
        hills(look, draw, horizon + int((h - horizon) * 0.35), look.land(0.75), amp=0.05)
        if "forest" in where:
            trees(look, draw, horizon + int((h - horizon) * 0.45), look.land(0.9), count=int(9 * w / 1280), big=True)
    if "lighthouse" in where:
        lighthouse(look, draw, horizon)


def hills(look: Look, draw, base: int, colour: RGB, amp: float) -> None:
    w, h, rng = look.w, look.h, look.rng
    steps = rng.randint(5, 9)
    points = [(0, h)]
    for i in range(steps + 1):
        points.append((int(w * i / steps), base - int(rng.uniform(0, h * amp))))
    points.append((w, h))
    draw.polygon(points, fill=colour)


def peaks(look: Look, draw, base: int, colour: RGB, snow: bool) -> None:
    w, h, rng = look.w, look.h, look.rng
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


def dunes(look: Look, draw, base: int, colour: RGB) -> None:
    w, h, rng = look.w, look.h, look.rng
    sand = _mix(colour, (220, 180, 120), 0.55)
    for layer in range(3):
        y0 = base + int(layer * (h - base) * 0.3)
        shade = _shade(sand, v=1.0 - 0.15 * layer)
        points = [(0, h)]
        for i in range(0, w + 1, max(8, w // 64)):
            points.append((i, y0 - int(h * 0.04 * (1 + math.sin(i / w * math.pi * rng.uniform(1.5, 3) + layer)))))
        points.append((w, h))
        draw.polygon(points, fill=shade)


def skyline(look: Look, draw, base: int, colour: RGB) -> None:
    w, h, rng = look.w, look.h, look.rng
    lit = _mix(look.accent(1.3), (255, 220, 140), 0.5)
    x = -rng.randint(0, 40)
    scale = 0.5 if look.kind == "aerial" else 1.0
    while x < w:
        bw = rng.randint(w // 40, w // 14)
        bh = int(rng.randint(h // 12, h // 4) * scale)
        draw.rectangle((x, base - bh, x + bw, base + h // 20), fill=colour)
        if rng.random() < 0.2:  # a dome or a tower top
            draw.ellipse((x, base - bh - bw // 2, x + bw, base - bh + bw // 2), fill=colour)
        if look.night or look.time == "dusk" or look.storm:
            for wy in range(base - bh + 6, base - 4, max(6, h // 70)):
                for wx in range(x + 4, x + bw - 4, max(6, w // 120)):
                    if rng.random() < 0.3:
                        draw.rectangle((wx, wy, wx + 2, wy + 3), fill=lit)
        x += bw + rng.randint(0, w // 80)


def trees(look: Look, draw, base: int, colour: RGB, count: int, big: bool = False) -> None:
    w, h, rng = look.w, look.h, look.rng
    for _ in range(count):
        x = rng.randrange(-20, w + 20)
        th = rng.randint(h // 10, h // 5) * (2 if big else 1) * (0.5 if look.kind == "aerial" else 1)
        tw = th // 3
        y = base + rng.randint(-h // 60, h // 40)
        draw.polygon([(x - tw, y), (x, y - th), (x + tw, y)], fill=_shade(colour, v=rng.uniform(0.85, 1.1)))
        draw.rectangle((x - tw // 8, y, x + tw // 8, y + th // 8), fill=_shade(colour, v=0.6))


def sea(look: Look, draw, horizon: int) -> None:
    w, h, rng = look.w, look.h, look.rng
    # Water: the film's primary colour pulled towards sea blue.
    wh, ws, _ = colorsys.rgb_to_hsv(*(x / 255 for x in _mix(look.palette.primary, (25, 95, 150), 0.55)))
    water_top = _rgb(wh, min(1, ws * 0.8 + 0.15), 0.45 * (0.5 if look.night else 1) * (0.7 if look.storm else 1))
    water_bot = _shade(water_top, v=0.45)
    for i in range(horizon, h):
        draw.line((0, i, w, i), fill=_mix(water_top, water_bot, (i - horizon) / max(1, h - horizon)))
    crest = _mix(water_top, (240, 245, 250), 0.6 if look.storm else 0.45)
    n = 60 if look.storm else 30
    for _ in range(int(n * w / 1280)):
        y0 = rng.randint(horizon + 4, h - 4)
        near = (y0 - horizon) / max(1, h - horizon)
        length = int((20 + 120 * near) * w / 1280)
        x0 = rng.randrange(-length, w)
        draw.arc((x0, y0, x0 + length, y0 + max(4, int(18 * near))), 200, 340, fill=crest,
                 width=max(1, int((1 + 3 * near) * h / 720)))
    if not look.storm and not look.night:  # sun path on the water
        draw.polygon([(w // 2 - w // 50, horizon), (w // 2 + w // 50, horizon), (w // 2 + w // 8, h),
                      (w // 2 - w // 8, h)], fill=_mix(water_top, look.accent(1.2), 0.25))


def lighthouse(look: Look, draw, horizon: int) -> None:
    w, h, rng = look.w, look.h, look.rng
    scale = {"aerial": 0.45, "wide": 1.0, "low": 1.6, "silhouette": 1.2}.get(look.kind, 0.8)
    x = int(w * rng.choice((0.22, 0.72)))
    tower_h = int(h * 0.36 * scale)
    base_w, top_w = int(h * 0.07 * scale), int(h * 0.045 * scale)
    ground = horizon + int(h * (0.25 if look.kind == "aerial" else 0.02))
    rock = look.land(0.85)
    draw.ellipse((x - base_w * 3, ground - base_w // 2, x + base_w * 3, ground + base_w), fill=rock)
    body = (230, 228, 220) if look.kind != "silhouette" else look.land(1.0)
    stripe = look.accent(0.9) if look.kind != "silhouette" else body
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
                 fill=look.land(1.0))
    if look.night or look.storm or look.time == "dusk":
        side = 1 if x < w / 2 else -1
        beam = [(x, top_y - lamp_h // 2), (x + side * w, top_y - lamp_h * 3), (x + side * w, top_y + lamp_h * 3)]
        draw.polygon(beam, fill=_mix(look.colours()[1], lamp, 0.35))


def interior(look: Look, draw, horizon: int) -> None:
    w, h, rng = look.w, look.h, look.rng
    wall = _shade(look.land(0.2), v=1.3, s=0.7)
    floor = look.land(0.8)
    draw.rectangle((0, 0, w, horizon), fill=wall)
    draw.rectangle((0, horizon, w, h), fill=floor)
    for i in range(0, w, max(20, w // 14)):  # floorboards in perspective
        draw.line((w // 2 + (i - w // 2) // 4, horizon, i, h), fill=_shade(floor, v=0.8), width=1)
    # A window onto the sky outside (night: dark with a moon, day: bright).
    ww, wh = int(w * 0.22), int(h * 0.32)
    wx, wy = int(w * rng.choice((0.12, 0.62))), int(horizon * 0.25)
    outside = look.colours()[1] if not look.night else _rgb(look.palette.hsv("primary")[0], 0.6, 0.25)
    draw.rectangle((wx, wy, wx + ww, wy + wh), fill=outside)
    if look.storm:
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
                 fill=_mix(floor, look.accent(1.3), 0.25))


def rain(look: Look, draw) -> None:
    w, h, rng = look.w, look.h, look.rng
    colour = _mix(look.colours()[1], (220, 225, 235), 0.5)
    for _ in range(int(260 * w / 1280)):
        x, y = rng.randrange(-w // 10, w), rng.randrange(-h // 10, h)
        L = rng.randint(h // 40, h // 18)
        draw.line((x, y, x + L // 4, y + L), fill=colour, width=1)

