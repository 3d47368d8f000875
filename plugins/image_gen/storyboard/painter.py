"""The plate: one shot's picture without any text, painted in order (sky, far and near
layers, landmarks, figures) with the depth of field and vignette of its framing."""

from __future__ import annotations

import random

from reelforge.plugins.image_gen.storyboard import backdrop, figures
from reelforge.plugins.image_gen.storyboard.look import Look
from reelforge.plugins.image_gen.storyboard.palette import RGB
from reelforge.records import Shot


class _Painter:
    """Draws one plate: sky, far and near layers, landmarks and figures."""

    def __init__(self, shot: Shot, size: tuple[int, int], identities: dict | None = None):
        self.look = Look(shot, size)
        self.identities = identities or {}
        "How each character the shot names is drawn (figures.Identity by name), from their portraits."

    def figure_colour(self) -> RGB:
        return self.look.figure_colour()

    def paint(self):
        from PIL import Image, ImageDraw, ImageFilter, ImageOps

        look = self.look
        w, h = look.w, look.h
        top, bottom = look.colours()
        img = Image.composite(Image.new("RGB", (w, h), bottom), Image.new("RGB", (w, h), top),
                              Image.linear_gradient("L").resize((w, h)))
        draw = ImageDraw.Draw(img)
        horizon = look.horizon()
        if "interior" in look.where and "space" not in look.where:
            backdrop.interior(look, draw, horizon)
        else:
            backdrop.sky(look, draw, horizon)
            backdrop.landscape(look, draw, horizon)
        img = seeded_light(img, look.shot.seed)  # the backdrop's light; the figures keep their colours
        draw = ImageDraw.Draw(img)
        if look.kind in ("closeup", "detail", "medium"):
            # Shallow depth of field: the background goes soft behind the subject.
            img = img.filter(ImageFilter.GaussianBlur(radius={"closeup": 9, "detail": 12, "medium": 3}[look.kind] * h / 720))
            draw = ImageDraw.Draw(img)
        if look.storm and "interior" not in look.where:
            backdrop.rain(look, draw)
        figures.subject(look, img, draw, horizon, self.identities)
        if look.kind in ("closeup", "detail", "silhouette", "low"):
            vignette(img)
        if random.Random(f"storyboard-mirror\x1f{look.shot.seed}").random() < 0.5:
            img = ImageOps.mirror(img)  # composition: the scene seen from the other side
        return img


def seeded_light(img, seed: int):
    """The light the seed picks for the backdrop: a soft warm or cool key light from the
    left, right or above (with the mirroring in :meth:`_Painter.paint`, another seed gives
    another picture of the same shot)."""
    from PIL import Image

    rng = random.Random(f"storyboard-light\x1f{seed}")
    w, h = img.size
    side = rng.choice(("left", "right", "top"))
    tint = rng.choice(((255, 214, 160), (255, 236, 200), (176, 204, 255)))
    strength = rng.uniform(0.10, 0.22)
    ramp = Image.linear_gradient("L")  # 0 at the top, 255 at the bottom
    ramp = {"left": ramp.rotate(-90), "right": ramp.rotate(90), "top": ramp}[side].resize((w, h))
    mask = ramp.point(lambda v: int((255 - v) * strength))
    return Image.composite(Image.new("RGB", (w, h), tint), img, mask)


def vignette(img) -> None:
    """Darken the corners of ``img`` in place, as a lens does."""
    from PIL import Image

    w, h = img.size
    mask = Image.radial_gradient("L").resize((w, h)).point(lambda d: int(min(255, max(0, (d - 140) * 1.6))))
    img.paste(Image.composite(Image.new("RGB", (w, h), (0, 0, 0)), img, mask))
