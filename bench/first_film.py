"""The newcomer's first film: one default run (`reelforge run IDEA --new`: 7 shots, narration,
soft subtitles, cuts) through the real CLI in a fresh process, and two ratios measured in
that same run:

- run / floor: the run's wall time over its floor, the work it cannot skip: every ffmpeg
  process it started (clips, fades, concat, audio, mux; their CPU seconds, from wait4) and
  the frames drawn (the storyboard stills and the card layers drawn over the clips, drawn
  again here, alone, and timed by CPU), spread over the machine's cores. Also as CPU: the run's CPU (its own and its children's, getrusage) over the same
  work's CPU, which a loaded machine inflates much less than wall time.
- film / (mix + mux): the film stage's wall time (as recorded in the session) over the
  wall time of its audio (mix, loudness, AAC encode) plus the one last mux, from the same
  run's ffmpeg log.

Every ffmpeg process of the run is listed with its wall and CPU seconds (REELFORGE_FFMPEG_LOG).

Run: python bench/first_film.py [RUNS]   (default 3; prints each run and the medians)
"""

from __future__ import annotations

import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDEA = "The rise and fall of an ancient trading city"
#: ffmpeg steps of the film stage that make its sound, and the last mux (by their `what`).
SOUND = ("mixing the film's audio", "measuring the loudness", "normalising the film's audio",
         "encoding the film's audio")
MUX = "finishing the film"


def cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_of_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def frames_cpu(session: Path) -> float:
    """CPU seconds to draw the session's frames again, alone, in this process: each shot's
    storyboard still (saved as the generator saves it) and the two card layers its clip gets."""
    import io

    sys.path.insert(0, str(ROOT))
    from reelforge.plugins.image_gen.storyboard import StoryboardGenerator
    from reelforge.plugins.image_gen.storyboard.card import card_overlay
    from reelforge.records import ShotPlan, structure

    shots = structure(json.loads((session / "shots.json").read_text()), ShotPlan).shots
    gen = StoryboardGenerator()
    size = (gen.options.width, gen.options.height)
    t0 = time.process_time()
    for shot in shots:
        gen.draw_plate(shot).save(io.BytesIO(), format="PNG", compress_level=1)
        for layer in ("bands", "text"):
            card_overlay(shot, size, duration_s=shot.duration_s, layer=layer).save(io.BytesIO(), format="PNG")
    return time.process_time() - t0


def one_run(verbose: bool) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as out:
        log = Path(out) / "ffmpeg.jsonl"
        env["REELFORGE_FFMPEG_LOG"] = str(log)
        cpu0, self0 = cpu_of_children(), cpu_of_self()
        t0, epoch0 = time.perf_counter(), time.time()
        proc = subprocess.run([sys.executable, "-m", "reelforge", "run", IDEA, "--new", "--output-dir", out],
                              env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        cpu = cpu_of_children() - cpu0 + cpu_of_self() - self0
        if proc.returncode:
            sys.exit(f"run failed:\n{proc.stderr}")
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        session = Path(glob.glob(f"{out}/sessions/*/*_meta.json")[0]).parent
        meta = json.loads(next(session.glob("*_meta.json")).read_text())
        frames = frames_cpu(session)
    cores = os.cpu_count() or 1
    ff_cpu = sum(r["cpu"] or r["wall"] for r in rows)
    floor = (ff_cpu + frames) / cores
    film = meta["film"]["seconds"]
    sound = sum(r["wall"] for r in rows if r["what"].startswith(SOUND))
    mux = sum(r["wall"] for r in rows if r["what"].startswith(MUX))
    first = min(r["start"] for r in rows) - epoch0
    last = wall - (max(r["start"] + r["wall"] for r in rows) - epoch0)
    if verbose:
        print(f"    the first ffmpeg started {first:.2f} s into the run; the last one ended {last:.2f} s before "
              f"its end")
        for r in rows:
            print(f"    {r['start'] - epoch0:6.2f} s  {r['wall']:6.3f} s wall {r['cpu'] or 0:6.3f} s CPU  {r['what']}")
            print(f"             ffmpeg {' '.join(r['cmd'])[:300]}")
    return {"before": first, "after": last, "wall": wall, "cpu": cpu, "floor": floor, "floor_cpu": ff_cpu + frames, "film": film,
            "sound": sound, "mux": mux, "run_ratio": wall / floor, "cpu_ratio": cpu / (ff_cpu + frames),
            "film_ratio": film / (sound + mux)}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"{runs} default runs of {IDEA!r}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    results = []
    for i in range(runs):
        r = one_run(verbose=i == 0)
        results.append(r)
        print(f"run {i + 1}: {r['wall']:5.2f} s wall, {r['cpu']:5.2f} s CPU; floor {r['floor']:5.2f} s "
              f"({r['floor_cpu']:5.2f} s CPU of ffmpeg and frames); run/floor {r['run_ratio']:.2f} "
              f"(CPU {r['cpu_ratio']:.2f}); film {r['film']:.2f} s / (sound {r['sound']:.2f} s + mux "
              f"{r['mux']:.2f} s) = {r['film_ratio']:.2f}; before the first ffmpeg {r['before']:.2f} s, after "
              f"the last {r['after']:.2f} s")

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(f"median: run {med('wall'):.2f} s wall / {med('cpu'):.2f} s CPU; run/floor {med('run_ratio'):.2f} "
          f"(CPU {med('cpu_ratio'):.2f}); film/(mix + mux) {med('film_ratio'):.2f}")


if __name__ == "__main__":
    main()
