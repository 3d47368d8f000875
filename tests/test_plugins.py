"""Plugin loading: entry points, REELFORGE_LOAD_PLUGINS, broken plugins, collisions,
disabling, check_pending, and plugin-added commands."""

from __future__ import annotations

import sys
import textwrap

import click
import pluggy
import pytest
from click.testing import CliRunner

from reelforge import hookimpl
from reelforge.errors import ConfigError
from reelforge.engine.plugins import backends, load_plugins, new_plugin_manager, plugin_info
from reelforge.testing import FakeImageGenerator, registered


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Make 'installed' distributions: a dist-info with reelforge entry points on sys.path."""
    def install(dist: str, entry_points: dict[str, str], modules: dict[str, str]):
        for name, source in modules.items():
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[reelforge]\n{eps}")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield install
    for mod in [m for m in sys.modules if m.startswith("rfx_")]:
        del sys.modules[mod]


GOOD = """
    from reelforge import hookimpl
    from reelforge.testing import FakeImageGenerator

    @hookimpl
    def register_image_generators(register):
        register(FakeImageGenerator("sepia"), name="sepia")
"""


def test_entry_point_plugins_load_and_are_listed(installed, monkeypatch):
    installed("rfx-sepia", {"sepia_plugin": "rfx_sepia"}, {"rfx_sepia": GOOD})
    monkeypatch.delenv("REELFORGE_LOAD_PLUGINS")
    manager = load_plugins(new_plugin_manager())
    assert "sepia" in backends("image", manager)
    info = {p["name"]: p for p in plugin_info(manager)}
    assert info["sepia_plugin"]["distribution"] == "rfx-sepia"
    assert info["sepia_plugin"]["version"] == "1.2.3"
    assert info["sepia_plugin"]["backends"] == {"image": ["sepia"]}
    assert info["kenburns"]["backends"] == {"video": ["kenburns"]}


def test_load_plugins_env_limits_installed_plugins(installed, monkeypatch):
    installed("rfx-sepia", {"sepia_plugin": "rfx_sepia"}, {"rfx_sepia": GOOD})
    monkeypatch.setenv("REELFORGE_LOAD_PLUGINS", "")
    manager = load_plugins(new_plugin_manager())
    assert "sepia" not in backends("image", manager)
    assert "storyboard" in backends("image", manager)  # built-ins always load
    monkeypatch.setenv("REELFORGE_LOAD_PLUGINS", "sepia_plugin")
    assert "sepia" in backends("image", load_plugins(new_plugin_manager()))


def test_broken_plugin_is_skipped_with_a_warning(installed, monkeypatch):
    installed("rfx-broken", {"broken": "rfx_broken"}, {"rfx_broken": "raise ImportError('no numpy here')"})
    monkeypatch.delenv("REELFORGE_LOAD_PLUGINS")
    with pytest.warns(UserWarning, match=r"skipped plugin 'broken'.*no numpy here"):
        manager = load_plugins(new_plugin_manager())
    assert "storyboard" in backends("image", manager)


def test_misspelled_hookimpl_fails_loudly(installed, monkeypatch):
    installed("rfx-typo", {"typo": "rfx_typo"}, {"rfx_typo": """
        from reelforge import hookimpl

        @hookimpl
        def register_image_generator(register):
            pass
    """})
    monkeypatch.delenv("REELFORGE_LOAD_PLUGINS")
    with pytest.raises(pluggy.PluginValidationError, match="register_image_generator"):
        load_plugins(new_plugin_manager())


def test_disable_plugin_by_name(monkeypatch):
    monkeypatch.setenv("REELFORGE_DISABLE_PLUGINS", "image_storyboard")
    manager = load_plugins(new_plugin_manager())
    assert "storyboard" not in backends("image", manager)
    assert "kenburns" in backends("video", manager)


def test_two_plugins_same_backend_name_is_an_error():
    class Other:
        @hookimpl
        def register_image_generators(self, register):
            register(FakeImageGenerator("storyboard"), name="storyboard")

    with registered(Other()):
        with pytest.raises(ConfigError, match=r"two plugins register image generators named 'storyboard': "
                                              r"'image_storyboard' and '_test_"):
            backends("image")


def test_register_commands_hook_adds_a_command():
    from reelforge.cli.core import cli

    class Commands:
        @hookimpl
        def register_commands(self, cli):
            @cli.command()
            def hello():
                """Say hello."""
                click.echo("hello from a plugin")

    manager = new_plugin_manager()
    manager.register(Commands())
    group = click.Group(commands=dict(cli.commands))
    manager.hook.register_commands(cli=group)
    result = CliRunner().invoke(group, ["hello"])
    assert result.output == "hello from a plugin\n"


def test_a_backend_built_by_a_runner_sees_that_runners_plugins(tmp_path):
    """A backend that wraps another looks it up in the Runner's own plugin manager."""
    from reelforge.engine.plugins import get_backend_class
    from reelforge.engine.runner import Runner
    from reelforge.testing import FakePlugin, Fakes, FakeRenderer, FakeStoryWriter

    seen = {}

    class Wrapper(FakeImageGenerator):
        def __call__(self, options=None):
            seen["base"] = get_backend_class("image", "only_here")  # no manager passed
            return super().__call__(options)

    manager = load_plugins(new_plugin_manager())
    manager.register(FakePlugin(Fakes(FakeStoryWriter("w"), Wrapper("w"), FakeRenderer("w"))))

    class OnlyHere:
        @hookimpl
        def register_image_generators(self, register):
            register(FakeImageGenerator("only_here"), name="only_here")

    manager.register(OnlyHere())
    Runner(tmp_path, backends={"story": "w", "image": "w", "video": "w"}, pm=manager).validate()
    assert seen["base"].name == "only_here"
    with pytest.raises(ConfigError, match="only_here"):
        get_backend_class("image", "only_here")  # outside the run: the process-wide manager
