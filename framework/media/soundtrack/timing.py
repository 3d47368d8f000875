"""Where things fall in the assembled film: each clip's start after crossfades, the film's
length, and how long a narration WAV speaks."""

from __future__ import annotations

import os
import wave
from collections.abc import Sequence

from reelforge.errors import StageError


def effective_crossfade(durations: Sequence[float], crossfade_s: float) -> float:
    """The crossfade :func:`reelforge.media.ffmpeg.assemble` really uses for clips of these
    lengths: never more than half the shortest clip."""
    if len(durations) < 2 or crossfade_s <= 0:
        return 0.0
    return max(0.0, min(crossfade_s, min(durations) / 2))


def clip_starts(durations: Sequence[float], crossfade_s: float = 0.0) -> list[float]:
    """Where each clip starts in the assembled film: the sum of the clips before it, less
    one crossfade per join before it (``crossfade_s`` 0 for hard cuts)."""
    fade = effective_crossfade(durations, crossfade_s)
    starts, t = [], 0.0
    for i, d in enumerate(durations):
        starts.append(round(t - i * fade, 6))
        t += d
    return starts


def film_length(durations: Sequence[float], crossfade_s: float = 0.0) -> float:
    """The assembled film's length for clips of these lengths."""
    return sum(durations) - max(0, len(durations) - 1) * effective_crossfade(durations, crossfade_s)


def wav_duration(path: str | os.PathLike) -> float:
    """Length of a PCM WAV file in seconds. StageError if it is missing or not a WAV."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (OSError, EOFError, wave.Error) as exc:
        raise StageError(f"{path} is not a readable WAV file: {exc}") from exc
