"""Assembly at scale: `reelforge.media.ffmpeg.assemble(clips)` against the bare ffmpeg concat it
runs, side by side on the same N clips (a few small H.264 clips of one format, copied
N times), rounds interleaved.

Run: python bench/assemble_scale.py [N] [ROUNDS]   (default 2000 clips, 3 rounds)
Target (issue 12): assemble <= 1.5x the bare `ffmpeg -f concat -safe 0 -i list -c copy`.
The bare command carries the same flags assemble passes (-movflags +faststart -f mp4), so the
ratio is what assemble adds: reading each clip's format, writing the list.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reelforge.media.ffmpeg import _concat_line, assemble, ffmpeg_exe  # noqa: E402

#: Variants of one format (size, fps, pixel format, codec): colours and lengths differ.
VARIANTS = [("red", 0.4), ("green", 0.5), ("blue", 0.3), ("white", 0.6)]


def make_clips(folder: Path, n: int) -> list[Path]:
    sources = []
    for color, seconds in VARIANTS:
        src = folder / f"variant_{color}.mp4"
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", f"color=c={color}:s=64x36:d={seconds}:r=10", "-c:v", "libx264",
                        "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(src)],
                       check=True)
        sources.append(src)
    clips = []
    for i in range(n):
        clip = folder / f"shot_{i + 1:05d}.mp4"
        shutil.copyfile(sources[i % len(sources)], clip)
        clips.append(clip)
    return clips


def bare_concat(clips: list[Path], out: Path) -> None:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(_concat_line(c) for c in clips), encoding="utf-8")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "concat",
                    "-safe", "0", "-i", str(listing), "-c", "copy", "-movflags", "+faststart", "-f", "mp4",
                    "-y", str(out)], check=True, stdin=subprocess.DEVNULL)
    listing.unlink()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = make_clips(folder, n)
        times: dict[str, list[float]] = {"bare concat": [], "assemble": []}
        sizes = {}
        for _ in range(rounds):
            for name in times:
                out = folder / f"{name.replace(' ', '_')}.mp4"
                t0 = time.perf_counter()
                if name == "assemble":
                    assemble(clips, out)
                else:
                    bare_concat(clips, out)
                times[name].append(time.perf_counter() - t0)
                sizes[name] = out.stat().st_size
                out.unlink()
    if sizes["assemble"] != sizes["bare concat"]:
        print(f"note: outputs differ in size ({sizes}); assemble did not stream-copy")
    print(f"{n} clips, {rounds} rounds, {os.cpu_count()} cores")
    for name, ts in times.items():
        print(f"{name:12} median {statistics.median(ts):7.3f} s   runs: {', '.join(f'{t:.3f}' for t in ts)}")
    ratio = statistics.median(times["assemble"]) / statistics.median(times["bare concat"])
    print(f"assemble / bare concat = {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
