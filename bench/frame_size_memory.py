"""Peak memory and time of one storyboard frame and one 1-second Ken Burns clip at several
sizes, up to the cap in reelforge/limits.py (each size in a fresh process, so peaks do not
mix).

    python bench/frame_size_memory.py [WxH ...]     # default: 1280x720 3840x2160 8192x4352
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure_one(width: int, height: int, what: str, folder: Path) -> dict:
    from reelforge.protocols import ShotJob
    from reelforge.records import Shot
    from reelforge.plugins.image_gen.storyboard import StoryboardGenerator, StoryboardOptions
    from reelforge.plugins.kenburns import KenBurnsOptions, KenBurnsRenderer

    shot = Shot(id=1, scene_id="s1", description="bench", image_prompt="a harbour city at dusk",
                motion_prompt="slow push in", duration_s=1.0, seed=1)
    job = ShotJob(session_id="bench", stage="images", shot=shot, attempt=1, work_dir=folder,
                  checkpoint={}, cancelled=threading.Event(), save=lambda d: None,
                  progress=lambda f, m: None)
    started = time.monotonic()
    if what == "image":
        out = StoryboardGenerator(StoryboardOptions(width=width, height=height)).generate(shot, job)
    else:
        out = KenBurnsRenderer(KenBurnsOptions(width=width, height=height)).render(
            shot, folder / "shot_001.png", job)
    usage = resource.getrusage(resource.RUSAGE_SELF if what == "image" else resource.RUSAGE_CHILDREN)
    return {"seconds": round(time.monotonic() - started, 2), "peak_mb": usage.ru_maxrss // 1024,
            "bytes": out.stat().st_size}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        w, h, what, folder = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
        print(json.dumps(measure_one(w, h, what, folder)))
        return
    from reelforge.limits import MAX_PIXELS, MAX_SIDE

    sizes = sys.argv[1:] or ["1280x720", "3840x2160", f"{MAX_SIDE}x{MAX_PIXELS // MAX_SIDE}"]
    print(f"cap: {MAX_SIDE} a side, {MAX_PIXELS:,} pixels")
    print(f"{'size':>11} {'megapixels':>10}  {'storyboard peak':>15} {'time':>6}  "
          f"{'kenburns ffmpeg peak':>20} {'time':>6}")
    for size in sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        with tempfile.TemporaryDirectory(prefix="rf-bench-") as tmp:
            row = {}
            for what in ("image", "video"):  # the clip is made from the frame just drawn
                proc = subprocess.run([sys.executable, __file__, "--one", str(w), str(h), what, tmp],
                                      capture_output=True, text=True, cwd=ROOT)
                if proc.returncode:
                    print(f"{size:>11}: {proc.stderr.strip().splitlines()[-1]}")
                    break
                row[what] = json.loads(proc.stdout)
            else:
                print(f"{size:>11} {w * h / 1e6:>10.1f}  {row['image']['peak_mb']:>12} MB "
                      f"{row['image']['seconds']:>5}s  {row['video']['peak_mb']:>17} MB "
                      f"{row['video']['seconds']:>5}s")


if __name__ == "__main__":
    main()
