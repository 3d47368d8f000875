"""How close the ComfyUI backends come to the physical limit when images and clips share K
servers (issue 12 item 5): a whole run (offline story, `--image-gen comfyui --renderer
comfyui`) against K fake ComfyUI servers on 127.0.0.1 whose nodes take real time, for N
shots, printed side by side as makespan / ideal.

- makespan: from the first shot started to the last shot finished (images and clips);
- ideal: the servers' own execution time of every prompt (from their history timestamps)
  spread perfectly over the K servers, or one shot's image + clip if that is longer.

A clip takes several times an image (``--video-s`` against ``--image-s``), as on a GPU.

    python bench/comfy_makespan.py [--shots 8,24] [--servers 1,2,4] [--image-s 0.1] [--video-s 0.6]

Target (issue 12): <= 1.10 at N=8, K=4 and at N=24.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from framework import hookimpl  # noqa: E402
from tests.comfy.fake_comfy import FakeComfy  # noqa: E402


class _Clock:
    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.lock = threading.Lock()

    @hookimpl
    def shot_started(self, session, stage, shot, attempt):
        with self.lock:
            now = time.monotonic()
            self.first = now if self.first is None else min(self.first, now)

    @hookimpl
    def shot_completed(self, session, stage, shot, artifact):
        with self.lock:
            self.last = time.monotonic()


def _executions(fake: FakeComfy) -> list[float]:
    """Seconds each prompt executed on this server (history timestamps, in ms)."""
    out = []
    for entry in fake.history.values():
        stamps = {name: data.get("timestamp") for name, data in entry["status"]["messages"]}
        if stamps.get("execution_start") and stamps.get("execution_success"):
            out.append((stamps["execution_success"] - stamps["execution_start"]) / 1000.0)
    return out


def run_once(n: int, k: int, image_s: float, video_s: float, root: Path) -> tuple[float, float]:
    from framework.runner import Runner

    fakes = []
    for i in range(k):
        fake = FakeComfy(root / f"server{i}")
        fake.noise = False
        # image-basic: EmptyImage + SaveImage; video-basic: LoadImage, RepeatImageBatch,
        # CreateVideo, SaveVideo. The time goes to one node of each, as a sampler's would.
        fake.class_latency = {"SaveImage": image_s, "CreateVideo": video_s}
        fakes.append(fake.start())
    try:
        runner = Runner(root / "out", backends={"image": "comfyui", "video": "comfyui"},
                        options={"comfyui": {"urls": tuple(f.url for f in fakes),
                                             "poll_interval_s": 0.05},
                                 "offline": {"shots": n}})
        clock = _Clock()
        runner.pm.register(clock)
        result = runner.start(f"bench {n} shots on {k} servers")
        if not result.ok:
            raise SystemExit(f"run failed: {result.failed}")
        makespan = clock.last - clock.first
        per_server = [_executions(f) for f in fakes]
        work = sum(sum(x) for x in per_server)
        chain = image_s + video_s
        ideal = max(work / k, chain)
        return makespan, ideal
    finally:
        for fake in fakes:
            fake.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", default="8,24")
    ap.add_argument("--servers", default="1,2,4")
    ap.add_argument("--image-s", type=float, default=0.1)
    ap.add_argument("--video-s", type=float, default=0.6)
    ap.add_argument("--rounds", type=int, default=1, help="runs per cell; the median ratio is shown")
    args = ap.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    logging.disable(logging.WARNING)
    shots = [int(x) for x in args.shots.split(",")]
    servers = [int(x) for x in args.servers.split(",")]
    print(f"image {args.image_s:g} s, clip {args.video_s:g} s per shot on the server; "
          f"makespan / ideal (median of {args.rounds}):")
    print("        " + "".join(f"   K={k:<6d}" for k in servers))
    for n in shots:
        cells = []
        for k in servers:
            ratios = []
            for _ in range(args.rounds):
                with tempfile.TemporaryDirectory() as tmp:
                    makespan, ideal = run_once(n, k, args.image_s, args.video_s, Path(tmp))
                ratios.append(makespan / ideal)
            ratios.sort()
            cells.append(ratios[len(ratios) // 2])
        print(f"N={n:<5d} " + "".join(f"   {r:<8.2f}" for r in cells), flush=True)


if __name__ == "__main__":
    main()
