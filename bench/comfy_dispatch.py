"""Dispatch overhead of the ComfyUI backends per shot, against the fake ComfyUI server with
zero latency: everything reelforge does around a render (pick a server, upload the still,
checkpoint, submit, follow events, read /history, download) with no render time at all.

    python bench/comfy_dispatch.py [--shots 20] [--kind video|image]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reelforge.protocols import ShotJob  # noqa: E402
from reelforge.records import Shot  # noqa: E402
from tests.comfy.fake_comfy import FakeComfy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=20)
    ap.add_argument("--kind", choices=["video", "image"], default="video")
    args = ap.parse_args()

    from PIL import Image

    from reelforge.plugins.comfy_render import ComfyRenderer, VideoOptions
    from reelforge.plugins.image_gen.comfyui import ComfyImageGenerator, ImageOptions

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fake = FakeComfy(root / "server").start()
        fake.noise = False
        still = root / "still.png"
        Image.new("RGB", (64, 64), (10, 20, 30)).save(still)
        if args.kind == "video":
            backend = ComfyRenderer(VideoOptions(urls=(fake.url,)))
        else:
            backend = ComfyImageGenerator(ImageOptions(urls=(fake.url,)))
        times = []
        for i in range(args.shots + 1):  # the first shot warms up (object_info, media cache)
            shot = Shot(id=i + 1, scene_id="s", description="d", image_prompt="p", seed=i)
            work = root / "work" / str(i)
            work.mkdir(parents=True)
            job = ShotJob(session_id="bench", stage="videos" if args.kind == "video" else "images",
                          shot=shot, attempt=1, work_dir=work, checkpoint={},
                          cancelled=threading.Event(), save=lambda d: None)
            t0 = time.perf_counter()
            if args.kind == "video":
                backend.render(shot, still, job)
            else:
                backend.generate(shot, job)
            if i:
                times.append(time.perf_counter() - t0)
        fake.stop()
    ms = [t * 1000 for t in times]
    print(f"{args.kind}: {len(ms)} shots, per-shot wall time with a zero-latency server: "
          f"median {statistics.median(ms):.1f} ms, mean {statistics.mean(ms):.1f} ms, "
          f"max {max(ms):.1f} ms")


if __name__ == "__main__":
    main()
