"""The ``storyboard`` image generator: draws a storyboard card per shot with Pillow.

Palette and composition come from a hash of the shot's prompt, so the same shot always
gives the same picture. No model, GPU or network; the font is Pillow's embedded one.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import os
import random
from pathlib import Path
from typing import ClassVar

import attrs

from framework import hookimpl
from framework.errors import StageError
from framework.limits import MAX_SIDE, between, check_frame_size
from framework.protocols import ShotJob
from framework.records import Shot

_CITY_WORDS = ("city", "market", "street", "village", "station", "palace", "temple", "harbour",
               "harbor", "town", "quays", "warehouse", "gate", "walls", "rooftop", "corridor")
_SEA_WORDS = ("sea", "ocean", "wave", "beach", "pier", "lake", "river", "harbour", "harbor", "swell")


@functools.lru_cache(maxsize=16)
def font(size: int):
    """Pillow's embedded TrueType font at ``size`` (no system fonts); the bitmap default
    when Pillow was built without FreeType."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, max(0.0, min(1.0, s)), max(0.0, min(1.0, v)))
    return int(r * 255), int(g * 255), int(b * 255)


def _wrap(draw, text: str, fnt, width: int, max_lines: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if draw.textlength(trial, font=fnt) <= width or not current:
            current = trial
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + "…", font=fnt) > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "…"
    return lines


def _camera_move(motion_prompt: str) -> str:
    low = motion_prompt.lower()
    for move in ("push in", "pull out", "pan left", "pan right", "tilt up", "tilt down"):
        if move in low:
            return move
    return ""


@attrs.frozen
class StoryboardOptions:
    width: int = attrs.field(default=1280, validator=between(64, MAX_SIDE))
    "Frame width in pixels (64 to 8192)."
    height: int = attrs.field(default=720, validator=between(64, MAX_SIDE))
    "Frame height in pixels (64 to 8192; width x height at most 35.6 megapixels)."

    def __attrs_post_init__(self) -> None:
        check_frame_size(self.width, self.height, what="storyboard size")


