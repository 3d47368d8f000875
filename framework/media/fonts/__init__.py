"""The font reelforge draws text with (subtitles, cards, storyboard captions): DejaVu Sans,
shipped in this folder (Bitstream Vera licence, see DejaVuSans-LICENSE.txt), so the text
looks the same on every machine and covers Latin, Greek and Cyrillic accents."""

from __future__ import annotations

import functools
from pathlib import Path

FONT_PATH = Path(__file__).with_name("DejaVuSans.ttf")


@functools.lru_cache(maxsize=32)
def font(size: int, path: str | None = None):
    """A Pillow FreeType font at ``size`` pixels: the shipped DejaVu Sans, or ``path``."""
    from PIL import ImageFont

    return ImageFont.truetype(str(path or FONT_PATH), size=max(1, int(size)))


def missing_glyphs(text: str, path: str | None = None) -> list[str]:
    """The characters of ``text`` the font has no glyph for (they would draw as boxes)."""
    from PIL import ImageFont

    fnt = ImageFont.truetype(str(path or FONT_PATH), size=24)
    # Pillow has no cmap lookup; a character whose mask equals the .notdef box is missing.
    notdef = bytes(fnt.getmask("\uffff"))
    return sorted({c for c in text if not c.isspace() and bytes(fnt.getmask(c)) == notdef})
