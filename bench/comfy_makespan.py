"""How close the ComfyUI backends come to the physical limit when images and clips share K
servers (issue 12 item 5): a whole run (offline story, `--image-gen comfyui --renderer
comfyui`) against K fake ComfyUI servers on 127.0.0.1 whose nodes take real time, for N
shots, printed side by side as makespan / ideal.

- makespan: from the first shot started to the last shot finished (images and clips);
- ideal: the servers' own execution time of every prompt (from their history timestamps)
  spread perfectly over the K servers, or one shot's image + clip if that is longer.

A clip takes several times an image (``--video-s`` against ``--image-s``), as on a GPU.
Each measurement runs in a fresh process.

    python bench/comfy_makespan.py [--shots 8,24] [--servers 1,2,4] [--image-s 0.1] [--video-s 0.6]
                                   [--rounds 3] [--baseline DIR]

``--baseline DIR`` measures another reelforge tree side by side (its reelforge and plugins,
this tree's fake server), e.g. the code before the shared pool:

    mkdir /tmp/before && git archive 07d1050 | tar -x -C /tmp/before
    python bench/comfy_makespan.py --rounds 3 --baseline /tmp/before

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

HERE = Path(__file__).resolve().parents[1]


def _fake_class():
    """The fake server of this tree, loaded by path (a baseline tree has its own, older one)."""
    import importlib.util

    path = Path(os.environ.get("REELFORGE_BENCH_FAKE", HERE / "tests" / "comfy" / "fake_comfy.py"))
    spec = importlib.util.spec_from_file_location("_bench_fake_comfy", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.FakeComfy


class _Clock:
    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.lock = threading.Lock()

    def shot_started(self, session, stage, shot, attempt):
        with self.lock:
            now = time.monotonic()
            self.first = now if self.first is None else min(self.first, now)

    def shot_completed(self, session, stage, shot, artifact):
        with self.lock:
            self.last = time.monotonic()


def _executions(fake) -> list[float]:
    """Seconds each prompt executed on this server (history timestamps, in ms)."""
    out = []
    for entry in fake.history.values():
        stamps = {name: data.get("timestamp") for name, data in entry["status"]["messages"]}
        if stamps.get("execution_start") and stamps.get("execution_success"):
            out.append((stamps["execution_success"] - stamps["execution_start"]) / 1000.0)
    return out


def run_once(n: int, k: int, image_s: float, video_s: float, root: Path) -> tuple[float, float]:
    from reelforge import hookimpl
    from reelforge.engine.runner import Runner

    FakeComfy = _fake_class()
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
        hookimpl(_Clock.shot_started)
        hookimpl(_Clock.shot_completed)
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


def _measure(tree: Path, n: int, k: int, args) -> float:
    """makespan / ideal of one run, in a fresh process using ``tree``'s reelforge and plugins."""
    import json
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(tree), env.get("PYTHONPATH", "")] if p)
    env["REELFORGE_BENCH_FAKE"] = str(HERE / "tests" / "comfy" / "fake_comfy.py")
    env.setdefault("NO_PROXY", "127.0.0.1,localhost")
    out = subprocess.run([sys.executable, __file__, "--child", f"{n},{k},{args.image_s},{args.video_s}"],
                         env=env, cwd=tree, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SystemExit(f"{tree}: N={n} K={k} failed:\n{out.stdout}{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["ratio"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", default="8,24")
    ap.add_argument("--servers", default="1,2,4")
    ap.add_argument("--image-s", type=float, default=0.1)
    ap.add_argument("--video-s", type=float, default=0.6)
    ap.add_argument("--rounds", type=int, default=1, help="runs per cell; the median ratio is shown")
    ap.add_argument("--baseline", type=Path, help="another reelforge tree, measured side by side")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import json

        sys.path.insert(0, os.getcwd())
        logging.disable(logging.WARNING)
        n, k, image_s, video_s = args.child.split(",")
        with tempfile.TemporaryDirectory() as tmp:
            makespan, ideal = run_once(int(n), int(k), float(image_s), float(video_s), Path(tmp))
        print(json.dumps({"ratio": makespan / ideal, "makespan": makespan, "ideal": ideal}))
        return
    shots = [int(x) for x in args.shots.split(",")]
    servers = [int(x) for x in args.servers.split(",")]
    trees = [("this tree", HERE)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    print(f"image {args.image_s:g} s, clip {args.video_s:g} s per shot on the server; "
          f"makespan / ideal (median of {args.rounds}):")
    label = max(len(name) for name, _ in trees)
    print(" " * (label + 9) + "".join(f"   K={k:<6d}" for k in servers))
    for n in shots:
        for name, tree in trees:
            cells = []
            for k in servers:
                ratios = sorted(_measure(tree, n, k, args) for _ in range(args.rounds))
                cells.append(ratios[len(ratios) // 2])
            print(f"N={n:<5d} {name:<{label}s}  " + "".join(f"   {r:<8.2f}" for r in cells), flush=True)


if __name__ == "__main__":
    main()
