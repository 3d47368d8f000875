"""The README's Quick start and CI must stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_the_two_commands():
    run_cmd, test_cmd = _quick_start_commands()[:2]
    assert run_cmd.startswith("pip install -e . && reelforge run ") and "--new" in run_cmd
    assert test_cmd == "pip install -e '.[test]' && pytest"


def test_ci_runs_exactly_the_readme_test_command():
    test_cmd = _quick_start_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [line.strip() for line in ci]


def test_builtin_plugins_are_the_installed_entry_points():
    import importlib.metadata

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="reelforge")
                 if ep.dist is not None and ep.dist.metadata["Name"] == "reelforge"}
    assert project["project"]["entry-points"]["reelforge"] == installed
    assert all(value.startswith("reelforge.plugins.") for value in installed.values())
