"""The film's audio track: narration voices placed at their starts, a music bed looped, faded
and ducked under them, mixed in one ffmpeg filter graph and normalised to a loudness target
(EBU R128, measured by ffmpeg's meter)."""

from __future__ import annotations

import math
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import attrs

from reelforge.errors import StageError
from reelforge.media.ffmpeg import run_ffmpeg
from reelforge.media.soundtrack.timing import wav_duration

#: The loudness the film's audio is normalised to (EBU R128 integrated, LUFS): what
#: YouTube-style platforms and podcasts aim at.
DEFAULT_LOUDNESS = -16.0
#: Sample rate of the film's audio.
SAMPLE_RATE = 48000


@attrs.frozen
class Voice:
    """One narration WAV placed in the film."""

    path: Path = attrs.field(converter=Path)
    "A WAV file (any sample rate, mono or stereo)."
    start: float
    "Where it starts, in seconds from the film's start."


#: How far under the voices the music bed plays by default (LU): a bed, clearly heard
#: between lines, never in the way of the words.
DEFAULT_MUSIC_UNDER = 18.0


def build_audio(out: str | os.PathLike, duration_s: float, voices: Sequence[Voice] = (), *,
                music: str | os.PathLike | None = None, music_under_lu: float = DEFAULT_MUSIC_UNDER,
                duck: bool = True, loudness: float | None = DEFAULT_LOUDNESS,
                cancelled: threading.Event | None = None) -> Path:
    """Write the film's audio, ``duration_s`` long, as a 48 kHz stereo 16-bit WAV at ``out``.

    Each voice (a narration WAV) starts at its ``start``; ``music`` (any audio file ffmpeg
    reads, looped to the film's length, faded out at the end) is measured and set
    ``music_under_lu`` LU under the voices' loudness (EBU R128 integrated: over the speech
    only, so pauses do not count), whatever level the file has; without voices, at the
    loudness target (it is the film's only sound). With ``duck`` it is pressed further down while a voice
    speaks (sidechain compression).
    The mix is loudness-normalised to ``loudness`` LUFS (EBU R128, one pass) unless None.
    With no voices and no music the track is silence, so players and editors that expect
    an audio stream behave. StageError if a voice file is missing or runs past the end.
    """
    out = Path(out)
    if not duration_s > 0:
        raise StageError(f"the film's audio must be longer than 0 s (got {duration_s})")
    for i, v in enumerate(voices, start=1):
        if not v.path.is_file():
            raise StageError(f"narration {i}: {v.path} does not exist")
        length = wav_duration(v.path)
        if v.start < 0 or v.start + length > duration_s + 0.05:
            raise StageError(f"narration {i} ({v.path.name}, {length:.2f} s at {v.start:.2f} s) runs "
                             f"past the end of the {duration_s:.2f} s film; make its clip longer")
    if music is not None and not Path(music).is_file():
        raise StageError(f"music file {music} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    d = f"{duration_s:.6f}"
    # Trim first, then pad to a stated length: an unbounded apad before atrim deadlocks the
    # bundled ffmpeg when amix joins a few short voices (all threads wait, SIGTERM is
    # ignored), and atrim after a bounded apad cuts the pad off.
    fmt = f"aresample={SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"
    inputs: list[str] = []
    graph: list[str] = []
    for i, v in enumerate(voices):
        inputs += ["-i", str(v.path)]
        graph.append(f"[{i}:a]{fmt},adelay=delays={round(v.start * 1000)}:all=1[v{i}]")
    if voices:
        joined = "".join(f"[v{i}]" for i in range(len(voices)))
        graph.append(f"{joined}amix=inputs={len(voices)}:normalize=0:dropout_transition=0,"
                     f"atrim=0:{d},apad=whole_dur={d}[voice]")  # trim, then a bounded pad: see below
    if music is not None:
        m = len(voices)
        inputs += ["-stream_loop", "-1", "-i", str(music)]
        fade = min(2.0, duration_s / 4)
        gain = _music_gain(music, voices, music_under_lu, loudness, cancelled)
        graph.append(f"[{m}:a]{fmt},atrim=0:{d},asetpts=N/SR/TB,volume={gain:.2f}dB,"
                     f"afade=t=out:st={duration_s - fade:.4f}:d={fade:.4f}[music]")
    if voices and music is not None:
        if duck:
            graph.append("[voice]asplit=2[voice][key]")
            graph.append("[music][key]sidechaincompress=threshold=0.015:ratio=12:attack=20:"
                         "release=400:makeup=1[music]")
        graph.append("[voice][music]amix=inputs=2:normalize=0:duration=first[mix]")
        last = "mix"
    elif voices:
        last = "voice"
    elif music is not None:
        last = "music"
    else:
        inputs += ["-f", "lavfi", "-i", f"anullsrc=r={SAMPLE_RATE}:cl=stereo"]
        graph.append(f"[0:a]atrim=0:{d}[silence]")
        last, loudness = "silence", None
    if loudness is None:
        _render_mix(inputs, graph, last, out, cancelled)
        return out
    # Two passes: mix (float, so nothing clips yet), measure, then one gain to the target
    # with a peak limiter. Single-pass loudnorm misses the target by 2 LU or more on a
    # film's few seconds of speech.
    # Scratch beside ``out`` (the film's folder in the session's .work/), never under $TMPDIR:
    # a killed run's float WAV is then swept with the rest of .work/ on resume.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".mix-") as tmp:
        raw = Path(tmp) / "raw.wav"
        _render_mix(inputs, graph, last, raw, cancelled, codec="pcm_f32le")
        integrated, peak = measure_loudness(raw, cancelled=cancelled)
        gain = 0.0 if integrated < -69 else loudness - integrated  # silence stays silence
        ceiling = 10 ** (_TRUE_PEAK_DB / 20)
        chain = f"volume={gain:.3f}dB"
        if peak * 10 ** (gain / 20) > ceiling:
            chain += f",alimiter=limit={ceiling:.4f}:level=0:attack=5:release=50,{fmt}"
        run_ffmpeg(["-i", str(raw), "-af", f"{chain},atrim=0:{d}", "-c:a", "pcm_s16le",
                    "-ar", str(SAMPLE_RATE), "-ac", "2", "-f", "wav", "-y", str(out)],
                   what=f"normalising the film's audio into {out.name}", cancelled=cancelled)
    return out


def _music_gain(music: str | os.PathLike, voices: Sequence[Voice], under_lu: float, loudness: float | None,
                cancelled: threading.Event | None) -> float:
    """The gain (dB) that puts ``music`` ``under_lu`` LU under the voices' loudness (each
    voice's own loudness, weighted by its length), or at the loudness target when there are
    no voices. A silent file is left as it is."""
    bed, _ = measure_loudness(music, cancelled=cancelled)
    if bed <= -69:
        return 0.0
    measured = []
    for v in voices:
        level, _ = measure_loudness(v.path, cancelled=cancelled)
        if level > -69:
            measured.append((level, wav_duration(v.path)))
    if measured:
        # Integrated loudness of the voices together: an energy mean, weighted by time.
        weight = sum(t for _, t in measured) or 1.0
        voice = 10 * math.log10(sum(10 ** (lv / 10) * t for lv, t in measured) / weight)
    else:  # nothing is said: the music is the film's sound, at the loudness target
        return max(-60.0, min(40.0, (DEFAULT_LOUDNESS if loudness is None else loudness) - bed))
    return max(-60.0, min(40.0, voice - under_lu - bed))


#: The highest true peak the normalised mix may reach, dBTP.
_TRUE_PEAK_DB = -1.5


def _render_mix(inputs: list[str], graph: list[str], last: str, out: Path,
                cancelled: threading.Event | None, codec: str = "pcm_s16le") -> None:
    run_ffmpeg([*inputs, "-filter_complex", ";".join(graph), "-map", f"[{last}]",
                "-c:a", codec, "-ar", str(SAMPLE_RATE), "-ac", "2", "-f", "wav", "-y", str(out)],
               what=f"mixing the film's audio into {out.name}", cancelled=cancelled)


def _filter_path(path: Path) -> str:
    """``path`` escaped as a filter option value inside a filter graph (ffmpeg's two
    levels of escaping: the option value, then the graph description)."""
    value = str(path)
    for ch in "\\':":
        value = value.replace(ch, "\\" + ch)
    for ch in "\\'[],;":
        value = value.replace(ch, "\\" + ch)
    return value


def measure_loudness(path: str | os.PathLike, *, cancelled: threading.Event | None = None) -> tuple[float, float]:
    """(integrated loudness in LUFS, true peak as a linear amplitude) of an audio file,
    by ffmpeg's EBU R128 meter. Silence measures -70 LUFS. The meter's notes are written
    beside ``path`` (inside the session's .work/ for a film), never under $TMPDIR."""
    with tempfile.TemporaryDirectory(dir=Path(path).parent, prefix=".r128-") as tmp:
        meta = Path(tmp) / "r128.txt"
        run_ffmpeg(["-i", str(path), "-af", f"ebur128=metadata=1:peak=true,ametadata=mode=print:"
                    f"file={_filter_path(meta)}", "-f", "null", "-"],
                   what=f"measuring the loudness of {Path(path).name}", cancelled=cancelled)
        text = meta.read_text(encoding="utf-8", errors="replace") if meta.exists() else ""
    found_i = re.findall(r"lavfi\.r128\.I=(-?[\d.]+|-?inf)", text)
    found_p = re.findall(r"lavfi\.r128\.true_peak=(-?[\d.]+)", text)
    integrated = float(found_i[-1]) if found_i else -70.0
    return max(-70.0, integrated), float(found_p[-1]) if found_p else 0.0
