"""What a page of `reelforge serve` costs per poll on a big session: the time and size of
GET /s/ID/state.json (everything) and ?versions=1 (the digests a polling page asks for),
and of the session page itself, through Starlette's test client (no network).

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
        for st in session.meta.shots:  # recorded done (the files need not exist for this)
            st.image.state, st.image.path, st.image.size, st.image.sha256 = DONE, f"images/shot_{st.id:03d}.png", 1, "0" * 64
        session.write_meta()
        session.close()
        client = TestClient(create_app(out), base_url="http://127.0.0.1")
        for what in ("state.json?versions=1", "state.json", ""):
            url = f"/s/{session.id}/{what}".rstrip("/")
            client.get(url)
            runs = 5
            t0 = time.perf_counter()
            for _ in range(runs):
                r = client.get(url)
                assert r.status_code == 200, r.text
            ms = 1000 * (time.perf_counter() - t0) / runs
            print(f"{n:,} shots: GET /s/ID/{what or '(the page)':<22} {ms:6.0f} ms  {len(r.content) / 1000:8,.0f} kB")


if __name__ == "__main__":
    main()
