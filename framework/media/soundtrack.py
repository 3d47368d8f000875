"""The film's sound and finish: subtitle files from cue timings, the narration mix (voices
at each shot's start, an optional music bed ducked under them, loudness normalised), title
and end cards, and the last pass that puts audio, subtitles and fades on the film.

Every function takes explicit paths, writes exactly the output path it is given (in the
format it documents, whatever the suffix, so a caller may pass a temporary name and rename
it) and takes a ``cancelled`` event that stops ffmpeg, as :func:`reelforge.media.ffmpeg.run_ffmpeg`.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import wave
from pathlib import Path
from typing import Sequence

import attrs

from reelforge.errors import StageError
from reelforge.media.ffmpeg import clip_facts, run_ffmpeg

#: Subtitle modes of the finished film.
SUBTITLE_MODES = ("none", "soft", "burn")
#: The loudness the film's audio is normalised to (EBU R128 integrated, LUFS): what
#: YouTube-style platforms and podcasts aim at.
DEFAULT_LOUDNESS = -16.0
#: Sample rate of the film's audio.
SAMPLE_RATE = 48000


@attrs.frozen
class Cue:
    """One subtitle: ``text`` shown from ``start`` to ``end`` seconds of the film."""

    start: float
    "When the text appears, in seconds from the film's start."
    end: float
    "When it goes, in seconds (after ``start``)."
    text: str
    "What is shown; may hold a line break."


@attrs.frozen
class Voice:
    """One narration WAV placed in the film."""

    path: Path = attrs.field(converter=Path)
    "A WAV file (any sample rate, mono or stereo)."
    start: float
    "Where it starts, in seconds from the film's start."


# -- timing ---------------------------------------------------------------------------

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


def _split_text(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into pieces of at most about ``max_chars``, at sentence ends first,
    then at commas, then between words."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text] if text else []
    pieces: list[str] = []
    for sentence in re.split(r"(?<=[.!?;:])\s+", text):
        for clause in (re.split(r"(?<=,)\s+", sentence) if len(sentence) > max_chars else [sentence]):
            words, current = clause.split(), ""
            for word in words:
                trial = f"{current} {word}".strip()
                if len(trial) > max_chars and current:
                    pieces.append(current)
                    current = word
                else:
                    current = trial
            if current:
                pieces.append(current)
    # Merge short neighbours back together when they fit.
    merged: list[str] = []
    for piece in pieces:
        if merged and len(merged[-1]) + 1 + len(piece) <= max_chars:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def _two_lines(text: str, width: int) -> str:
    """Break a cue's text into at most two lines of about ``width`` characters, balanced."""
    if len(text) <= width:
        return text
    words = text.split()
    best, best_score = text, None
    for i in range(1, len(words)):
        a, b = " ".join(words[:i]), " ".join(words[i:])
        score = max(len(a), len(b))
        if best_score is None or score < best_score:
            best, best_score = f"{a}\n{b}", score
    return best


def narration_cues(lines: Sequence[tuple[float, float, str]], *, max_chars: int = 90,
                   line_width: int = 45) -> list[Cue]:
    """Subtitle cues for narration: ``lines`` is (start, seconds of speech, text) per shot.
    A line longer than ``max_chars`` becomes several cues, its speech time shared in
    proportion to their length; each cue is at most two lines of ``line_width``."""
    cues: list[Cue] = []
    for start, length, text in lines:
        pieces = _split_text(text, max_chars)
        if not pieces or length <= 0:
            continue
        total = sum(len(p) for p in pieces)
        t = start
        for piece in pieces:
            d = length * len(piece) / total
            cues.append(Cue(round(t, 3), round(t + d, 3), _two_lines(piece, line_width)))
            t += d
    return cues


# -- subtitle files --------------------------------------------------------------------

def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _check_cues(cues: Sequence[Cue]) -> None:
    for i, cue in enumerate(cues, start=1):
        if not cue.end > cue.start or cue.start < 0:
            raise StageError(f"subtitle cue {i} ({cue.text[:30]!r}) has start {cue.start} and end "
                             f"{cue.end}: the end must come after the start")


def _write_text(out: str | os.PathLike, text: str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def write_srt(cues: Sequence[Cue], out: str | os.PathLike) -> Path:
    """Write ``cues`` as a SubRip (.srt) file at ``out`` (UTF-8) and return ``out``."""
    _check_cues(cues)
    blocks = [f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.text.strip()}\n"
              for i, c in enumerate(cues, start=1)]
    return _write_text(out, "\n".join(blocks))


