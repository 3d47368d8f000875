"""Time each offline stage for a 7-shot plan: planner, storyboard frames, kenburns clips
(as many at once as the renderer's concurrency), assemble.

    python bench/offline_stages.py ["idea"] [--shots 7] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reelforge.protocols import ShotJob  # noqa: E402
from reelforge.plugins.image_gen.storyboard import StoryboardGenerator  # noqa: E402
from reelforge.plugins.kenburns import KenBurnsRenderer  # noqa: E402
from reelforge.media.ffmpeg import assemble, probe  # noqa: E402
from reelforge.plugins.story_llm.offline import OfflinePlanner, OfflinePlannerOptions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("idea", nargs="?", default="The rise and fall of an ancient trading city")
    parser.add_argument("--shots", type=int, default=7)
    parser.add_argument("--transition", default="cut", choices=("cut", "crossfade"))
    parser.add_argument("--keep", type=Path, help="write into this folder and keep it")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="reelforge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cancelled = threading.Event()

    def job(shot, stage):
        return ShotJob(session_id="bench", stage=stage, shot=shot, attempt=1,
                       work_dir=work / stage, checkpoint={}, cancelled=cancelled, save=lambda d: None)

    timings: list[tuple[str, float]] = []
    t_all = time.perf_counter()

    t = time.perf_counter()
    writer = OfflinePlanner(OfflinePlannerOptions(shots=args.shots))
    story = writer.write_story(args.idea)
    scenes = writer.build_scene_graph(story)
    plan = writer.plan_shots(story, scenes)
    timings.append(("planner (story, scenes, shots)", time.perf_counter() - t))

    gen = StoryboardGenerator()
    t = time.perf_counter()
    with ThreadPoolExecutor(gen.concurrency) as pool:
        images = list(pool.map(lambda s: gen.generate(s, job(s, "images")), plan.shots))
    timings.append((f"{len(images)} storyboard frames (concurrency {gen.concurrency})", time.perf_counter() - t))

    renderer = KenBurnsRenderer()
    t = time.perf_counter()
    with ThreadPoolExecutor(renderer.concurrency) as pool:
        clips = list(pool.map(lambda si: renderer.render(si[0], si[1], job(si[0], "videos")),
                              zip(plan.shots, images)))
    timings.append((f"{len(clips)} kenburns clips (concurrency {renderer.concurrency}, "
                    f"{renderer.threads()} x264 thread(s) each)", time.perf_counter() - t))

    t = time.perf_counter()
    film = assemble(clips, work / "film.mp4", transition=args.transition)
    timings.append((f"assemble ({args.transition})", time.perf_counter() - t))
    total = time.perf_counter() - t_all

    info = probe(film)
    print(f"idea: {args.idea!r} -> {story.title!r}, {len(scenes.scenes)} scenes, {len(plan.shots)} shots")
    for label, seconds in timings:
        print(f"  {label:<60} {seconds:6.2f} s")
    print(f"  {'total':<60} {total:6.2f} s")
    print(f"film: {info['duration']:.2f} s, {info['width']}x{info['height']} {info['codec']} @ {info['fps']:g} fps"
          + (f" at {film}" if args.keep else ""))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
