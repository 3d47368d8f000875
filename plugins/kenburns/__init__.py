"""The ``kenburns`` renderer: turns each still into an H.264 clip with a slow zoom or pan,
using the ffmpeg binary imageio-ffmpeg ships. Offline, CPU only.

Over a storyboard plate it draws the storyboard card (shot number, caption, camera note)
*after* the zoom and pan, at the clip's own resolution: the move never crops the text, and
the text stays sharp. Drawing the text into the still instead would need a safe area that
shrinks with the zoom (at zoom 1.15 a pan sweeps 13 % of the width off each side, and at
zoom 2 or more no area of the still stays in view for the whole pan), and it would be
magnified along with the picture.

The ffmpeg helpers (run_ffmpeg, probe, assemble) live in :mod:`reelforge.media.ffmpeg`.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path
from typing import ClassVar

import attrs

from reelforge import hookimpl
from reelforge.errors import StageError
from reelforge.limits import MAX_FPS, MAX_SIDE, between, check_frame_size
from reelforge.protocols import ShotJob
from reelforge.records import Shot

from reelforge.media.ffmpeg import FFmpegCancelled, FFmpegProgress, run_ffmpeg

__all__ = ["KenBurnsRenderer", "KenBurnsOptions", "FFmpegCancelled", "camera_move", "MOVES"]

#: Camera moves, matched in this order against the shot's motion prompt.
MOVES: tuple[str, ...] = ("push in", "pull out", "pan left", "pan right", "tilt up", "tilt down")
_SYNONYMS = {"zoom in": "push in", "dolly in": "push in", "zoom out": "pull out",
             "dolly out": "pull out", "truck left": "pan left", "truck right": "pan right",
             "pedestal up": "tilt up", "pedestal down": "tilt down"}


def camera_move(shot: Shot) -> str:
    """The move for ``shot``: the first one its motion prompt names, else one picked from a
    hash of the shot (so the same shot always moves the same way)."""
    text = shot.motion_prompt.lower()
    found = [(text.find(m), m) for m in MOVES if m in text]
    found += [(text.find(k), v) for k, v in _SYNONYMS.items() if k in text]
    if found:
        return min(found)[1]
    digest = hashlib.sha256(f"{shot.id}\x1f{shot.seed}\x1f{shot.image_prompt}".encode()).digest()
    return MOVES[digest[0] % len(MOVES)]


def _even(n: int) -> int:
    return max(2, n - n % 2)


@attrs.frozen
class KenBurnsOptions:
    fps: int = attrs.field(default=25, validator=between(1, MAX_FPS))
    "Frames per second of the clip (1 to 120)."
    width: int = attrs.field(default=1280, validator=between(16, MAX_SIDE))
    "Clip width in pixels (16 to 8192, rounded down to even)."
    height: int = attrs.field(default=720, validator=between(16, MAX_SIDE))
    "Clip height in pixels (16 to 8192, rounded down to even; width x height at most 35.6 megapixels)."
    zoom: float = attrs.field(default=1.15, validator=[attrs.validators.ge(1.0), attrs.validators.le(3.0)])
    "How far the camera zooms in (push in / pull out) or how much room a pan has (1.0 = none)."
    crf: int = attrs.field(default=20, validator=between(0, 51))
    "x264 quality: lower is better and bigger."
    preset: str = attrs.field(default="veryfast", validator=attrs.validators.in_(
        ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")))
    "x264 speed preset."
    prescale: int = attrs.field(default=2, validator=attrs.validators.in_((1, 2, 3, 4)))
    "Upscale the still by this factor before zooming: zoompan moves in whole pixels, so this smooths the motion."
    captions: str = attrs.field(default="auto", validator=attrs.validators.in_(("auto", "on", "off")))
    "Draw the storyboard card over the moving picture: auto (over storyboard plates only), on, off."
    caption_gap_s: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0.0)))
    """Seconds at each end of the clip without the card's text (the bands stay). Unset (the
    default): none when the film cuts between shots, so the text never blinks at a cut, and
    just over half the film's crossfade at each end when it crossfades, so two shots'
    captions never show at once. A number overrides that."""

    def __attrs_post_init__(self) -> None:
        check_frame_size(self.width, self.height, what="kenburns clip size")


class KenBurnsRenderer:
    """Renders a still into an H.264 MP4 with a slow push in, pull out, pan or tilt
    (chosen from the shot's motion prompt) using ffmpeg's zoompan filter."""

    name: ClassVar[str] = "kenburns"
    Options: ClassVar[type] = KenBurnsOptions
    description: ClassVar[str] = "Ken Burns zoom/pan clips with the bundled ffmpeg (offline, CPU)"
    concurrency: int = 2
    #: The caption drawn over the clip comes from these: a changed one renders it again.
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("description", "characters", "scene_id")
    #: The caption's timing follows the film's crossfade: a changed transition renders again.
    uses_film_overlap: ClassVar[bool] = True
    #: Another seed moves the camera otherwise (how far, and where a push in or pull out aims).
    uses_seed: ClassVar[bool] = True
    #: Each clip moves over the picture it is given: --continuity last-frame may give it the
    #: last frame of the clip before.
    starts_from_image: ClassVar[bool] = True

    def __init__(self, options: KenBurnsOptions | None = None):
        self.options = options if options is not None else KenBurnsOptions()

    def threads(self) -> int:
        """x264 and filter threads per clip: every core. Clips rendered side by side share
        them (x264 loses little to it), and a clip rendered alone, the last of an odd number,
        is not held to its share while the other cores idle."""
        return max(1, os.cpu_count() or 1)

    def draws_card(self, image: Path) -> bool:
        """Whether this clip gets the storyboard card drawn over it."""
        if self.options.captions == "auto":
            from reelforge.plugins.image_gen.storyboard import is_plate

            return is_plate(image)
        return self.options.captions == "on"

    def caption_gap(self, film_overlap_s: float) -> float:
        """Seconds at each end of the clip without the card's text, for a film that lays the
        clip ``film_overlap_s`` over each neighbour: the option if set, else half the overlap
        and one frame more (this clip's text is gone before the next one's arrives), 0 at cuts."""
        if self.options.caption_gap_s is not None:
            return self.options.caption_gap_s
        return film_overlap_s / 2 + 1 / self.options.fps if film_overlap_s > 0 else 0.0

    def filter_graph(self, shot: Shot, frames: int) -> str:
        o = self.options
        w, h = _even(o.width), _even(o.height)
        sw, sh = w * o.prescale, h * o.prescale
        # The seed varies the move (so a redo with a new seed gives another clip): how far it
        # goes (70-130 % of the zoom option) and where it aims (the centre, give or take a fifth).
        vary = random.Random(f"kenburns\x1f{shot.seed}")
        z = f"{min(3.0, 1 + (o.zoom - 1) * vary.uniform(0.7, 1.3)):.4f}"
        last = max(1, frames - 1)
        # Smoothstep easing: the move starts and ends gently, so cuts between clips are calm.
        ease = f"(3*pow(on/{last},2)-2*pow(on/{last},3))"
        centre_x = f"(iw-iw/zoom)*{vary.uniform(0.3, 0.7):.3f}"
        centre_y = f"(ih-ih/zoom)*{vary.uniform(0.3, 0.7):.3f}"
        move = camera_move(shot)
        zexpr, xexpr, yexpr = {
            "push in": (f"1+({z}-1)*{ease}", centre_x, centre_y),
            "pull out": (f"{z}-({z}-1)*{ease}", centre_x, centre_y),
            "pan right": (z, f"(iw-iw/zoom)*{ease}", centre_y),
            "pan left": (z, f"(iw-iw/zoom)*(1-{ease})", centre_y),
            "tilt down": (z, centre_x, f"(ih-ih/zoom)*{ease}"),
            "tilt up": (z, centre_x, f"(ih-ih/zoom)*(1-{ease})"),
        }[move]
        return (
            f"scale={sw}:{sh}:force_original_aspect_ratio=increase:flags=bicubic,crop={sw}:{sh},"
            f"zoompan=z='{zexpr}':x='{xexpr}':y='{yexpr}':d={frames}:s={w}x{h}:fps={o.fps},"
            f"setsar=1,format=yuv420p"
        )

    def render(self, shot: Shot, image: Path, job: ShotJob) -> Path:
        o = self.options
        image = Path(image)
        if not image.is_file():
            raise StageError(f"shot {shot.id}: image {image} is missing")
        work = Path(job.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        out = work / f"shot_{shot.id:03d}.mp4"
        # A unique partial name: an ffmpeg orphaned by a killed run may still be writing its own.
        partial = work / f"shot_{shot.id:03d}.{os.getpid()}.partial.mp4"
        frames = max(1, round(shot.duration_s * o.fps))
        threads = str(self.threads())
        inputs = ["-filter_threads", threads, "-i", str(image)]
        card = self.draws_card(image)
        if card:
            # The card goes on after the zoom: bands and text as two still overlays (a
            # single-frame input repeats its frame), the text timed when a gap is asked for.
            from reelforge.plugins.image_gen.storyboard import card_overlay, plate_caption

            caption = plate_caption(image)  # the words its plate was drawn for (None: from the shot)
            size = (_even(o.width), _even(o.height))
            seconds = frames / o.fps
            layers = work / f"shot_{shot.id:03d}.{os.getpid()}.card"
            layers.mkdir(exist_ok=True)
            for layer in ("bands", "text"):
                card_overlay(shot, size, duration_s=seconds, layer=layer, caption=caption).save(
                    layers / f"{layer}.png")
                inputs += ["-i", str(layers / f"{layer}.png")]
            gap = min(self.caption_gap(job.film_overlap_s), seconds / 3)
            timed = f":enable='between(t,{gap:.3f},{seconds - gap:.3f})'" if gap > 0 else ""
            graph = (f"[0:v]{self.filter_graph(shot, frames)}[zoomed];"
                     f"[zoomed][1:v]overlay=0:0[banded];[banded][2:v]overlay=0:0{timed},format=yuv420p[v]")
            picture = ["-filter_complex", graph, "-map", "[v]"]
        else:
            layers = None
            picture = ["-vf", self.filter_graph(shot, frames)]
        args = [
            *inputs, *picture, "-frames:v", str(frames), "-r", str(o.fps),
            "-an", "-c:v", "libx264", "-preset", o.preset, "-crf", str(o.crf), "-threads", threads,
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", "-y", str(partial),
        ]
        move = camera_move(shot)
        job.progress(0.0, move)

        def report(p: FFmpegProgress) -> None:
            if p.frame is not None:  # 1.0 only once the clip is in place, below
                job.progress(min(p.frame / frames, 0.99), f"{move} {p.frame}/{frames} frames")

        try:
            run_ffmpeg(args, what=f"shot {shot.id}: rendering {image.name}", cancelled=job.cancelled,
                       progress=report)
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
            if layers is not None:
                shutil.rmtree(layers, ignore_errors=True)
        job.progress(1.0, "rendered")
        return out


@hookimpl
def register_renderers(register):
    register(KenBurnsRenderer)
