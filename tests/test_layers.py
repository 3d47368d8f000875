"""The core's parts import downwards only: no arrow runs back up, no circle, and nothing
in the core imports a built-in plugin by module (they load through entry points)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "framework"

#: What each part of reelforge may import from reelforge (besides itself). The leaves are
#: the top-level modules every part shares.
LEAVES = {"errors", "records", "looks", "redact", "limits", "http", "hookspecs", "protocols", "options", "hookimpl"}
MAY_IMPORT = {
    "leaf": LEAVES,
    "store": LEAVES | {"store"},
    "media": LEAVES | {"store", "media"},
    "engine": LEAVES | {"store", "media", "engine"},
    "web": LEAVES | {"store", "media", "engine", "web"},
    "cli": None,  # the top: anything but the built-in plugins
}
#: API surfaces that gather the parts for plugin authors and scripts.
SURFACES = {"__init__", "__main__", "testing", "pytest_plugin"}


def _part(path: Path) -> str | None:
    rel = path.relative_to(CORE)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return None if rel.stem in SURFACES else "leaf"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every reelforge module a file imports, at the top or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "reelforge":  # from reelforge import store, media, ...
                found += [(node.lineno, f"reelforge.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name == "reelforge" or name.startswith("reelforge.")]


def _target(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) < 2:
        return None
    head = parts[1]
    return head if head in MAY_IMPORT or head == "plugins" else ("leaf:" + head)


FILES = sorted(p for p in CORE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_imports_run_downwards_only(path):
    part = _part(path)
    wrong = []
    for line, name in _imports(path):
        target = _target(name)
        if target is None:
            continue
        if target == "plugins":
            wrong.append(f"line {line}: {name} (a built-in plugin, by module)")
            continue
        if part is None or MAY_IMPORT.get(part) is None:
            continue
        head = target.split(":")[-1]
        allowed = MAY_IMPORT[part]
        if target.startswith("leaf:"):
            if head not in allowed and part != "leaf":
                wrong.append(f"line {line}: {name}")
            elif part == "leaf" and head not in LEAVES:
                wrong.append(f"line {line}: {name}")
        elif head not in allowed:
            wrong.append(f"line {line}: {name} ({part} may not import {head})")
    assert not wrong, f"{path.relative_to(CORE)} imports upwards:\n" + "\n".join(wrong)


def test_every_part_says_what_it_owns_and_may_import():
    for init in sorted(CORE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        if init.parent.name == "fonts":
            continue
        assert "May import" in doc, f"{init.parent.name}/__init__.py does not say what it may import"


def test_nothing_installs_a_top_level_framework_or_plugins_package(tmp_path):
    """What the installation provides, asked from a folder outside the checkout (the
    checkout's own folders are importable by path from its root, as any folder is)."""
    probe = ("import importlib.util as u, json; print(json.dumps({n: u.find_spec(n) is not None for n in "
             "('reelforge', 'reelforge.plugins.image_gen.storyboard', 'framework', 'plugins')}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == {"reelforge": True, "reelforge.plugins.image_gen.storyboard": True,
                                             "framework": False, "plugins": False}
