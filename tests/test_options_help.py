"""Issue 9 item 4: every backend option is discoverable (type, default, docstring) through
`reelforge backends NAME` and `reelforge plugins --options`; -o errors list the valid keys
and speak plain words, never cattrs'; backend flags' --help says what they do."""

from __future__ import annotations

import json

import attrs
import pytest
from click.testing import CliRunner

from reelforge import hookimpl
from reelforge.cli.core import cli
from reelforge.errors import ConfigError
from reelforge.options import describe_options, field_docs, structure_options
from reelforge.engine.plugins import KINDS, backends, load_plugins
from reelforge.testing import FakeRenderer, registered
from reelforge.plugins.comfy_render.options import VideoOptions
from reelforge.plugins.kenburns import KenBurnsOptions
from reelforge.plugins.story_llm.openai_compat import OpenAIOptions

CATTRS_WORDING = ("@ options", "@ $", "range(", "invalid value for type", "must be in (", "must be <=",
                  "must be >=", "ClassValidationError")


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_docstrings_are_read_from_the_source_of_each_kind_of_options_class():
    docs = field_docs(KenBurnsOptions)
    assert docs["fps"].startswith("Frames per second of the clip")
    assert docs["prescale"].startswith("Upscale the still by this factor before zooming")
    # a class made in a function and renamed afterwards (found by its fields)
    assert VideoOptions.__name__ == "ComfyVideoOptions"
    assert field_docs(VideoOptions)["urls"].startswith("ComfyUI servers (repeat --comfy-url")
    # inherited fields keep their base class's docstrings; a docstring spanning two literals is joined
    docs = field_docs(OpenAIOptions)
    assert docs["shots"] == "How many shots the film has."
    assert docs["json_mode"].endswith("A server that refuses json_schema is asked again with json_object automatically.")


def test_metadata_doc_serves_a_class_without_source():
    cls = attrs.make_class("Made", {"speed": attrs.field(default=1.5, metadata={"doc": "How  fast.\n It goes."})})
    [info] = describe_options(cls)
    assert (info.name, info.type, info.default, info.doc) == ("speed", "float", "1.5", "How fast. It goes.")


def test_describe_options_gives_type_default_allowed_and_flag():
    infos = {o.name: o for o in describe_options(KenBurnsOptions)}
    assert (infos["fps"].type, infos["fps"].default, infos["fps"].allowed) == ("int", "25", "from 1 to 120")
    assert infos["zoom"].allowed == "from 1.0 to 3.0" and infos["width"].allowed == "from 16 to 8192"
    assert infos["caption_gap_s"].allowed == "at least 0.0"
    assert infos["preset"].allowed.startswith("one of ultrafast, superfast")
    urls = {o.name: o for o in describe_options(VideoOptions)}["urls"]
    assert (urls.type, urls.flag) == ("list of str", "--comfy-url")
    seed = {o.name: o for o in describe_options(OpenAIOptions)}["seed"]
    assert (seed.type, seed.default) == ("int or none", "(unset)")


def test_every_builtin_backend_option_has_a_docstring():
    for kind in KINDS:
        for reg in backends(kind, load_plugins()).values():
            if reg.plugin.startswith("_"):
                continue  # a test's fakes
            for o in describe_options(getattr(reg.cls, "Options", None)):
                assert o.doc, f"{reg.name} option {o.name} has no docstring"


def test_backends_name_lists_every_option_with_type_default_and_doc():
    r = run("backends", "kenburns")
    assert r.exit_code == 0, r.output
    assert "kenburns: renderer (plugin kenburns; select with --renderer kenburns)" in r.output
    assert "Options (-o kenburns.KEY=VALUE, or [backends.kenburns] in reelforge.toml):" in r.output
    for o in describe_options(KenBurnsOptions):
        assert f"    {o.name} ({o.type}; default {o.default}" in r.output
        assert " ".join(o.doc.split()[:4]) in " ".join(r.output.split())
    r = run("backends", "comfyui")  # an image generator and a renderer share the name
    assert "comfyui: image generator" in r.output and "comfyui: renderer" in r.output
    assert "urls (list of str; default http://127.0.0.1:8188; flag --comfy-url)" in r.output


def test_backends_lists_all_and_refuses_an_unknown_name():
    r = run("backends")
    assert r.exit_code == 0
    for name in ("offline", "openai", "ollama", "storyboard", "comfyui", "kenburns"):
        assert f" {name} " in r.output
    r = run("backends", "dalle")
    assert r.exit_code == 2 and "no backend is named 'dalle'; installed:" in r.output and "kenburns" in r.output
    data = json.loads(run("backends", "kenburns", "--json").output)
    [entry] = data
    assert entry["kind"] == "video" and entry["plugin"] == "kenburns"
    fps = next(o for o in entry["options"] if o["name"] == "fps")
    assert fps == {"name": "fps", "type": "int", "default": "25", "doc": field_docs(KenBurnsOptions)["fps"],
                   "allowed": "from 1 to 120", "flag": None, "secret": False}
    assert fps["doc"].startswith("Frames per second")


