"""The film's bookends: title and end cards drawn with Pillow and encoded as clips that join
the Ken Burns clips, the text wrapping they (and burnt subtitles) use, and a fade from or to
black on one clip."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from reelforge.media.ffmpeg import clip_facts, run_ffmpeg


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
        t_lines = wrap_text(draw, title, big, box_w) if title else []
        b_lines = wrap_text(draw, body, small, box_w) if body else []
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
              cancelled: threading.Event | None = None, progress=None) -> Path:
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
               what=f"fading {clip.name}", cancelled=cancelled, progress=progress)
    return out

