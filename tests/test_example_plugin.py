"""The example plugin distribution (examples/reelforge-example-plugin), the way a user gets
it: built and installed with pip, then used through the command line.

pip installs it with ``--target`` into a folder of its own, which the command-line
subprocesses here put on PYTHONPATH: reelforge finds it through its entry points exactly as
in site-packages, but the environment running the tests is left as it was (an install into
it would make every later ``reelforge`` run there load the ledger, and entry points that
this process could see but not import).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "reelforge-example-plugin"
DIST = "reelforge-example-plugin"
ENTRY_POINTS = ("ledger", "vignette")


def _run(args: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=180, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """A folder holding the example, installed by pip from its source (a wheel build)."""
    site = tmp_path_factory.mktemp("example-site")
    # --no-deps: reelforge itself is already installed here (and is on no index).
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
          "--target", site, EXAMPLE])
    return site


@pytest.fixture
def cli_env(example_site) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFORGE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(example_site), env.get("PYTHONPATH")]))
    env["REELFORGE_LOAD_PLUGINS"] = ",".join(ENTRY_POINTS)
    return env


def test_reelforge_plugins_lists_it(cli_env):
    out = _run([sys.executable, "-m", "reelforge", "plugins", "--json"], env=cli_env).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    for name in ENTRY_POINTS:
        assert plugins[name]["distribution"] == DIST
        assert plugins[name]["version"] == "0.1.0"
    assert plugins["vignette"]["backends"] == {"image": ["vignette"]}
    assert {"shot_completed", "shot_failed", "shot_skipped"} <= set(plugins["ledger"]["hooks"])

    text = _run([sys.executable, "-m", "reelforge", "plugins"], env=cli_env).stdout
    assert f"vignette ({DIST} 0.1.0): reelforge_ledger.vignette" in text


def test_a_run_uses_it_end_to_end(cli_env, tmp_path):
    shots = 3
    out = tmp_path / "out"
    _run([sys.executable, "-m", "reelforge", "run", "A lighthouse keeper befriends a storm",
          "--new", "--image-gen", "vignette", "--output-dir", str(out), "-o", f"shots={shots}",
          # small frames keep this test quick
          "-o", "vignette.base_options=width=320,height=180",
          "-o", "kenburns.width=320", "-o", "kenburns.height=180"],
         env=cli_env, cwd=tmp_path)
    [session] = (out / "sessions").iterdir()
    assert (session / "film.mp4").stat().st_size > 0
    with open(session / "ledger.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["stage"], int(r["shot"])) for r in rows) == [
        (stage, n) for stage in ("images", "narration", "videos") for n in range(1, shots + 1)]
    assert {r["outcome"] for r in rows} == {"done"}
    assert {r["backend"] for r in rows if r["stage"] == "images"} == {"vignette"}
    meta = json.loads((session / f"{session.name}_meta.json").read_text())
    assert meta["backends"]["image"] == {
        "name": "vignette",
        "options": {"base": "storyboard", "base_options": ["width=320", "height=180"],
                    "strength": 0.8, "grain": 0.08}}


def test_its_own_tests_pass(cli_env):
    _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], env=cli_env, cwd=EXAMPLE)
