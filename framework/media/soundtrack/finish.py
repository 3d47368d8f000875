"""The last pass on the film: its picture with the audio track, subtitles (a soft mov_text
track, or cues burnt in as Pillow overlays) and fades from and to black."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from reelforge.errors import StageError
from reelforge.media.ffmpeg import clip_facts, run_ffmpeg
from reelforge.media.soundtrack.cards import wrap_text
from reelforge.media.soundtrack.subtitles import Cue

#: Subtitle modes of the finished film.
SUBTITLE_MODES = ("none", "soft", "burn")


def fitted_fades(duration: float, fade_in_s: float, fade_out_s: float) -> tuple[float, float]:
    """Fades of 0 s or more that fit in ``duration`` together (both scaled down alike if not)."""
    fade_in_s, fade_out_s = max(0.0, fade_in_s), max(0.0, fade_out_s)
    if fade_in_s + fade_out_s > duration:
        scale = duration / (fade_in_s + fade_out_s)
        fade_in_s, fade_out_s = fade_in_s * scale, fade_out_s * scale
    return fade_in_s, fade_out_s


def audio_filters(duration: float, fade_in_s: float = 0.0, fade_out_s: float = 0.0) -> str:
    """The film's sound as an ffmpeg filter chain: faded in and out (fitted, see
    :func:`fitted_fades`), then cut or padded to exactly ``duration`` seconds."""
    fade_in_s, fade_out_s = fitted_fades(duration, fade_in_s, fade_out_s)
    chain = []
    if fade_in_s > 0:
        chain.append(f"afade=t=in:st=0:d={fade_in_s:.4f}")
    if fade_out_s > 0:
        chain.append(f"afade=t=out:st={duration - fade_out_s:.4f}:d={fade_out_s:.4f}")
    chain.append(f"atrim=0:{duration:.6f},apad=whole_dur={duration:.6f}")
    return ",".join(chain)


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
        lines = wrap_text(draw, text, fnt, max_w)
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
    fade_in_s, fade_out_s = fitted_fades(duration, fade_in_s, fade_out_s)
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
            graph.append(f"[{n}:a]{audio_filters(duration, fade_in_s, fade_out_s)}[aout]")
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

