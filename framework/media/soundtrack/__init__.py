"""The film's sound and finish: subtitle files from cue timings, the narration mix (voices
at each shot's start, an optional music bed ducked under them, loudness normalised), title
and end cards, and the last pass that puts audio, subtitles and fades on the film.

Every function takes explicit paths, writes exactly the output path it is given (in the
format it documents, whatever the suffix, so a caller may pass a temporary name and rename
it) and takes a ``cancelled`` event that stops ffmpeg, as :func:`reelforge.media.ffmpeg.run_ffmpeg`.

This package's face is the names below; its parts: :mod:`.timing` (clip starts, film length,
WAV length), :mod:`.subtitles` (cues from narration, .srt and .vtt files), :mod:`.mix` (the
audio track and its loudness), :mod:`.cards` (title and end cards, text wrapping, clip fades)
and :mod:`.finish` (audio, subtitles and fades put on the film).

May import: reelforge.media.ffmpeg and the leaf modules, like the rest of reelforge.media.
"""

from __future__ import annotations

from reelforge.media.soundtrack.cards import draw_card, end_card, fade_clip, still_clip, title_card, wrap_text
from reelforge.media.soundtrack.finish import SUBTITLE_MODES, finish_film, subtitle_overlay
from reelforge.media.soundtrack.mix import (DEFAULT_LOUDNESS, DEFAULT_MUSIC_UNDER, SAMPLE_RATE, Voice, build_audio,
                                           measure_loudness)
from reelforge.media.soundtrack.subtitles import Cue, narration_cues, read_cues, write_srt, write_vtt
from reelforge.media.soundtrack.timing import clip_starts, effective_crossfade, film_length, wav_duration

__all__ = [
    "Cue", "Voice", "SUBTITLE_MODES", "DEFAULT_LOUDNESS", "DEFAULT_MUSIC_UNDER", "SAMPLE_RATE", "effective_crossfade",
    "clip_starts", "film_length", "wav_duration", "narration_cues", "write_srt", "write_vtt",
    "read_cues", "build_audio", "measure_loudness", "draw_card", "still_clip", "title_card", "end_card", "fade_clip",
    "subtitle_overlay", "finish_film", "wrap_text",
]
