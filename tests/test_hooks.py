"""Meta-tests in the datasette manner: every hookspec is exercised here, and documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reelforge import hookspecs
from reelforge.errors import StageError
from reelforge.testing import run_session
from support import Recorder

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "reelforge_spec"))
REGISTRATION = {"register_story_llms", "register_image_generators", "register_renderers",
                "register_narrators", "register_engines", "register_commands"}


def test_hookspecs_are_what_we_think():
    assert REGISTRATION <= set(HOOKS)
    assert len(HOOKS) == 6 + 11


def test_every_lifecycle_hook_fires_with_its_arguments(out, fakes):
    fakes.video.fail(2, StageError("boom"))
    rec = Recorder()
    first = run_session(out, "idea", backends=fakes.backends, plugins=(rec,))
    second = run_session(out, "", backends=fakes.backends, plugins=(rec,), resume=first.session_id)
    assert not first.ok and second.ok
    fired = {e[0] for e in rec.events}
    assert fired == set(HOOKS) - REGISTRATION


def test_every_registration_hook_is_called(fakes):
    from reelforge.engine.plugins import backends, pm

    for kind in ("story", "image", "video"):
        assert "fake" in backends(kind)
    # register_narrators: tests/test_narration.py calls it on the built-in narrators.
    assert pm.hook.register_narrators.spec is not None
    # register_commands: the cli group calls it for a command it does not know; test_plugins
    # and test_cli_startup exercise a plugin adding a command
    assert pm.hook.register_commands.spec is not None
    # register_engines: the built-in local engine registers through it; tests/test_engines.py
    # registers a toy engine and runs sessions on it
    from reelforge.engine.plugins import engines

    assert engines()["local"].cls.name == "local"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    doc = ROOT / "docs" / "plugin_hooks.md"
    assert doc.is_file(), "docs/plugin_hooks.md is missing"
    assert re.search(rf"^## {hook}\(", doc.read_text(), re.M), f"{hook} has no '## {hook}(' heading"
