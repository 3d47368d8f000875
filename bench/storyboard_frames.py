"""How long the offline storyboard takes to draw one frame (it was a timed unit test; speed
targets live here, where a loaded machine cannot fail the suite). Target: under 0.2 s a
frame on one core.

    python bench/storyboard_frames.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from reelforge.plugins.image_gen.storyboard import StoryboardGenerator
from reelforge.protocols import ShotJob
from reelforge.records import Shot


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    gen = StoryboardGenerator()
    shots = [Shot(id=i, scene_id=f"s{1 + i // 4}", description=f"Wide shot of the harbour quays, number {i}",
                  image_prompt=f"wide shot of the harbour quays at dusk, prompt number {i}", characters=("Mira",),
                  seed=i) for i in range(1, n + 1)]
    gen.draw(shots[0])  # warm the font cache
    wall, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for shot in shots:
            job = ShotJob(session_id="s", stage="images", shot=shot, attempt=1, work_dir=Path(tmp),
                          checkpoint={}, cancelled=threading.Event(), save=lambda d: None)
            w, c = time.perf_counter(), time.process_time()
            gen.generate(shot, job)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    print(f"{n} frames at the default size: "
          f"median {statistics.median(wall) * 1000:.0f} ms wall, {statistics.median(cpu) * 1000:.0f} ms CPU a frame "
          f"(target < 200 ms)")


if __name__ == "__main__":
    main()
