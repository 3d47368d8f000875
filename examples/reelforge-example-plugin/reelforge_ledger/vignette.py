"""The ``vignette`` image generator: lets another registered image generator (``base``,
storyboard by default) draw each frame, then darkens its corners and adds film grain."""

from __future__ import annotations

import random
from pathlib import Path
from typing import ClassVar

import attrs

from reelforge import ConfigError, Shot, ShotJob, hookimpl
from reelforge.options import parse_pairs, structure_options
from reelforge.engine.plugins import get_backend_class


@attrs.frozen
class VignetteOptions:
    base: str = "storyboard"
    "The image generator that draws the frame: any registered one except vignette."
    base_options: tuple[str, ...] = ()
    "Options for the base, as KEY=VALUE items, e.g. -o vignette.base_options=width=640,height=360."
    strength: float = attrs.field(default=0.8, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    "How dark the corners get: 0 leaves them, 1 turns them black."
    grain: float = attrs.field(default=0.08, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    "Film-grain amount: 0 for none."


class VignetteGenerator:
    """Another image generator's frame with a vignette and film grain (Pillow)."""

    name: ClassVar[str] = "vignette"
    Options: ClassVar[type] = VignetteOptions

    def __init__(self, options: VignetteOptions | None = None):
        self.options = options if options is not None else VignetteOptions()
        if self.options.base == self.name:
            raise ConfigError("vignette cannot use itself as its base; pick another image generator")
        reg = get_backend_class("image", self.options.base)  # unknown name: lists installed ones
        raw = {key: value for _, key, value in parse_pairs(self.options.base_options)}
        base_opts = structure_options(reg.cls.Options, raw, what=f"vignette's base {reg.name!r}")
        self.base = reg.cls(base_opts)
        self.concurrency = getattr(self.base, "concurrency", 1)

    def generate(self, shot: Shot, job: ShotJob) -> Path:
        from PIL import Image, ImageChops

        # The base gets the same job: its checkpoints, progress and cancellation pass through.
        frame = Path(self.base.generate(shot, job))
        with Image.open(frame) as im:
            img = im.convert("RGB")
        w, h = img.size
        # Vignette: a radial distance map (0 in the centre), squared, as a mask towards black.
        k = self.options.strength
        mask = Image.radial_gradient("L").resize((w, h)).point(
            lambda d: int(255 * k * min(1.0, max(0.0, d / 255 - 0.3) / 0.7) ** 1.5))
        img = Image.composite(Image.new("RGB", (w, h)), img, mask)
        if self.options.grain:
            # Seeded noise, so the same shot always gets the same grain.
            noise = Image.frombytes("L", (w, h), random.Random(shot.seed).randbytes(w * h))
            amp = self.options.grain
            noise = noise.point(lambda v: int(128 + (v - 128) * amp))
            img = ImageChops.add(img, Image.merge("RGB", (noise,) * 3), offset=-128)
        out = Path(job.work_dir) / f"shot_{shot.id:03d}.vignette.png"
        img.save(out, format="PNG")
        return out


@hookimpl
def register_image_generators(register):
    register(VignetteGenerator)
