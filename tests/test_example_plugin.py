"""The example plugin distribution (examples/reelforge-example-plugin), the way a user gets
it: installed with pip into this environment, then used through the command line.

The install is an editable one into the interpreter running the tests (in CI, the fresh
virtual environment .ci/run makes). Installed plugins do not leak into the rest of the
suite: conftest sets REELFORGE_LOAD_PLUGINS to empty, so only the subprocesses here, which
name the example's entry points, load them.
"""

from __future__ import annotations

import csv
import importlib.metadata
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


def _installed_from_here() -> bool:
    """Is the example installed, editable, from this checkout (not another worktree)?"""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        return False
    direct_url = dist.read_text("direct_url.json")
    if not direct_url:
        return False
    info = json.loads(direct_url)
    return (info.get("dir_info", {}).get("editable")
            and info.get("url") == EXAMPLE.resolve().as_uri())


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=180, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def example_installed() -> None:
    if not _installed_from_here():
        # --no-deps: reelforge itself is already installed here (and not on any index).
        # Build isolation stays on: a fresh venv has no `wheel`, which setuptools needs.
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(EXAMPLE)])


@pytest.fixture
def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["REELFORGE_LOAD_PLUGINS"] = ",".join(ENTRY_POINTS)
    for name in ("REELFORGE_PLUGINS", "REELFORGE_OUTPUT_DIR", "REELFORGE_FAKE_LOG"):
        env.pop(name, None)
    return env


def test_reelforge_plugins_lists_it(example_installed, cli_env):
    out = _run([sys.executable, "-m", "framework", "plugins", "--json"], env=cli_env).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    for name in ENTRY_POINTS:
        assert plugins[name]["distribution"] == DIST
        assert plugins[name]["version"] == "0.1.0"
    assert plugins["vignette"]["backends"] == {"image": ["vignette"]}
    assert {"shot_completed", "shot_failed", "shot_skipped"} <= set(plugins["ledger"]["hooks"])

    text = _run([sys.executable, "-m", "framework", "plugins"], env=cli_env).stdout
    assert f"vignette ({DIST} 0.1.0): reelforge_ledger.vignette" in text


def test_a_run_uses_it_end_to_end(example_installed, cli_env, tmp_path):
    shots = 3
    out = tmp_path / "out"
    _run([sys.executable, "-m", "framework", "run", "A lighthouse keeper befriends a storm",
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
        (stage, n) for stage in ("images", "videos") for n in range(1, shots + 1)]
    assert {r["outcome"] for r in rows} == {"done"}
    assert {r["backend"] for r in rows if r["stage"] == "images"} == {"vignette"}
    meta = json.loads((session / f"{session.name}_meta.json").read_text())
    assert meta["backends"]["image"] == {
        "name": "vignette",
        "options": {"base": "storyboard", "base_options": ["width=320", "height=180"],
                    "strength": 0.8, "grain": 0.08}}


def test_its_own_tests_pass(example_installed, cli_env):
    _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], env=cli_env, cwd=EXAMPLE)
