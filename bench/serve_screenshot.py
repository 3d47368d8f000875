"""Screenshots of `reelforge serve` and `reelforge report` in Debian's headless Chromium, for
the docs (docs/img/serve.png, docs/img/report.png), with the figures a person waits for:
the page load, and a "Redo image" click until the page shows the new image.

Makes a 4-shot film on the offline defaults first (storyboard frames, Ken Burns clips,
espeak narration). Needs /usr/bin/chromium (apt-get install chromium) and Playwright.

Run: python bench/serve_screenshot.py [OUT_DIR]   (default docs/img)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import chromium, missing_browser, serving  # noqa: E402


def main() -> None:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"
    problem = missing_browser()
    if problem:
        sys.exit(problem)
    dest.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REELFORGE_LOAD_PLUGINS", None)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "output"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "reelforge", "run", "A lighthouse keeper befriends a storm",
                               "--new", "-o", "shots=4", "--output-dir", str(out)], env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode:
            sys.exit(f"run failed:\n{proc.stderr}")
        print(f"film of 4 shots made in {time.perf_counter() - t0:.1f} s")
        sid = next((out / "sessions").iterdir()).name
        with serving(out, fakes=False) as (url, _proc), chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            t0 = time.perf_counter()
            page.goto(f"{url}/s/{sid}")
            page.evaluate("() => document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_function("() => Array.from(document.querySelectorAll('img.thumb'))"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            print(f"session page loaded with its pictures in {time.perf_counter() - t0:.2f} s")
            t0 = time.perf_counter()
            page.locator('button[data-redo="2-image"]').click()
            page.wait_for_selector('#shot-2 li[data-stage="image"][data-state="done"][data-takes="1"]',
                                   timeout=120_000)
            print(f"redo click to the new image on the page: {time.perf_counter() - t0:.2f} s")
            page.wait_for_selector("#action [data-last-ok='1']", timeout=120_000)
            print(f"redo click to the session COMPLETE again (its clip and the film remade if the image changed): "
                  f"{time.perf_counter() - t0:.2f} s")
            page.locator("#shot-2 details").nth(1).evaluate("d => d.open = true")
            page.screenshot(path=str(dest / "serve.png"), full_page=True)
            page.close()
        subprocess.run([sys.executable, "-m", "reelforge", "report", sid, "--output-dir", str(out)], env=env,
                       check=True, capture_output=True)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto((out / "sessions" / sid / "index.html").as_uri())
            page.wait_for_timeout(500)
            page.screenshot(path=str(dest / "report.png"))
            page.close()
    for name in ("serve.png", "report.png"):
        print(f"wrote {dest / name} ({(dest / name).stat().st_size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()