class StoryboardGenerator:
    """Storyboard cards drawn with Pillow: a hash-derived sky, horizon and shapes, with the
    shot number, scene, caption and camera note. Offline and deterministic."""

    name: ClassVar[str] = "storyboard"
    Options: ClassVar[type] = StoryboardOptions
    description: ClassVar[str] = "Storyboard cards drawn with Pillow (offline, deterministic)"
    concurrency: int = 2

    def __init__(self, options: StoryboardOptions | None = None):
        self.options = options if options is not None else StoryboardOptions()

    def generate(self, shot: Shot, job: ShotJob) -> Path:
        out = Path(job.work_dir) / f"shot_{shot.id:03d}.png"
        tmp = out.with_name(out.stem + ".partial.png")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.draw(shot).save(tmp, format="PNG", compress_level=1)
            os.replace(tmp, out)
        except OSError as exc:
            raise StageError(f"could not write the storyboard frame {out}: {exc}") from exc
        return out

    def draw(self, shot: Shot):
        """The card for ``shot`` as a PIL RGB image."""
        from PIL import Image, ImageDraw

        w, h = self.options.width, self.options.height
        digest = hashlib.sha256(f"{shot.image_prompt}\x1f{shot.seed}".encode("utf-8")).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        prompt = shot.image_prompt.lower()
        hue = digest[8] / 255.0
        night = rng.random() < 0.3

        # Sky: a vertical gradient between two related colours.
        top = _rgb(hue, 0.55, 0.25 if night else 0.55)
        bottom = _rgb(hue + rng.uniform(0.05, 0.18), 0.45, 0.45 if night else 0.95)
        grad = Image.linear_gradient("L").resize((w, h))
        img = Image.composite(Image.new("RGB", (w, h), bottom), Image.new("RGB", (w, h), top), grad)
        draw = ImageDraw.Draw(img)

        horizon = int(h * rng.uniform(0.45, 0.6))
        # Sun or moon, with a soft halo.
        cx, cy, r = int(w * rng.uniform(0.15, 0.85)), int(horizon * rng.uniform(0.25, 0.7)), int(h * rng.uniform(0.05, 0.09))
        glow = _rgb(hue + 0.1, 0.25, 1.0)
        for k in range(4, 0, -1):
            halo = tuple(int(c * 0.5 + g * 0.5) for c, g in zip(bottom, glow))
            draw.ellipse((cx - r - k * 10, cy - r - k * 10, cx + r + k * 10, cy + r + k * 10),
                         fill=tuple(int(a + (b - a) * (5 - k) / 6) for a, b in zip(top, halo)))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=glow)

        # Far to near layers, each darker: hills, a skyline or waves as the prompt suggests.
        city = any(word in prompt for word in _CITY_WORDS)
        sea = any(word in prompt for word in _SEA_WORDS)
        for layer in range(3):
            depth = (layer + 1) / 3
            colour = _rgb(hue + 0.5 + layer * 0.04, 0.35 + 0.2 * depth, 0.55 - 0.4 * depth)
            base = horizon + int(layer * (h * 0.8 - horizon) * 0.45)
            if city and layer == 1:
                x = -rng.randint(0, 40)
                while x < w:
                    bw = rng.randint(w // 40, w // 12)
                    bh = rng.randint(h // 16, h // 4)
                    draw.rectangle((x, base - bh, x + bw, h), fill=colour)
                    if rng.random() < 0.25:  # a dome or a tower top
                        draw.ellipse((x, base - bh - bw // 2, x + bw, base - bh + bw // 2), fill=colour)
                    x += bw + rng.randint(0, w // 60)
            elif sea and layer == 2:
                draw.rectangle((0, base, w, h), fill=colour)
                crest = _rgb(hue + 0.5, 0.15, 0.85)
                for _ in range(24):
                    x0, y0 = rng.randint(0, w), rng.randint(base + 8, h - 8)
                    draw.arc((x0, y0, x0 + rng.randint(30, 90), y0 + 16), 200, 340, fill=crest, width=2)
            else:
                points = [(0, h)]
                steps = rng.randint(5, 9)
                for i in range(steps + 1):
                    points.append((int(w * i / steps), base - int(rng.uniform(0, h * 0.12 * (1.2 - depth)))))
                points.append((w, h))
                draw.polygon(points, fill=colour)

        # Characters in frame as simple silhouettes in the foreground.
        figure = _rgb(hue + 0.5, 0.3, 0.08)
        for i, _name in enumerate(shot.characters[:3]):
            fx = int(w * (0.3 + 0.4 * rng.random()) + i * w * 0.08) % w
            fh = int(h * rng.uniform(0.28, 0.42))
            fy = int(h * 0.8)
            head = fh // 7
            draw.ellipse((fx - head // 2, fy - fh, fx + head // 2, fy - fh + head), fill=figure)
            draw.polygon([(fx - head // 2 - 4, fy - fh + head + 4), (fx + head // 2 + 4, fy - fh + head + 4),
                          (fx + head, fy), (fx - head, fy)], fill=figure)

        self._card(img, shot, rng)
        return img

    def _card(self, img, shot: Shot, rng: random.Random) -> None:
        """Storyboard furniture: frame, header, caption, camera note and motion arrow."""
        from PIL import Image, ImageDraw

        w, h = img.size
        overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        od = ImageDraw.Draw(overlay)
        s = h / 720
        pad = int(24 * s)
        head_h = int(54 * s)
        cap_h = int(150 * s)
        od.rectangle((0, 0, w, head_h), fill=(10, 10, 14, 190))
        od.rectangle((0, h - cap_h, w, h), fill=(10, 10, 14, 200))
        img.paste(Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB"))

        draw = ImageDraw.Draw(img)
        white, grey, accent = (245, 245, 240), (185, 185, 190), (255, 196, 64)
        big, mid, small = font(max(10, int(30 * s))), font(max(10, int(24 * s))), font(max(9, int(20 * s)))
        draw.text((pad, head_h // 2), f"SHOT {shot.id:03d}", font=big, fill=accent, anchor="lm")
        label = f"SCENE {shot.scene_id}   ·   {shot.duration_s:g} s   ·   STORYBOARD"
        draw.text((w - pad, head_h // 2), label, font=small, fill=grey, anchor="rm")

        # Safe-area corner marks, as on a storyboard sheet.
        m, L = int(70 * s), int(30 * s)
        for x, y, dx, dy in ((m, head_h + m // 2, 1, 1), (w - m, head_h + m // 2, -1, 1),
                             (m, h - cap_h - m // 2, 1, -1), (w - m, h - cap_h - m // 2, -1, -1)):
            draw.line((x, y, x + dx * L, y), fill=white, width=max(1, int(2 * s)))
            draw.line((x, y, x, y + dy * L), fill=white, width=max(1, int(2 * s)))

        y = h - cap_h + int(16 * s)
        for line in _wrap(draw, shot.description, mid, w - 2 * pad, 2):
            draw.text((pad, y), line, font=mid, fill=white)
            y += int(32 * s)
        camera = shot.motion_prompt or "static"
        draw.text((pad, h - pad), f"CAMERA: {camera}", font=small, fill=accent, anchor="ls")

        move = _camera_move(camera)
        if move:
            self._arrow(draw, move, (w // 2, (head_h + h - cap_h) // 2), int(60 * s), accent, max(2, int(4 * s)))
        draw.rectangle((0, 0, w - 1, h - 1), outline=white, width=max(1, int(3 * s)))

    @staticmethod
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


@hookimpl
def register_image_generators(register):
    register(StoryboardGenerator)
