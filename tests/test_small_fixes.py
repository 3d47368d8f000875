"""Issue 9 item 7 (part) and two CLI fixes: Runner(options={"shots": 3}); REELFORGE_PLUGINS
naming a plugin that is already loaded warns instead of crashing; the session view width
comes from shutil; `reelforge plugins` honours [plugins] disable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reelforge.cli import core as cli_module
from reelforge.engine.runner import Runner
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session

ROOT = Path(__file__).resolve().parents[1]


def test_runner_takes_unscoped_options_as_a_dict(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends, options={"shots": 4})
    assert result.ok
    assert len(SessionStore(out).load(result.session_id).meta.shots) == 4


def test_runner_takes_scoped_and_unscoped_options_mixed(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends,
                         options={"shots": 2, "fake": {"delay": 0.0}, "image": {"tint": 7}})
    assert result.ok
    meta = SessionStore(out).load(result.session_id).meta
    assert len(meta.shots) == 2 and meta.backends["image"].options["tint"] == 7


def test_runner_dict_options_are_still_checked(out, fakes):
    from reelforge.errors import ConfigError

    with pytest.raises(ConfigError, match="no selected backend takes option 'shotz'"):
        Runner(out, backends=fakes.backends, options={"shotz": 3}).validate()


def _reelforge(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reelforge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_reelforge_plugins_naming_a_loaded_plugin_warns_and_every_command_works(tmp_path):
    env = {"REELFORGE_PLUGINS": "reelforge.plugins.kenburns"}
    proc = _reelforge("plugins", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "REELFORGE_PLUGINS names 'reelforge.plugins.kenburns', which is already loaded as plugin 'kenburns'" in proc.stderr
    assert "renderer: kenburns" in proc.stdout and "Traceback" not in proc.stderr
    proc = _reelforge("run", "--help", cwd=tmp_path, env=env)
    assert proc.returncode == 0 and "--renderer" in proc.stdout


def test_plugins_honours_the_config_disable_list(tmp_path):
    (tmp_path / "reelforge.toml").write_text('[plugins]\ndisable = ["image_storyboard"]\n')
    proc = _reelforge("plugins", cwd=tmp_path, env={})
    assert proc.returncode == 0, proc.stderr
    assert "image_storyboard" not in proc.stdout and "kenburns" in proc.stdout
    proc = _reelforge("backends", cwd=tmp_path, env={})
    assert proc.returncode == 0 and " storyboard " not in proc.stdout and " kenburns " in proc.stdout
    (tmp_path / "other.toml").write_text('[plugins]\ndisable = ["kenburns"]\n')
    proc = _reelforge("plugins", "--config", str(tmp_path / "other.toml"), cwd=tmp_path, env={})
    assert "image_storyboard" in proc.stdout and "renderer: kenburns" not in proc.stdout


@pytest.mark.parametrize("columns, width", [("70", 70), ("300", 100)])
def test_view_width_follows_the_terminal(monkeypatch, columns, width):
    monkeypatch.setenv("COLUMNS", columns)
    assert cli_module._width() == width