def test_plugins_options_lists_every_option_of_every_backend():
    r = run("plugins", "--options")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    for kind in KINDS:
        for reg in backends(kind).values():
            for o in describe_options(getattr(reg.cls, "Options", None)):
                assert f"{o.name} ({o.type}; default {o.default}" in text, (reg.name, o.name)
                assert o.doc[:30] in text
    assert "kenburns options (-o kenburns.KEY=VALUE):" in r.output
    data = {p["name"]: p for p in json.loads(run("plugins", "--options", "--json").output)}
    assert {o["name"] for o in data["kenburns"]["options"]["video"]["kenburns"]} == {
        f.name for f in attrs.fields(KenBurnsOptions)}
    assert "options" not in json.loads(run("plugins", "--json").output)[0]


@pytest.mark.parametrize("option, message", [
    ("kenburns.fps=0", "renderer 'kenburns' option fps must be a whole number from 1 to 120, got '0'"),
    ("kenburns.fps=fast", "renderer 'kenburns' option fps must be a whole number from 1 to 120, got 'fast'"),
    ("kenburns.zoom=9", "renderer 'kenburns' option zoom must be a number from 1.0 to 3.0, got '9'"),
    ("kenburns.preset=turbo", "renderer 'kenburns' option preset must be one of ultrafast, superfast, veryfast"),
    ("kenburns.prescale=7", "renderer 'kenburns' option prescale must be one of 1, 2, 3, 4, got '7'"),
    ("video.width=8", "renderer 'kenburns' option width must be a whole number from 16 to 8192, got '8'"),
    ("kenburns.caption_gap_s=-2", "renderer 'kenburns' option caption_gap_s must be a number of at least 0.0, got '-2'"),
    ("shots=0", "story LLM 'offline' option shots must be a whole number from 1 to 999, got '0'"),
    ("shot_seconds=-1", "story LLM 'offline' option shot_seconds must be a number above 0, got '-1'"),
    ("image.height=ten", "image generator 'storyboard' option height must be a whole number from 64 to 8192, "
                         "got 'ten'"),
])
def test_bad_options_are_usage_errors_in_plain_words(out, option, message):
    r = CliRunner().invoke(cli, ["run", "idea", "--new", "-o", option, "--output-dir", str(out)])
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split())
    for words in CATTRS_WORDING:
        assert words not in r.output


def _keys(cls) -> list[str]:
    return [f"{o.name} ({o.type})" for o in sorted(describe_options(cls), key=lambda o: o.name)]


@pytest.mark.parametrize("option, start", [
    ("kenburns.nope=1", "backend 'kenburns' has no option 'nope' (valid: "),
    ("video.nope=1", "renderer 'kenburns' has no option 'nope' (valid: "),
    ("nope=1", "no selected backend takes option 'nope' (valid: offline: "),
])
def test_an_unknown_key_lists_the_valid_ones_with_their_types(out, option, start):
    from reelforge.plugins.image_gen.storyboard import StoryboardOptions

    r = CliRunner().invoke(cli, ["run", "idea", "--new", "-o", option, "--output-dir", str(out)])
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert start in text
    assert ", ".join(_keys(KenBurnsOptions)) in text
    assert {"crf (int)", "fps (int)", "zoom (float)", "preset (str)"} <= set(_keys(KenBurnsOptions))
    if option == "nope=1":  # every selected backend's keys, each under its name
        assert f"storyboard: {', '.join(_keys(StoryboardOptions))};" in text and "; kenburns: " in text


def test_config_file_values_get_the_same_words(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reelforge.toml").write_text("[backends.kenburns]\ncrf = 99\n")
    r = CliRunner().invoke(cli, ["run", "idea", "--new"])
    assert r.exit_code == 2
    assert "[backends.kenburns] option crf must be a whole number from 0 to 51, got 99" in r.output


def test_a_custom_validator_keeps_its_own_message():
    def colour(_inst, attribute, value):
        if value not in ("navy", "red"):
            raise ValueError(f"{value!r} is not a colour: use a name such as navy")

    @attrs.frozen
    class Options:
        background: str = attrs.field(default="navy", validator=colour)
        "The card's colour."

    with pytest.raises(ConfigError) as info:
        structure_options(Options, {"background": "blurple"}, what="image generator 'titlecard'")
    assert str(info.value) == "image generator 'titlecard' option background: 'blurple' is not a colour: use a name such as navy"
    assert structure_options(Options, {"background": "red"}, what="x").background == "red"


def test_a_check_across_fields_is_reported_with_its_message():
    @attrs.frozen
    class Options:
        low: int = 0
        "Lower bound."
        high: int = 10
        "Upper bound."

        def __attrs_post_init__(self):
            if self.low > self.high:
                raise ValueError("low must not be above high")

    with pytest.raises(ConfigError, match="^x: low must not be above high$"):
        structure_options(Options, {"low": "5", "high": "2"}, what="x")
    assert structure_options(Options, {"low": "1", "high": "2"}, what="x") == Options(1, 2)


class _DocFlagRenderer(FakeRenderer):
    @attrs.frozen
    class Options:
        delay: float = 0.0
        "Seconds each call sleeps."
        speed: float = attrs.field(default=1.0, metadata={"cli": "--fake-speed"})
        "How fast the camera moves, in screen widths per second."


def test_a_backend_flag_help_says_what_it_does():
    plugin_renderer = _DocFlagRenderer("docflag")

    class Plugin:
        @hookimpl
        def register_renderers(self, register):
            register(plugin_renderer, name="docflag")

    with registered(Plugin()):
        r = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200)
    assert "--fake-speed TEXT" in r.output
    assert "How fast the camera moves, in screen widths per second. [docflag option speed]" in r.output
    r = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200)
    assert "ComfyUI servers (repeat --comfy-url, or a comma list)" in r.output
