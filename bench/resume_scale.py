"""Resume start-up as sessions grow: time from starting `reelforge resume` to the first new
shot's backend call, for a session of N shots with half of them done (images and clips), side by
side at 10 and 2,000 shots. Also the time `sessions list` takes per session.

Run: python bench/resume_scale.py [--big 2000] [--small 10] [--repeat 3] [--list 200]
Target (issue 12): first new shot at 2,000 shots <= 1.5x that at 10.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from reelforge import hookimpl  # noqa: E402
from reelforge.errors import StageError  # noqa: E402
from reelforge.protocols import NoOptions  # noqa: E402
from reelforge.records import Scene, SceneGraph, Shot, ShotPlan, Story  # noqa: E402
from reelforge.engine.fingerprints import of_inputs  # noqa: E402
from reelforge.engine.runner import Runner  # noqa: E402
from reelforge.store.sessions import SessionStore  # noqa: E402
from reelforge.testing import registered  # noqa: E402


class BenchStory:
    """Never asked: the bench's sessions have every story step done."""

    name = "bench"
    Options = NoOptions

    def __init__(self, options=None):
        pass

    def write_story(self, idea):
        raise StageError("the bench story writer is never asked")

    build_scene_graph = plan_shots = write_story


class FirstCallImages:
    """Writes the wall-clock time of the first new shot to $BENCH_FIRST, then stops the run."""

    name = "bench"
    Options = NoOptions
    concurrency = 1

    def __init__(self, options=None):
        pass

    def generate(self, shot, job):
        Path(os.environ["BENCH_FIRST"]).write_text(repr(time.time()))
        job.cancelled.set()
        raise StageError("the bench stops at the first new shot")


class BenchClips:
    name = "bench"
    Options = NoOptions
    concurrency = 1

    def __init__(self, options=None):
        pass

    def render(self, shot, image, job):
        raise StageError("the bench stops before any clip")


@hookimpl
def register_story_llms(register):
    register(BenchStory)


@hookimpl
def register_image_generators(register):
    register(FirstCallImages)


@hookimpl
def register_renderers(register):
    register(BenchClips)


BACKENDS = {"story": "bench", "image": "bench", "video": "bench"}


def build(out: Path, n: int, runner_fp) -> str:
    """A session of ``n`` shots whose first half has done images and clips, made through the
    session API (rendering 1,000 clips would take minutes)."""
    store = SessionStore(out)
    s = store.create(f"bench {n}")
    story = Story(title="Bench", logline="l", synopsis="s")
    s.save_step_output("story", story)
    s.save_step_output("scene_graph", SceneGraph((Scene(id="s1", order=1, summary="x"),)))
    plan = ShotPlan(tuple(Shot(id=i, scene_id="s1", description=f"shot {i}", image_prompt=f"p{i}",
                               seed=i) for i in range(1, n + 1)))
    s.save_step_output("shots", plan)
    tiny_png = out / "tiny.png"
    Image.new("RGB", (8, 8), "blue").save(tiny_png)
    clip = out / "tiny.mp4"
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=blue:s=16x16:d=0.2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y",
                    str(clip)], check=True)
    png, mp4 = tiny_png.read_bytes(), clip.read_bytes()
    for shot in plan.shots[: n // 2]:
        p = s.work_dir("images", shot.id) / "made.png"
        p.write_bytes(png)
        s.mark_shot_done("images", shot.id, p, backend="bench", seed=shot.seed, seconds=0.1,
                         fingerprint=runner_fp("images", shot, None))
        sha = s.shot_state(shot.id).image.sha256
        v = s.work_dir("videos", shot.id) / "made.mp4"
        v.write_bytes(mp4)
        s.mark_shot_done("videos", shot.id, v, backend="bench", seed=shot.seed, seconds=0.1,
                         fingerprint=runner_fp("videos", shot, sha))
    s.close()
    return s.id


def first_shot_seconds(out: Path, sid: str) -> float:
    """Wall time from starting `reelforge resume SID` to its first new shot reaching the
    image backend, in a fresh process (imports and plugin loading included, as a user sees)."""
    stamp = out / "first.txt"
    stamp.unlink(missing_ok=True)
    env = dict(os.environ, REELFORGE_PLUGINS="resume_scale", REELFORGE_LOAD_PLUGINS="",
               BENCH_FIRST=str(stamp),
               PYTHONPATH=os.pathsep.join([str(ROOT / "bench"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "reelforge", "resume", sid, "--output-dir", str(out),
           "--story-llm", "bench", "--image-gen", "bench", "--renderer", "bench"]
    t0 = time.time()
    subprocess.run(cmd, env=env, capture_output=True, cwd=ROOT, timeout=300)
    if not stamp.exists():
        raise SystemExit(f"no new shot reached the backend: {' '.join(cmd)}")
    return float(stamp.read_text()) - t0


def fingerprint_fn(out: Path):
    with registered(sys.modules[__name__]):
        runner = Runner(out, backends=BACKENDS)
        backends = runner._resolve_backends(None)

    def fp(stage, shot, sha):
        return of_inputs(stage, shot, backends["image" if stage == "images" else "video"], sha)
    return fp


def list_seconds(out: Path, n_sessions: int) -> float:
    store = SessionStore(out)
    for i in range(n_sessions):
        s = store.create(f"listed {i}")
        s.close()
    env_cmd = [sys.executable, "-m", "reelforge", "sessions", "list", "--output-dir", str(out)]
    t0 = time.perf_counter()
    subprocess.run(env_cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--big", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--list", type=int, default=200, help="sessions for the list timing")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results: dict[int, float] = {}
        sessions: dict[int, tuple[Path, str]] = {}
        for n in (args.small, args.big):
            out = tmp / f"out{n}"
            out.mkdir()
            t0 = time.perf_counter()
            sid = build(out, n, fingerprint_fn(out))
            build_s = time.perf_counter() - t0
            sessions[n] = (out, sid)
            print(f"built a {n}-shot session ({n // 2} done) in {build_s:.1f} s")
        times: dict[int, list[float]] = {n: [] for n in sessions}
        for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
            for n, (out, sid) in sessions.items():
                times[n].append(first_shot_seconds(out, sid))
        for n in sessions:
            results[n] = statistics.median(times[n])
            print(f"{n:>6} shots ({n // 2} done): first new shot {results[n] * 1000:7.1f} ms after "
                  f"the process starts (median of {args.repeat})")
        ratio = results[args.big] / results[args.small]
        print(f"ratio {args.big}/{args.small}: {ratio:.2f}x (target <= 1.5x)")
        empty = tmp / "empty"
        base = list_seconds(empty, 0)
        many = list_seconds(tmp / "many", args.list)
        print(f"sessions list: {base * 1000:.0f} ms empty, {many * 1000:.0f} ms with {args.list} sessions "
              f"({(many - base) * 1000 / max(1, args.list):.2f} ms per session)")


if __name__ == "__main__":
    main()
