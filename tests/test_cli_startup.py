"""What the command line loads: `--help` and `sessions` load no plugin and no heavy library;
`run`/`resume` still have every backend flag, and plugin commands are found on demand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import click
import pytest
from click.testing import CliRunner

from reelforge import hookimpl
from reelforge.cli.core import cli
from reelforge.testing import FakeRenderer, registered

ROOT = Path(__file__).resolve().parents[1]

# Printed by the child after the command ran: the modules it imported.
_RUN_AND_REPORT = """if True:
    import json, sys
    from reelforge.cli.core import main
    sys.argv = ["reelforge", *json.loads(sys.argv[1])]
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    print("MODULES=" + json.dumps(sorted(sys.modules)), file=sys.stderr)
    sys.exit(code)
"""

HEAVY = ("reelforge.plugins", "httpx", "PIL", "rich", "imageio_ffmpeg", "attrs", "attr", "cattrs", "pluggy",
         "importlib.metadata", "reelforge.records", "reelforge.store.session", "reelforge.engine.runner")


def reelforge(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-c", _RUN_AND_REPORT, json.dumps(list(args))], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("MODULES="):
            modules = set(json.loads(line[len("MODULES="):]))
    assert modules, proc.stderr
    return proc, modules


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_loads_no_plugin_and_no_heavy_library(tmp_path):
    proc, modules = reelforge("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("run", "resume", "sessions", "plugins"):
        assert f"\n  {name} " in proc.stdout
    assert "`reelforge plugins` lists them" in proc.stdout
    assert heavy(modules) == []


def test_sessions_list_on_an_empty_folder_loads_no_plugin(tmp_path):
    proc, modules = reelforge("sessions", "list", "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "No sessions in" in proc.stdout
    assert not [m for m in modules if m.startswith("reelforge.plugins.")]  # no built-in plugin is imported
    assert not {"httpx", "PIL", "rich", "imageio_ffmpeg"} & modules


def test_a_disabled_plugin_in_the_config_is_no_warning_where_plugins_do_not_load(tmp_path):
    (tmp_path / "reelforge.toml").write_text('[plugins]\ndisable = ["image_storyboard"]\n')
    proc, _ = reelforge("sessions", "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cannot disable" not in proc.stderr


def test_disable_before_loading_blocks_and_warns_about_unknown_names_when_loaded(tmp_path):
    code = """if True:
        import warnings
        from reelforge.engine import plugins
        plugins.disable(["image_storyboard", "no_such_plugin"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manager = plugins.load_plugins()
        print(sorted(str(w.message) for w in caught))
        print(manager.get_plugin("image_storyboard") is None, manager.get_plugin("kenburns") is not None)
    """
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    messages, loaded = proc.stdout.splitlines()
    assert messages == str(["reelforge: cannot disable plugin 'no_such_plugin': no plugin has that name"])
    assert loaded == "True True"


def test_run_help_lists_the_backend_flags_in_a_fresh_process(tmp_path):
    proc, modules = reelforge("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--story-llm", "--image-gen", "--renderer", "--option", "--transition", "--comfy-url",
                 "--output-dir", "--config", "--new", "--resume"):
        assert flag in proc.stdout
    assert "reelforge.plugins.comfy_render" in modules  # the flags come from the loaded plugins
    proc, _ = reelforge("resume", "--help", cwd=tmp_path)
    assert "--comfy-url" in proc.stdout and "--renderer" in proc.stdout


def test_a_plugin_command_runs_in_a_fresh_process(tmp_path):
    proc, modules = reelforge("comfyui", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "check" in proc.stdout
    proc, _ = reelforge("no-such-command", cwd=tmp_path)
    assert proc.returncode == 2 and "No such command 'no-such-command'" in proc.stderr


def test_plugins_lists_the_commands_each_plugin_adds():
    class Commands:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("hello-plugin")
            def hello():
                """Say hello."""
                click.echo("hello from a plugin")

    plugin = Commands()
    with registered(plugin):
        r = CliRunner().invoke(cli, ["plugins"])
        assert r.exit_code == 0, r.output
        assert "comfy_render (" in r.output and "  commands: comfyui\n" in r.output
        data = {p["name"]: p for p in json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)}
        assert data["comfy_render"]["commands"] == ["comfyui"]
        assert data["kenburns"]["commands"] == []
        assert "hello-plugin" not in cli.commands  # listing used a scratch group


class _FlagRenderer(FakeRenderer):
    @attrs.frozen
    class Options:
        delay: float = 0.0
        speed: float = attrs.field(default=1.0, metadata={"cli": "--fake-speed"})

    def __init__(self, name: str):
        super().__init__(name)
        self.seen: list[float] = []

    def __call__(self, options=None):
        self.seen.append(options.speed)
        return super().__call__(options)


def test_a_backend_flag_registered_after_import_is_listed_and_reaches_the_backend(out, fakes):
    renderer = _FlagRenderer("flagged")

    class Plugin:
        @hookimpl
        def register_renderers(self, register):
            register(renderer, name="flagged")

    assert "--fake-speed" not in CliRunner().invoke(cli, ["run", "--help"]).output
    with registered(Plugin()):
        r = CliRunner().invoke(cli, ["run", "--help"])
        assert "--fake-speed" in r.output and "Option of flagged." in r.output
        r = CliRunner().invoke(cli, ["run", "An idea", "--new", "--story-llm", "fake", "--image-gen", "fake",
                                     "--renderer", "flagged", "--fake-speed", "2.5", "--output-dir", str(out)])
        assert r.exit_code == 0, r.output
        assert renderer.seen and set(renderer.seen) == {2.5}
    r = CliRunner().invoke(cli, ["run", "--fake-speed", "2", "--output-dir", str(out)])
    assert r.exit_code == 2 and "No such option '--fake-speed'" in r.output


@pytest.mark.parametrize("command", [["run"], ["resume"]])
def test_run_and_resume_share_the_backend_options(command):
    r = CliRunner().invoke(cli, [*command, "--help"])
    assert r.exit_code == 0
    assert "--story-llm NAME" in r.output and "-o, --option [NAME.]KEY=VALUE" in r.output
    assert r.output.count("--comfy-url TEXT") == 1  # one flag, though two backends take it
