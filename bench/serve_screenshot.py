"""Screenshots of `reelforge serve` and `reelforge report` in Debian's headless Chromium, for
the docs (docs/img/serve*.png, docs/img/report.png), with the figures a person waits for:
the page load, and each click of the creator's loop until the page shows what it did.

Makes a 4-shot film on the offline defaults first (storyboard frames, Ken Burns clips,
espeak narration), then in the page: edit shot 2's image prompt, redo it with a new seed,
and open its takes; then holds the session from another process to show the greyed buttons.
Needs /usr/bin/chromium (apt-get install chromium) and Playwright.

Writes:
  serve_list.png    the sessions and the new-film form
  serve.png         a session's page: the film first (its poster a frame of the film), the summary
  serve_shot.png    shot 2 after an edit and a redo: EDIT, its takes, the edit form
  serve_locked.png  the same page while `reelforge resume` elsewhere holds the session
  report.png        `reelforge report`'s index.html

Run: python bench/serve_screenshot.py [OUT_DIR]   (default docs/img)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import chromium, missing_browser, serving  # noqa: E402

HOLD = ("import sys\nfrom reelforge.store.sessions import SessionStore\n"
        "s = SessionStore(sys.argv[1]).open(sys.argv[2])\nprint('locked', flush=True)\nsys.stdin.read()\n")


def finished(page, label: str) -> str:
    """Wait until the page's action line says how ``label`` ended; exit if it failed."""
    line = page.wait_for_function(
        """label => { const s = document.querySelector('#action span');
                      return s && s.dataset.lastOk !== undefined && s.textContent.startsWith(label + ':')
                             ? s.dataset.lastOk + ' ' + s.textContent : null; }""",
        arg=label, timeout=300_000).json_value()
    if not line.startswith("1 "):
        sys.exit(f"{label} failed: {line}")
    return line[2:]


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
            page.goto(url + "/")
            page.screenshot(path=str(dest / "serve_list.png"), full_page=True)

            t0 = time.perf_counter()
            with urllib.request.urlopen(f"{url}/s/{sid}/poster.jpg") as answer:
                size = len(answer.read())
            t1 = time.perf_counter()
            with urllib.request.urlopen(f"{url}/s/{sid}/poster.jpg") as answer:
                answer.read()
            print(f"the film's poster, a frame taken from film.mp4 ({size / 1000:.0f} kB JPEG): first request "
                  f"{t1 - t0:.2f} s (made), next {time.perf_counter() - t1:.3f} s (kept)")
            t0 = time.perf_counter()
            page.goto(f"{url}/s/{sid}")
            page.evaluate("() => document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_function("() => Array.from(document.querySelectorAll('img.thumb'))"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            print(f"session page loaded with its pictures in {time.perf_counter() - t0:.2f} s")
            page.wait_for_function("() => { const v = document.querySelector('#film video'); const i = new Image();"
                                   " i.src = v.poster; return i.complete && i.naturalWidth > 0; }", timeout=60_000)
            page.screenshot(path=str(dest / "serve.png"))

            t0 = time.perf_counter()
            page.locator("#shot-2 details.edit summary").click()
            page.locator('#shot-2 form[data-edit="2"] textarea[name="image_prompt"]').fill(
                "a red kite over the lighthouse at dusk")
            page.locator('#shot-2 form[data-edit="2"] button[type="submit"]').click()
            finished(page, "remake after editing shot 2")
            print(f"edit click to the session COMPLETE again (image, clip, film remade): "
                  f"{time.perf_counter() - t0:.2f} s")
            t0 = time.perf_counter()
            page.locator('#shot-2 button[data-redo="2-image"]').click()
            said = finished(page, "redo shot 2 image with a new seed")
            print(f"redo click to the session COMPLETE again: {time.perf_counter() - t0:.2f} s ({said})")
            page.evaluate("() => document.querySelectorAll('#shot-2 details').forEach(d => d.open = true)")
            page.evaluate("() => document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_function("() => Array.from(document.querySelectorAll('#shot-2 img'))"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            page.locator("#shot-2").screenshot(path=str(dest / "serve_shot.png"))

            holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), sid], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env)
            try:
                if holder.stdout.readline().strip() != "locked":
                    sys.exit("the holding process did not take the lock")
                page.wait_for_selector('button[data-redo="1-image"]:disabled', timeout=60_000)
                page.wait_for_selector("#summary .held", timeout=60_000)
                page.locator("#summary .held").scroll_into_view_if_needed()
                page.evaluate("() => window.scrollBy(0, -120)")
                page.screenshot(path=str(dest / "serve_locked.png"))
            finally:
                holder.kill()
                holder.wait()
            page.close()
        subprocess.run([sys.executable, "-m", "reelforge", "report", sid, "--output-dir", str(out)], env=env,
                       check=True, capture_output=True)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto((out / "sessions" / sid / "index.html").as_uri())
            page.evaluate("() => document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_function("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(dest / "report.png"))
            page.close()
    for name in ("serve_list.png", "serve.png", "serve_shot.png", "serve_locked.png", "report.png"):
        print(f"wrote {dest / name} ({(dest / name).stat().st_size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()
