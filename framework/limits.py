"""Bounds on what backends are asked to make: frame sizes, frame rates, frame counts.

The caps follow H.264, the codec of every clip reelforge writes: Level 6.2, its largest,
allows frames of at most 139,264 macroblocks (35,651,584 pixels, e.g. 8192x4352 or 8K
DCI 8192x4320), so a larger frame would not be a valid clip at any level. One side is
capped at 8192 (8K). At the cap the offline renderer's ffmpeg peaks near 2.7 GB and the
storyboard near 0.6 GB (``python bench/frame_size_memory.py``); 20000x20000 took 6.7 GB.
"""

from __future__ import annotations

import math
from typing import Any, Callable

#: Largest width or height of an image or clip.
MAX_SIDE = 8192
#: Largest width x height: H.264 Level 6.2's 139,264 macroblocks of 16x16 pixels.
MAX_PIXELS = 139_264 * 256
#: Highest frame rate of a clip.
MAX_FPS = 120


def between(low: float, high: float, *, zero: bool = False) -> Callable[[Any, Any, Any], None]:
    """An attrs validator: the value is a finite number from ``low`` to ``high`` (or 0 when
    ``zero``, meaning "keep the default"). The message names the option and the range."""

    allowed = f"from {low:g} to {high:g}" + (" (or 0 for the default)" if zero else "")

    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if zero and value == 0:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise ValueError(f"{attribute.name} must be {allowed}, got {value!r}")

    check.allowed = allowed  # type: ignore[attr-defined]  # shown by `reelforge backends`, used in errors
    return check


def check_frame_size(width: int, height: int, *, what: str) -> None:
    """Refuse a frame over MAX_PIXELS (each side is checked by its own validator)."""
    if width and height and width * height > MAX_PIXELS:
        raise ValueError(f"{what} {width}x{height} has {width * height:,} pixels; at most "
                         f"{MAX_PIXELS:,} are allowed (e.g. {MAX_SIDE}x{MAX_PIXELS // MAX_SIDE})")


def frame_size_validator(what: str) -> Callable[[Any], None]:
    """An attrs ``__attrs_post_init__`` helper for Options with width and height fields."""

    def post_init(self: Any) -> None:
        check_frame_size(self.width, self.height, what=what)

    return post_init
