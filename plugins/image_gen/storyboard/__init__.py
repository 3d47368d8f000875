"""The ``storyboard`` image generator: draws a storyboard frame per shot with Pillow.

The picture follows the shot: one palette per film, read from the film's look (the story's
style, "deep navy and lantern-gold palette", or the shot's own look: ``shot.look``, which the
runner fills in); a background built from the setting's words in the image prompt (sea,
city, forest, storm, night, desert, mountain, interior, ...); framing from the shot type it
names (aerial, wide, medium, close-up, low angle, silhouette, detail). Deterministic: the
same shot always gives the same pixels. No model, GPU or network.

The image written is a text-free *plate*, marked as such in a PNG text chunk; another chunk
records the caption its card shows (what the image prompt asks for: :func:`caption_of`,
read back with :func:`plate_caption`). The card's text (shot number, caption, camera note)
is drawn by :func:`card_overlay`, which the ``kenburns`` renderer puts on top of each frame
*after* its zoom and pan, so no camera move ever crops a caption.
:meth:`StoryboardGenerator.draw` gives plate and card together; :func:`card_text` the words.

This module is the backend (options, the generator, the plate marker, the hook); its parts:
:mod:`.palette` (colours from the style bible), :mod:`.scene` (setting and shot type from the
shot's words), :mod:`.look` (one shot's choices and colours), :mod:`.backdrop` (sky, ground,
landmarks, interiors, rain), :mod:`.figures` (people and objects; each character of the cast as their own figure: a colour, a silhouette
and a mark, read from their portrait card), :mod:`.painter` (the
plate, painted in order) and :mod:`.card` (the card's bands and text).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import attrs

from reelforge import hookimpl
from reelforge.errors import StageError
from reelforge.limits import MAX_SIDE, between, check_frame_size
from reelforge.plugins.image_gen.storyboard.card import (
    CAPTION_BAND,
    CardText,
    caption_of,
    card_overlay,
    card_text,
    font,
    portrait_card,
)
from reelforge.plugins.image_gen.storyboard.figures import FIGURE_KEY, identity_for, identity_of
from reelforge.plugins.image_gen.storyboard.painter import _Painter
from reelforge.plugins.image_gen.storyboard.palette import palette_for
from reelforge.plugins.image_gen.storyboard.scene import setting, shot_type
from reelforge.protocols import ShotJob
from reelforge.records import Shot

#: PNG text chunk that marks a storyboard plate (a renderer may draw the card over it).
PLATE_KEY = "reelforge-plate"
PLATE_VALUE = "storyboard"
#: PNG text chunk of a plate: the caption its card shows (the renderer draws this one).
CAPTION_KEY = "reelforge-caption"


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
    #: Fields of the shot besides its prompts and look that once made the card (kept in the
    #: fingerprint so that images made before keep theirs): a changed one redraws it.
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("description", "characters", "scene_id", "duration_s")
    #: Another seed gives another picture of the same shot (its composition and light): a redo gets one.
    uses_seed: ClassVar[bool] = True

    def __init__(self, options: StoryboardOptions | None = None):
        self.options = options if options is not None else StoryboardOptions()

    #: Uses the cast's portraits: each character is drawn as the figure their portrait card shows.
    takes_references: ClassVar[bool] = True

    def generate(self, shot: Shot, job: ShotJob) -> Path:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        if job.stage == "cast":  # a character's portrait card: the figure every shot draws them as
            identity = identity_for(shot.id, shot.seed)
            info.add_text(FIGURE_KEY, identity.to_json())
            picture = portrait_card(shot, identity, (self.options.width, self.options.height))
            out = Path(job.work_dir) / "portrait.png"
        else:
            info.add_text(PLATE_KEY, PLATE_VALUE)
            info.add_text(CAPTION_KEY, caption_of(shot))  # UTF-8 (iTXt) when it is not Latin-1
            identities = {ref.name: identity_of(ref.path, ref.sha256) for ref in job.references}
            picture = self.draw_plate(shot, identities)
            out = Path(job.work_dir) / f"shot_{shot.id:03d}.png"
        tmp = out.with_name(out.stem + ".partial.png")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            picture.save(tmp, format="PNG", compress_level=1, pnginfo=info)
            os.replace(tmp, out)
        except OSError as exc:
            raise StageError(f"could not write the storyboard frame {out}: {exc}") from exc
        return out

    def draw_plate(self, shot: Shot, identities: dict | None = None):
        """The picture for ``shot`` without any text, as a PIL RGB image; ``identities``
        (figures.Identity by character name) draw those characters as themselves."""
        return _Painter(shot, (self.options.width, self.options.height), identities).paint()

    def draw(self, shot: Shot):
        """The whole storyboard card (plate and text) as a PIL RGB image."""
        plate = self.draw_plate(shot).convert("RGBA")
        plate.alpha_composite(card_overlay(shot, plate.size))
        return plate.convert("RGB")

    @staticmethod
    def card_text(shot: Shot) -> CardText:
        """The words the card of ``shot`` shows (number, scene and length, caption, camera)."""
        return card_text(shot)


def is_plate(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a storyboard plate (a PNG this generator wrote)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return getattr(im, "text", {}).get(PLATE_KEY) == PLATE_VALUE
    except Exception:
        return False


def plate_caption(path: str | os.PathLike) -> str | None:
    """The caption the card of storyboard plate ``path`` shows, as recorded when it was
    drawn (None for a plate written before captions were recorded, or another image)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {})
            return text.get(CAPTION_KEY) if text.get(PLATE_KEY) == PLATE_VALUE else None
    except Exception:
        return None


@hookimpl
def register_image_generators(register):
    register(StoryboardGenerator)


__all__ = [
    "CAPTION_BAND", "CAPTION_KEY", "PLATE_KEY", "PLATE_VALUE", "CardText", "StoryboardGenerator", "StoryboardOptions",
    "_Painter", "caption_of", "card_overlay", "card_text", "font", "is_plate", "palette_for", "plate_caption",
    "register_image_generators", "setting", "shot_type",
]