def write_vtt(cues: Sequence[Cue], out: str | os.PathLike) -> Path:
    """Write ``cues`` as a WebVTT (.vtt) file at ``out`` (UTF-8) and return ``out``."""
    _check_cues(cues)
    blocks = [f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{c.text.strip()}\n" for c in cues]
    return _write_text(out, "WEBVTT\n\n" + "\n".join(blocks))


_CUE_TIME = re.compile(r"(\d+):(\d\d):(\d\d)[,.](\d{3})\s*-->\s*(\d+):(\d\d):(\d\d)[,.](\d{3})")


def read_cues(path: str | os.PathLike) -> list[Cue]:
    """Read an .srt or .vtt file written by :func:`write_srt` / :func:`write_vtt`."""
    text = Path(path).read_text(encoding="utf-8")
    cues = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip().splitlines()
        for i, line in enumerate(lines):
            m = _CUE_TIME.search(line)
            if m:
                g = [int(x) for x in m.groups()]
                start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
                end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
                cues.append(Cue(start, end, "\n".join(lines[i + 1:])))
                break
    return cues


# -- the audio track ------------------------------------------------------------------

def build_audio(out: str | os.PathLike, duration_s: float, voices: Sequence[Voice] = (), *,
                music: str | os.PathLike | None = None, music_db: float = -14.0,
                duck: bool = True, loudness: float | None = DEFAULT_LOUDNESS,
                cancelled: threading.Event | None = None) -> Path:
    """Write the film's audio, ``duration_s`` long, as a 48 kHz stereo 16-bit WAV at ``out``.

    Each voice (a narration WAV) starts at its ``start``; ``music`` (any audio file ffmpeg
    reads, looped to the film's length, faded out at the end) plays ``music_db`` dB down and,
    with ``duck``, is pressed further down while a voice speaks (sidechain compression).
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
        graph.append(f"[{m}:a]{fmt},atrim=0:{d},asetpts=N/SR/TB,volume={music_db:.2f}dB,"
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


# -- cards ------------------------------------------------------------------------------

def wrap_text(draw, text: str, fnt, width: int, max_lines: int | None = None) -> list[str]:
    """``text`` broken into lines that fit ``width`` pixels in ``fnt`` (paragraphs kept); a
    word wider than the box is cut with "…", and past ``max_lines`` the last line ends "…"."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        current = ""
        for word in paragraph.split():
            trial = f"{current} {word}".strip()
            if draw.textlength(trial, font=fnt) <= width or not current:
                current = trial
            else:
                lines.append(current)
                current = word
        lines.append(current)
    for i, line in enumerate(lines):
        while draw.textlength(line, font=fnt) > width and len(line) > 1:
            line = line[:-2] + "…"
        lines[i] = line
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + "…", font=fnt) > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "…"
    return lines


_wrap = wrap_text


