"""A contact sheet of the offline film: makes the film on the offline defaults, then writes a
PNG grid with one row per shot and its frames at several moments (first frame, quarter,
half, three quarters, last frame), taken from film.mp4 as a viewer sees it. Look at it to
check that captions and headers are never cut, and that the look holds together.

Run: python bench/contact_sheet.py [IDEA] [--out PATH.png] [--moments N] [--shots N]
(default idea: "A lighthouse keeper befriends a storm"; the sheet lands in
output/contact_sheet.png and the session in a temporary folder unless --keep DIR).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def frame_at(film: Path, t: float, out: Path):
    from PIL import Image

    from reelforge.media.ffmpeg import run_ffmpeg

    run_ffmpeg(["-ss", f"{max(0.0, t):.3f}", "-i", str(film), "-frames:v", "1", "-y", str(out)],
               what=f"frame at {t:.2f} s")
    with Image.open(out) as im:
        return im.convert("RGB")


def contact_sheet(film: Path, durations: list[float], out: Path, *, moments: int = 5, thumb_w: int = 384,
                  crossfade_s: float = 0.0, labels: list[str] | None = None) -> Path:
    """Write the grid for ``film`` whose clips last ``durations`` (joined with ``crossfade_s``)."""
    from PIL import Image, ImageDraw

    from reelforge.media.ffmpeg import probe
    from reelforge.media.fonts import font
    from reelforge.media.soundtrack import clip_starts

    info = probe(film)
    fps = info["fps"] or 25
    thumb_h = round(thumb_w * info["height"] / info["width"])
    label_w, gap, strip = 150, 6, 20
    row_h = thumb_h + strip + gap
    sheet = Image.new("RGB", (label_w + moments * (thumb_w + gap), len(durations) * row_h + gap),
                      (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    small = font(14)
    starts = clip_starts(durations, crossfade_s)
    with tempfile.TemporaryDirectory() as tmp:
        for row, (start, length) in enumerate(zip(starts, durations)):
            y = gap + row * row_h
            last = length - 1.0 / fps
            draw.text((10, y + 6), labels[row] if labels else f"shot {row + 1}", font=font(18), fill=(255, 196, 64))
            draw.text((10, y + 32), f"{start:.2f}-{start + length:.2f} s", font=small, fill=(200, 200, 200))
            for k in range(moments):
                t = start + last * k / max(1, moments - 1)
                im = frame_at(film, t, Path(tmp) / f"f_{row}_{k}.png").resize((thumb_w, thumb_h))
                x = label_w + k * (thumb_w + gap)
                sheet.paste(im, (x, y))
                draw.text((x + 4, y + thumb_h + 2), f"{t:.2f} s", font=small, fill=(220, 220, 220))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("idea", nargs="?", default="A lighthouse keeper befriends a storm")
    parser.add_argument("--out", type=Path, default=ROOT / "output" / "contact_sheet.png")
    parser.add_argument("--moments", type=int, default=5)
    parser.add_argument("--shots", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="keep the session in this output folder")
    args = parser.parse_args()

    from reelforge.media.ffmpeg import probe
    from reelforge.engine.runner import Runner

    with tempfile.TemporaryDirectory() as tmp:
        output = args.keep or Path(tmp)
        t0 = time.perf_counter()
        result = Runner(output, options=[f"shots={args.shots}"]).start(args.idea)
        made = time.perf_counter() - t0
        if not result.film:
            sys.exit(f"the run did not make a film: {result.status}")
        session = Path(result.film).parent
        clips = sorted((session / "videos").glob("shot_*.mp4"))
        durations = [probe(c)["duration"] for c in clips]
        sheet = contact_sheet(Path(result.film), durations, args.out, moments=args.moments,
                              labels=[c.stem.replace("_", " ") for c in clips])
    print(f"film made in {made:.2f} s ({len(clips)} shots); contact sheet: {sheet}")


if __name__ == "__main__":
    main()
