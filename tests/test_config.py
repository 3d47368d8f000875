"""reelforge.toml: defaults, per-backend options, precedence, and errors naming the key."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.store.sessions import SessionStore


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_config_sets_backends_options_and_output_dir(workdir, fakes):
    (workdir / "reelforge.toml").write_text(
        'output_dir = "films"\nstory_llm = "fake"\nimage_gen = "fake"\nrenderer = "fake"\n'
        '[backends.story]\nshots = 2\n[backends.kenburns]\nfps = 30\n')
    r = _run("run", "From config", "--new")
    assert r.exit_code == 0, r.output
    store = SessionStore(workdir / "films")
    meta = store.load(store.ids()[0]).meta
    assert {k: b.name for k, b in meta.backends.items()} == {"story": "fake", "image": "fake", "video": "fake",
                                                                   "narration": "espeak"}
    assert len(meta.shots) == 2
    listing = json.loads(_run("sessions", "list", "--json").output)
    assert listing[0]["idea"] == "From config"


def test_command_line_overrides_config(workdir, fakes):
    (workdir / "reelforge.toml").write_text(
        'story_llm = "fake"\nimage_gen = "fake"\nrenderer = "fake"\n[backends.fake]\nshots = 2\n')
    r = _run("run", "x", "--new", "-o", "story.shots=1", "--output-dir", str(workdir / "o"))
    assert r.exit_code == 0, r.output
    store = SessionStore(workdir / "o")
    assert len(store.load(store.ids()[0]).meta.shots) == 1


def test_explicit_config_path(workdir, fakes):
    cfg = workdir / "studio.toml"
    cfg.write_text('story_llm = "fake"\nimage_gen = "fake"\nrenderer = "fake"\noutput_dir = "studio"\n')
    assert _run("run", "x", "--new", "--config", str(cfg)).exit_code == 0
    assert SessionStore(workdir / "studio").ids()
    r = _run("run", "x", "--new", "--config", str(workdir / "missing.toml"))
    assert r.exit_code == 2 and "missing.toml does not exist" in r.output


@pytest.mark.parametrize("text, message", [
    ('colour = "red"\n', "unknown key 'colour'"),
    ("story_llm = 3\n", "story_llm must be a string"),
    ("[backends.nosuch]\nx = 1\n", "[backends.nosuch]: no installed backend is named 'nosuch'"),
    ("[backends.kenburns]\nfsp = 30\n", "[backends.kenburns]: unknown key 'fsp'"),
    ("[backends.kenburns]\nfps = 'fast'\n", "[backends.kenburns] option fps must be a whole number from 1 to 120, got 'fast'"),
    ("[plugins]\nenable = []\n", "[plugins] has no key 'enable'"),
    ("story_llm = \n", "not valid TOML"),
])
def test_bad_config_names_file_table_and_key(workdir, text, message):
    (workdir / "reelforge.toml").write_text(text)
    r = _run("run", "x", "--new")
    assert r.exit_code == 2, r.output
    assert "reelforge.toml" in r.output and message in r.output
    assert not (workdir / "output").exists()


def test_config_disables_a_plugin(workdir):
    from reelforge.engine.plugins import load_plugins

    (workdir / "reelforge.toml").write_text('[plugins]\ndisable = ["image_storyboard"]\n')
    pm = load_plugins()
    try:
        r = _run("run", "x", "--new")
        assert r.exit_code == 2 and "unknown image generator 'storyboard'" in r.output
    finally:
        import reelforge.plugins.image_gen.storyboard as mod

        pm.unblock("image_storyboard")
        pm.register(mod, name="image_storyboard")
