"""Helpers for the real-browser tests and the screenshot script: start `reelforge serve` in a
subprocess (on a free port, with the fake backends of tests/crash_plugin.py) and launch
Debian's Chromium through Playwright (never a downloaded browser)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CHROMIUM = os.environ.get("REELFORGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: The name of the fake backends the served process registers (tests/crash_plugin.py).
FAKE = "crashtest"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return (f"Chromium is not installed at {CHROMIUM} (apt-get install chromium, or set REELFORGE_CHROMIUM): "
                f"the browser tests drive Debian's; REELFORGE_NO_BROWSER=1 turns them off")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed: pip install -e '.[test]'"
    return None


@contextlib.contextmanager
def serving(output_dir: Path, *, fakes: bool = True, timeout: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`reelforge serve --port 0` over ``output_dir``; yields (base URL, process). With
    ``fakes``, the served process has the fake backends of tests/crash_plugin.py and no
    installed plugin; otherwise the installed ones. Stopped with Ctrl-C (SIGINT) at the
    end, as a person would."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "PYTHONUNBUFFERED": "1",
           "REELFORGE_RETRY_BACKOFF": "0"}
    if fakes:
        env.update(REELFORGE_PLUGINS="crash_plugin", REELFORGE_LOAD_PLUGINS="")
    else:
        env.pop("REELFORGE_LOAD_PLUGINS", None)
        env.pop("REELFORGE_PLUGINS", None)
    env.pop("REELFORGE_FAKE_LOG", None)
    proc = subprocess.Popen([sys.executable, "-m", "reelforge", "serve", "--port", "0",
                             "--output-dir", str(output_dir)], env=env, cwd=output_dir.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        url = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if m:
                url = m.group(1)
                break
        if url is None:
            proc.kill()
            raise RuntimeError(f"reelforge serve did not start: {proc.communicate(timeout=10)}")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Debian's) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
