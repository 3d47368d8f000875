"""Wall time of the whole offline job, idea to film.mp4, through the real CLI in a fresh
process (template planner, storyboard frames, Ken Burns clips, assemble).

Run: python bench/offline_run.py [RUNS]   (default 3; prints each run and the median)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    times = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "reelforge", "run", "The rise and fall of an ancient trading city",
                 "--new", "--output-dir", out], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            elapsed = time.perf_counter() - t0
            if proc.returncode:
                sys.exit(f"run failed:\n{proc.stderr}")
            film = next(Path(out).glob("sessions/*/film.mp4"))
            times.append(elapsed)
            print(f"run {i + 1}: {elapsed:6.2f} s  (film {film.stat().st_size / 1e6:.1f} MB)")
    print(f"median: {statistics.median(times):.2f} s over {runs} runs, 7 shots, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