def draw_card(size: tuple[int, int], title: str, body: str = "", *,
              background: tuple[int, int, int] = (14, 16, 22),
              accent: tuple[int, int, int] = (255, 196, 64),
              ink: tuple[int, int, int] = (240, 238, 232), font_path: str | None = None):
    """A card as a PIL RGB image: ``title`` large and ``body`` smaller, centred, wrapped to
    stay inside a 10 % margin (the text shrinks until it fits)."""
    from PIL import Image, ImageDraw

    from reelforge.media.fonts import font

    w, h = size
    img = Image.new("RGB", (w, h), background)
    draw = ImageDraw.Draw(img)
    # A soft vignette band so the card is not a flat slab.
    for i in range(h // 2):
        k = i / (h / 2)
        shade = tuple(int(c * (0.75 + 0.25 * k)) for c in background)
        draw.line((0, i, w, i), fill=shade)
        draw.line((0, h - 1 - i, w, h - 1 - i), fill=shade)
    margin_x, margin_y = int(w * 0.1), int(h * 0.1)
    box_w, box_h = w - 2 * margin_x, h - 2 * margin_y
    scale = h / 720
    for shrink in (1.0, 0.85, 0.7, 0.55, 0.45, 0.35):
        big = font(int(64 * scale * shrink), font_path)
        small = font(int(30 * scale * shrink), font_path)
        t_lines = _wrap(draw, title, big, box_w) if title else []
        b_lines = _wrap(draw, body, small, box_w) if body else []
        t_h, b_h = int(big.size * 1.25), int(small.size * 1.4)
        gap = int(36 * scale * shrink) if t_lines and b_lines else 0
        total = len(t_lines) * t_h + gap + len(b_lines) * b_h
        widest = max([draw.textlength(x, font=big) for x in t_lines] +
                     [draw.textlength(x, font=small) for x in b_lines] + [0])
        if total <= box_h and widest <= box_w:
            break
    y = (h - total) // 2
    for line in t_lines:
        draw.text((w // 2, y), line, font=big, fill=ink, anchor="ma")
        y += t_h
    if t_lines and b_lines:
        rule = int(w * 0.08)
        draw.line((w // 2 - rule, y + gap // 2, w // 2 + rule, y + gap // 2), fill=accent,
                  width=max(1, int(3 * scale)))
        y += gap
    for line in b_lines:
        draw.text((w // 2, y), line, font=small, fill=accent if not t_lines else ink, anchor="ma")
        y += b_h
    return img


def still_clip(image, out: str | os.PathLike, *, duration_s: float, fps: int = 25,
               preset: str = "veryfast", crf: int = 20,
               cancelled: threading.Event | None = None) -> Path:
    """Encode a PIL image (or a PNG path) as an H.264 yuv420p MP4 clip of ``duration_s``
    without audio, like the Ken Burns clips (same codec, pixel format and frame rate), so it
    can be joined to them."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = max(1, round(duration_s * fps))
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".card-") as tmp:
        if isinstance(image, (str, os.PathLike)):
            png = Path(image)
        else:
            png = Path(tmp) / "card.png"
            image.save(png, format="PNG", compress_level=1)
        run_ffmpeg(["-loop", "1", "-framerate", str(fps), "-i", str(png), "-frames:v", str(frames),
                    "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2,setsar=1,format=yuv420p", "-r", str(fps),
                    "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", "-f", "mp4", "-y", str(out)],
                   what=f"rendering the card {out.name}", cancelled=cancelled)
    return out


def title_card(title: str, logline: str, out: str | os.PathLike, *, size: tuple[int, int] = (1280, 720),
               duration_s: float = 3.0, fps: int = 25, background: tuple[int, int, int] = (14, 16, 22),
               accent: tuple[int, int, int] = (255, 196, 64), font_path: str | None = None,
               cancelled: threading.Event | None = None, **encode) -> Path:
    """The opening card (title, a rule, the logline) as an MP4 clip at ``out``."""
    img = draw_card(size, title, logline, background=background, accent=accent, font_path=font_path)
    return still_clip(img, out, duration_s=duration_s, fps=fps, cancelled=cancelled, **encode)


def end_card(lines: Sequence[str], out: str | os.PathLike, *, title: str = "The End",
             size: tuple[int, int] = (1280, 720), duration_s: float = 3.0, fps: int = 25,
             background: tuple[int, int, int] = (14, 16, 22), accent: tuple[int, int, int] = (255, 196, 64),
             font_path: str | None = None, cancelled: threading.Event | None = None, **encode) -> Path:
    """The closing card (``title`` and a few credit ``lines``) as an MP4 clip at ``out``."""
    img = draw_card(size, title, "\n".join(lines), background=background, accent=accent, font_path=font_path)
    return still_clip(img, out, duration_s=duration_s, fps=fps, cancelled=cancelled, **encode)


def fade_clip(clip: str | os.PathLike, out: str | os.PathLike, *, fade_in_s: float = 0.0,
              fade_out_s: float = 0.0, preset: str = "veryfast", crf: int = 20,
              cancelled: threading.Event | None = None) -> Path:
    """Re-encode one clip with a fade from black (``fade_in_s``) and/or to black
    (``fade_out_s``), keeping its codec, size, frame rate and pixel format, so it still
    joins the other clips by stream copy. Fading the first and last clips this way costs a
    few seconds less than fading the whole film in :func:`finish_film`."""
    clip, out = Path(clip), Path(out)
    info = clip_facts(clip)
    d = info["duration"]
    fade_in_s, fade_out_s = min(max(0.0, fade_in_s), d / 2), min(max(0.0, fade_out_s), d / 2)
    chain = [f"fade=t=in:st=0:d={fade_in_s:.4f}"] if fade_in_s > 0 else []
    if fade_out_s > 0:
        chain.append(f"fade=t=out:st={d - fade_out_s:.4f}:d={fade_out_s:.4f}")
    chain.append("format=yuv420p")
    out.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(["-i", str(clip), "-vf", ",".join(chain), "-an", "-c:v", "libx264", "-preset", preset,
                "-crf", str(crf), "-pix_fmt", "yuv420p", "-r", f"{info['fps'] or 25:g}",
                "-movflags", "+faststart", "-f", "mp4", "-y", str(out)],
               what=f"fading {clip.name}", cancelled=cancelled)
    return out


# -- burnt subtitles --------------------------------------------------------------------

def subtitle_overlay(size: tuple[int, int], text: str, *, bottom_margin: float = 0.06,
                     font_path: str | None = None):
    """One cue drawn as a transparent RGBA image of ``size``: white text with a dark
    outline on a translucent box, centred, its bottom ``bottom_margin`` of the height up
    from the frame's bottom edge, and always inside the frame (long lines shrink)."""
    from PIL import Image, ImageDraw

    from reelforge.media.fonts import font

    w, h = size
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    max_w = int(w * 0.9)
    size_px = max(10, int(h * 0.05))
    lines = text.splitlines() or [""]
    while True:
        fnt = font(size_px, font_path)
        lines = _wrap(draw, text, fnt, max_w)
        widest = max(draw.textlength(x, font=fnt) for x in lines)
        if (widest <= max_w and len(lines) <= 3) or size_px <= 10:
            break
        size_px = int(size_px * 0.9)
    line_h = int(fnt.size * 1.3)
    stroke = max(1, fnt.size // 14)
    pad = max(4, fnt.size // 3)
    block_h = line_h * len(lines)
    bottom = min(h - pad, int(h * (1 - bottom_margin)))
    top = max(pad, bottom - block_h)
    widest = int(max(draw.textlength(x, font=fnt) for x in lines))
    left = max(0, (w - widest) // 2 - pad)
    draw.rounded_rectangle((left, top - pad, min(w - 1, left + widest + 2 * pad), min(h - 1, top + block_h + pad // 2)),
                           radius=pad, fill=(0, 0, 0, 140))
    y = top
    for line in lines:
        draw.text((w // 2, y), line, font=fnt, fill=(255, 255, 255, 255), anchor="ma",
                  stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
        y += line_h
    return img


def _concat_quote(path: Path) -> str:
    return "'" + str(path.resolve()).replace("'", "'\\''") + "'"


def _overlay_listing(cues: Sequence[Cue], size: tuple[int, int], duration_s: float, folder: Path, *,
                     bottom_margin: float, font_path: str | None) -> Path:
    """PNG overlays for ``cues`` and a concat-demuxer listing that shows each for its time
    (a blank image between cues): one overlay stream, however many cues there are."""
    from PIL import Image

    blank = folder / "blank.png"
    Image.new("RGBA", size, (0, 0, 0, 0)).save(blank)
    entries: list[tuple[Path, float]] = []
    t = 0.0
    for i, cue in enumerate(sorted(cues, key=lambda c: c.start)):
        start, end = max(t, cue.start), min(duration_s, cue.end)
        if end <= start:
            continue
        if start > t:
            entries.append((blank, start - t))
        png = folder / f"cue_{i:04d}.png"
        subtitle_overlay(size, cue.text, bottom_margin=bottom_margin, font_path=font_path).save(png)
        entries.append((png, end - start))
        t = end
    entries.append((blank, max(0.04, duration_s - t)))
    listing = folder / "cues.txt"
    # The concat demuxer ignores the last entry's duration unless the file is listed again.
    body = "".join(f"file {_concat_quote(p)}\nduration {d:.4f}\n" for p, d in entries)
    listing.write_text(body + f"file {_concat_quote(blank)}\n", encoding="utf-8")
    return listing


def finish_film(video: str | os.PathLike, audio: str | os.PathLike | None, out: str | os.PathLike, *,
                subtitles: str = "none", cues: Sequence[Cue] = (), srt: str | os.PathLike | None = None,
                fade_in_s: float = 0.0, fade_out_s: float = 0.0, language: str = "eng",
                audio_fades_only: bool = False, bottom_margin: float = 0.06, font_path: str | None = None,
                audio_bitrate: str = "160k", preset: str = "veryfast", crf: int = 20,
                cancelled: threading.Event | None = None) -> Path:
    """Write the finished film at ``out`` (MP4): ``video``'s picture with ``audio`` (a WAV
    from :func:`build_audio`, encoded to AAC; None keeps the film silent *without* a
    track, which players handle worse: pass a silent track instead) and subtitles:

    - ``subtitles="soft"``: ``srt`` (an .srt file) as a mov_text track tagged ``language``
      (ISO 639-2), which players can switch on and off;
    - ``subtitles="burn"``: ``cues`` drawn into the picture with the shipped font (Pillow
      overlays, so it works whatever the ffmpeg build has: no libass or drawtext needed);
    - ``"none"``: neither.

    ``fade_in_s`` / ``fade_out_s`` fade picture (from and to black) and sound. The picture is
    re-encoded only when it must be (burnt subtitles or picture fades); otherwise it is
    copied. To fade without re-encoding the film, fade the first and last clips with
    :func:`fade_clip` before assembling, and pass ``audio_fades_only=True`` here.
    """
    if subtitles not in SUBTITLE_MODES:
        raise StageError(f"unknown subtitle mode {subtitles!r}; use one of {', '.join(SUBTITLE_MODES)}")
    video, out = Path(video), Path(out)
    info = clip_facts(video)
    duration = info["duration"]
    if subtitles == "soft" and (srt is None or not Path(srt).is_file()):
        raise StageError(f"soft subtitles need an .srt file; {srt} does not exist")
    if subtitles == "burn" and not cues:
        raise StageError("burnt subtitles need cues; there are none (is the narration empty?)")
    if audio is not None and not Path(audio).is_file():
        raise StageError(f"audio track {audio} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    fade_in_s, fade_out_s = max(0.0, fade_in_s), max(0.0, fade_out_s)
    if fade_in_s + fade_out_s > duration:
        scale = duration / (fade_in_s + fade_out_s)
        fade_in_s, fade_out_s = fade_in_s * scale, fade_out_s * scale
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".finish-") as tmp:
        inputs = ["-i", str(video)]
        maps = []
        graph: list[str] = []
        vchain: list[str] = []
        if fade_in_s > 0 and not audio_fades_only:
            vchain.append(f"fade=t=in:st=0:d={fade_in_s:.4f}")
        if fade_out_s > 0 and not audio_fades_only:
            vchain.append(f"fade=t=out:st={duration - fade_out_s:.4f}:d={fade_out_s:.4f}")
        reencode = bool(vchain) or subtitles == "burn"
        n = 1
        if subtitles == "burn":
            size = (info["width"], info["height"])
            listing = _overlay_listing(cues, size, duration, Path(tmp), bottom_margin=bottom_margin,
                                       font_path=font_path)
            inputs += ["-f", "concat", "-safe", "0", "-i", str(listing)]
            # The subtitles go on before the fades, so they fade with the picture.
            graph.append(f"[0:v][{n}:v]overlay=0:0:eof_action=repeat:format=auto[subbed]")
            src = "[subbed]"
            n += 1
        else:
            src = "[0:v]"
        if reencode:
            graph.append(f"{src}{','.join(vchain) or 'null'},format=yuv420p[vout]")
            maps += ["-map", "[vout]", "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
                     "-pix_fmt", "yuv420p"]
        else:
            maps += ["-map", "0:v:0", "-c:v", "copy"]
        if audio is not None:
            inputs += ["-i", str(audio)]
            achain = []
            if fade_in_s > 0:
                achain.append(f"afade=t=in:st=0:d={fade_in_s:.4f}")
            if fade_out_s > 0:
                achain.append(f"afade=t=out:st={duration - fade_out_s:.4f}:d={fade_out_s:.4f}")
            achain.append(f"atrim=0:{duration:.6f},apad=whole_dur={duration:.6f}")
            graph.append(f"[{n}:a]{','.join(achain)}[aout]")
            maps += ["-map", "[aout]", "-c:a", "aac", "-b:a", audio_bitrate]
            n += 1
        if subtitles == "soft":
            inputs += ["-i", str(srt)]
            maps += ["-map", f"{n}:s:0", "-c:s", "mov_text", "-metadata:s:s:0", f"language={language}"]
            n += 1
        args = [*inputs]
        if graph:
            args += ["-filter_complex", ";".join(graph)]
        args += [*maps, "-t", f"{duration:.6f}", "-movflags", "+faststart", "-f", "mp4", "-y", str(out)]
        run_ffmpeg(args, what=f"finishing the film {out.name}", cancelled=cancelled)
    return out


__all__ = [
    "Cue", "Voice", "SUBTITLE_MODES", "DEFAULT_LOUDNESS", "SAMPLE_RATE", "effective_crossfade",
    "clip_starts", "film_length", "wav_duration", "narration_cues", "write_srt", "write_vtt",
    "read_cues", "build_audio", "measure_loudness", "draw_card", "still_clip", "title_card", "end_card", "fade_clip",
    "subtitle_overlay", "finish_film",
]
