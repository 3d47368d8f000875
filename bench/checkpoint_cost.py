"""Checkpoint cost per shot: time and bytes written to record one shot's attempt and its
done artifact, for sessions of different sizes. Run: python bench/checkpoint_cost.py"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from reelforge.records import Shot, ShotPlan  # noqa: E402
from reelforge.store.sessions import SessionStore  # noqa: E402


def measure(n_shots: int, tmp: Path) -> tuple[float, float, int]:
    store = SessionStore(tmp / f"out{n_shots}")
    s = store.create(f"bench {n_shots}")
    s.save_step_output("shots", ShotPlan(tuple(
        Shot(id=i, scene_id="s1", description=f"shot {i}", image_prompt="p") for i in range(1, n_shots + 1))))
    src = tmp / "src.png"
    Image.new("RGB", (16, 16), "blue").save(src)
    data = src.read_bytes()
    written = [0]
    original = s.write_meta

    def counting():
        original()
        written[0] += s.meta_path.stat().st_size

    s.write_meta = counting
    fsyncs = [0]
    real_fsync = os.fsync

    def counted(fd):
        fsyncs[0] += 1
        real_fsync(fd)

    os.fsync = counted
    t0 = time.perf_counter()
    for i in range(1, n_shots + 1):
        s.mark_shot_started("images", i)
        s.save_shot_checkpoint("images", i, {"prompt_id": f"p{i}", "server": "http://gpu:8188"})
        produced = s.work_dir("images", i) / f"p{n_shots}_{i}.png"
        produced.write_bytes(data)
        s.mark_shot_done("images", i, produced, backend="bench", seed=i, seconds=0.1, fingerprint="x")
    elapsed = time.perf_counter() - t0
    journal_bytes = s.journal_path.stat().st_size
    s.close()
    os.fsync = real_fsync
    measure.fsyncs = fsyncs[0] / n_shots
    per_shot_ms = 1000 * elapsed / n_shots
    meta_bytes_per_shot = (written[0] + journal_bytes) / n_shots
    return per_shot_ms, meta_bytes_per_shot, s.meta_path.stat().st_size


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10, 100, 2000]
    print(f"{'shots':>6} {'ms/shot':>9} {'fsyncs/shot':>12} {'meta+journal bytes/shot':>24} {'final meta bytes':>17}")
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            ms, b, meta = measure(n, Path(d))
            print(f"{n:>6} {ms:>9.2f} {measure.fsyncs:>12.2f} {b:>24.0f} {meta:>17}")
    print("(each shot: an attempt, a backend checkpoint and a done record journalled, the file "
          "committed by an atomic rename + sha256; fsyncs counted, snapshots included)")


if __name__ == "__main__":
    main()
