"""docs/writing_plugins.md must keep working: its files (the code blocks whose first line is
``# path``) are written to a fresh folder, loaded the way the tutorial says, and their
tests run. (The pip install path is covered by test_example_plugin.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "writing_plugins.md"


def tutorial_files() -> dict[str, str]:
    files = {}
    for body in re.findall(r"```(?:python|toml)\n(.*?)```", DOC.read_text(), flags=re.S):
        first, _, rest = body.partition("\n")
        match = re.fullmatch(r"# ([\w/]+\.(?:py|toml))", first)
        if match:
            files[match.group(1)] = rest
    return files


@pytest.fixture
def plugin_dir(tmp_path):
    folder = tmp_path / "reelforge-titlecard"
    for path, text in tutorial_files().items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    return folder


def env_for(folder: Path, plugins: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFORGE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    env["REELFORGE_LOAD_PLUGINS"] = ""
    if plugins:
        env["REELFORGE_PLUGINS"] = plugins
    return env


def run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, **kw)


def test_the_tutorial_has_its_files():
    assert set(tutorial_files()) == {"reelforge_titlecard.py", "reelforge_pixelcloud.py",
                                     "pyproject.toml", "tests/conftest.py", "tests/test_titlecard.py"}
    project = tomllib.loads(tutorial_files()["pyproject.toml"])
    assert project["project"]["entry-points"]["reelforge"] == {"titlecard": "reelforge_titlecard"}


def test_reelforge_plugins_loads_it_without_installing(plugin_dir):
    proc = run(["-m", "reelforge", "plugins", "--json"], cwd=plugin_dir,
               env=env_for(plugin_dir, "reelforge_titlecard"))
    assert proc.returncode == 0, proc.stderr
    info = {p["name"]: p for p in json.loads(proc.stdout)}
    assert info["reelforge_titlecard"]["backends"] == {"image": ["titlecard"]}


def test_its_tests_pass(plugin_dir):
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=plugin_dir, env=env_for(plugin_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


def test_the_secret_option_example(plugin_dir):
    env = env_for(plugin_dir, "reelforge_pixelcloud")
    proc = run(["-m", "reelforge", "run", "A storm", "--new", "--image-gen", "pixelcloud",
                "--output-dir", str(plugin_dir / "output")], cwd=plugin_dir, env=env)
    assert proc.returncode == 2
    assert "pixelcloud needs an API key: set PIXELCLOUD_API_KEY" in proc.stderr
    check = """if True:
        from reelforge.options import public_options
        from reelforge_pixelcloud import PixelCloudGenerator, PixelCloudOptions
        backend = PixelCloudGenerator(PixelCloudOptions())
        assert backend.options.api_key == "sk-test"
        assert "api_key" not in public_options(backend.options)
        assert "sk-test" not in repr(backend.options)
    """
    proc = run(["-c", check], cwd=plugin_dir, env={**env, "PIXELCLOUD_API_KEY": "sk-test"})
    assert proc.returncode == 0, proc.stderr
    proc = run(["-m", "reelforge", "run", "--help"], cwd=plugin_dir, env=env)
    assert "--pixelcloud-url" in proc.stdout


def _documented_output(after: str) -> str:
    """The first plain code block after the line ``after`` in the tutorial."""
    text = DOC.read_text()
    rest = text[text.index(after):]
    rest = rest[rest.index("```\n") + 4:]  # past the end of the command's own block
    return re.search(r"```\n(.*?)```", rest, flags=re.S).group(1)


def test_the_documented_option_listing_and_error_are_what_reelforge_prints(plugin_dir):
    env = {**env_for(plugin_dir, "reelforge_titlecard"), "COLUMNS": "100"}
    proc = run(["-m", "reelforge", "backends", "titlecard"], cwd=plugin_dir, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _documented_output("reelforge backends titlecard\n")
    proc = run(["-m", "reelforge", "run", "A storm", "--new", "--image-gen", "titlecard",
                "-o", "titlecard.background=blurple", "--output-dir", str(plugin_dir / "output")],
               cwd=plugin_dir, env=env)
    assert proc.returncode == 2
    documented = _documented_output("-o titlecard.background=blurple\n").strip()
    assert documented.startswith("Error: ") and documented in proc.stderr
