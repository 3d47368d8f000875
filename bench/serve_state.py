"""What a page of `reelforge serve` costs per poll on a big session: the time and size of
GET /s/ID/state.json (everything), ?versions=1 (the digests of every part), ?since=VERSION
(what a polling page asks: nothing changed, the usual case), ?since=VERSION after one shot
was edited (shots.json and the meta rewritten) and after one clip was rendered (a journal
event and a file renamed into place, the common change while a film is made), and of the
session page itself, through Starlette's test client.

Run: python bench/serve_state.py [SHOTS]   (default 1000)
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

warnings.simplefilter("ignore")  # starlette's test client on httpx

from starlette.testclient import TestClient  # noqa: E402

from reelforge.records import Shot, ShotPlan  # noqa: E402
from reelforge.store.meta import DONE  # noqa: E402
from reelforge.store.sessions import SessionStore  # noqa: E402
from reelforge.web.app import create_app  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as out:
        session = SessionStore(out).create("A big session")
        session.save_step_output("shots", ShotPlan(shots=tuple(
            Shot(id=i, scene_id="s1", description=f"Shot {i}", image_prompt="a harbour at dawn, " * 10,
                 motion_prompt="slow push in", narration="The city wakes.") for i in range(1, n + 1))))
        (session.path / "images").mkdir()
        for st in session.meta.shots:  # recorded done (a byte stands for each picture)
            st.image.state, st.image.path, st.image.size, st.image.sha256 = DONE, f"images/shot_{st.id:03d}.png", 1, "0" * 64
            (session.path / st.image.path).write_bytes(b"x")
        session.write_meta()
        session.close()
        client = TestClient(create_app(out), base_url="http://127.0.0.1")
        version = client.get(f"/s/{session.id}/state.json?since=").json()["version"]
        for what in ("state.json?versions=1", "state.json", f"state.json?since={version}", ""):
            url = f"/s/{session.id}/{what}".rstrip("/")
            client.get(url)
            runs = 5
            t0 = time.perf_counter()
            for _ in range(runs):
                r = client.get(url)
                assert r.status_code == 200, r.text
            ms = 1000 * (time.perf_counter() - t0) / runs
            label = "state.json?since=(same)" if "since" in what else (what or "(the page)")
            if what == "state.json":
                label = "state.json (files same)"
            print(f"{n:,} shots: GET /s/ID/{label:<24} {ms:7.1f} ms  {len(r.content) / 1000:8,.1f} kB")
        # one shot changes between polls: the poll reads the session again, answers that shot
        from reelforge.engine.edits import edit_shot, saved_plan

        runs, total, size = 5, 0.0, 0
        for i in range(runs):
            with SessionStore(out).open(session.id) as opened:
                edit_shot(opened, saved_plan(opened), 7, {"narration": f"Line {i}."})
            t0 = time.perf_counter()
            r = client.get(f"/s/{session.id}/state.json?since={version}")
            total += time.perf_counter() - t0
            size = len(r.content)
            version = r.json()["version"]
        print(f"{n:,} shots: GET /s/ID/{'state.json?since=(1 edit)':<24} {1000 * total / runs:7.1f} ms  "
              f"{size / 1000:8,.1f} kB")
        # one clip is rendered between polls (a run holds the session open): a journal event
        total = 0.0
        with SessionStore(out).open(session.id) as running:
            for i in range(1, runs + 1):
                produced = running.work_dir("videos", i) / "clip.mp4"
                produced.write_bytes(b"clip %d" % i)
                running.mark_shot_done("videos", i, produced, backend="bench", seed=i, seconds=1.0,
                                       fingerprint="bench", info={"duration": 3.0})
                t0 = time.perf_counter()
                r = client.get(f"/s/{session.id}/state.json?since={version}")
                total += time.perf_counter() - t0
                size = len(r.content)
                assert [s["id"] for s in r.json()["changed"]] == [i], r.json().get("changed")
                version = r.json()["version"]
        print(f"{n:,} shots: GET /s/ID/{'state.json?since=(1 clip)':<24} {1000 * total / runs:7.1f} ms  "
              f"{size / 1000:8,.1f} kB")


if __name__ == "__main__":
    main()
