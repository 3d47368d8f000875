"""The shared planning code: schemas, batching, the bible, seeds and durations."""

from __future__ import annotations

import pytest

from fake_llm import SCENES, STORY
from reelforge.errors import ConfigError
from reelforge.options import structure_options
from reelforge.records import SceneGraph, Story, structure
from reelforge.plugins.story_llm import ollama, openai_compat
from reelforge.plugins.story_llm.chat import allocate, make_batches
from reelforge.plugins.story_llm.prompts import ShotBatch
from reelforge.plugins.story_llm.schemas import (
    SCHEMAS, InvalidReply, ShotDraft, check_scene_graph, derive_seed, finish_plan, fit_durations,
    parse_json_object, with_bible,
)

STORY_REC = structure(STORY, Story)


def _closed(schema):
    if schema.get("type") == "object":
        assert schema["additionalProperties"] is False
        assert sorted(schema["required"]) == sorted(schema["properties"])
        for sub in schema["properties"].values():
            _closed(sub)
    if schema.get("type") == "array":
        _closed(schema["items"])


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schemas_fit_openai_strict_mode(name):
    _closed(SCHEMAS[name])


def test_shot_schema_lists_the_issue_fields():
    props = SCHEMAS["shot_plan"]["properties"]["shots"]["items"]["properties"]
    assert list(props) == ["id", "scene_id", "description", "image_prompt", "motion_prompt",
                           "negative_prompt", "duration_s", "characters", "narration"]


def test_batches_and_halves():
    graph = structure(SCENES, SceneGraph)
    parts = allocate(graph, 7)
    assert parts == [("s1", 3), ("s2", 2), ("s3", 2)]
    assert make_batches(parts, 3) == [ShotBatch(1, (("s1", 3),)), ShotBatch(4, (("s2", 2), ("s3", 1))),
                                      ShotBatch(7, (("s3", 1),))]
    a, b = ShotBatch(1, tuple(parts)).halves()
    assert (a, b) == (ShotBatch(1, (("s1", 3),)), ShotBatch(4, (("s2", 2), ("s3", 2))))
    assert allocate(graph, 2) == [("s1", 1), ("s2", 1)]


def test_bible_added_once_and_only_for_characters_in_frame():
    prompt = with_bible("Old Tom asleep in his chair.", STORY_REC, ("Old Tom",))
    assert prompt.count("navy wool sweater") == 1 and "ginger" not in prompt
    # the style is the film's look, applied by the backend: not written into the prompt, and
    # taken out where the model wrote it in word for word
    assert STORY["style"] not in prompt and "Style:" not in prompt
    assert with_bible(prompt, STORY_REC, ("Old Tom",)) == prompt  # nothing added twice
    assert with_bible(f"Old Tom asleep in his chair, {STORY['style']}", STORY_REC, ("Old Tom",)) == prompt


def test_characters_named_in_the_prompt_are_in_frame():
    draft = ShotDraft(id=1, scene_id="s1", description="Mabel watches Old Tom",
                      image_prompt="a cat at a window", characters=())
    plan = finish_plan([draft], STORY_REC, base_seed=None, target_seconds=0)
    assert plan.shots[0].characters == ("Mabel", "Old Tom")
    assert "ginger tabby" in plan.shots[0].image_prompt and "navy wool" in plan.shots[0].image_prompt


def test_seeds_deterministic_and_model_seed_kept():
    drafts = [ShotDraft(id=1, scene_id="s1", description="a", image_prompt="a"),
              ShotDraft(id=2, scene_id="s1", description="b", image_prompt="b", seed=42)]
    plan = finish_plan(drafts, STORY_REC, base_seed=5, target_seconds=0)
    assert plan.shots[0].seed == derive_seed(5, STORY["title"], 1) != derive_seed(6, STORY["title"], 1)
    assert plan.shots[1].seed == 42


def test_fit_durations():
    assert fit_durations([2, 4, 6], 24) == [4.0, 8.0, 12.0]
    assert fit_durations([3, 3], 0) == [3, 3]


def test_parse_json_object():
    assert parse_json_object('```json\n{"a": 1}\n```') == {"a": 1}
    with pytest.raises(InvalidReply, match="empty"):
        parse_json_object("  ")
    assert parse_json_object('Here is the plan: {"a": {"b": 2}} Enjoy!') == {"a": {"b": 2}}
    with pytest.raises(InvalidReply, match="not valid JSON"):
        parse_json_object('{"a": ')
    with pytest.raises(InvalidReply, match="not valid JSON"):
        parse_json_object('Sure! [1, 2]')


def test_scene_graph_reordered_and_checked():
    graph = check_scene_graph({"scenes": [
        {"id": "b", "order": 5, "summary": "second", "setting": "", "characters": ["old tom", "Gull"]},
        {"id": "a", "order": 2, "summary": "first", "setting": "", "characters": []},
    ]}, max_scenes=4, story=STORY_REC)
    assert [(s.id, s.order) for s in graph.scenes] == [("a", 1), ("b", 2)]
    assert graph.scenes[1].characters == ("Old Tom", "Gull")
    with pytest.raises(InvalidReply, match=r"scenes\[1\]\.id"):
        check_scene_graph({"scenes": [
            {"id": "a", "order": 1, "summary": "", "setting": "", "characters": []},
            {"id": "a", "order": 2, "summary": "", "setting": "", "characters": []},
        ]}, max_scenes=4)


def test_options_from_cli_strings_and_bad_values():
    opts = structure_options(openai_compat.OpenAIOptions, {"seed": "5", "shots": "20", "max_tokens": "900",
                                                         "json_mode": "json_object"}, what="openai")
    assert (opts.seed, opts.shots, opts.max_tokens) == (5, 20, 900)
    with pytest.raises(ConfigError, match="json_mode"):
        openai_compat.OpenAIStory(openai_compat.OpenAIOptions(json_mode="yaml"))
    with pytest.raises(ConfigError, match="ollama.shots must be from 1 to 10000, got 0"):
        ollama.OllamaStory(ollama.OllamaOptions(shots=0))


def test_both_backends_register():
    found = []
    openai_compat.register_story_llms(found.append)
    ollama.register_story_llms(found.append)
    assert [(c.name, c.Options.__name__) for c in found] == [("openai", "OpenAIOptions"),
                                                             ("ollama", "OllamaOptions")]
    import importlib.metadata

    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="reelforge")}
    assert {"story_openai": "reelforge.plugins.story_llm.openai_compat",
            "story_ollama": "reelforge.plugins.story_llm.ollama"}.items() <= installed.items()


def test_modules_are_valid_plugins():
    import pluggy

    from reelforge import StoryWriter, hookspecs

    pm = pluggy.PluginManager("reelforge")
    pm.add_hookspecs(hookspecs)
    pm.register(openai_compat, name="story_openai")
    pm.register(ollama, name="story_ollama")
    pm.check_pending()
    found = []
    pm.hook.register_story_llms(register=found.append)
    assert {c.name for c in found} == {"openai", "ollama"}
    assert all(isinstance(c(), StoryWriter) for c in found)


def test_error_bodies_of_each_server_family():
    import httpx

    from reelforge.plugins.story_llm.transport import error_message

    def msg(status, body):
        return error_message(httpx.Response(status, **({"json": body} if not isinstance(body, str)
                                                       else {"text": body})))

    # OpenAI and llama.cpp
    assert msg(400, {"error": {"message": "bad schema", "type": "invalid_request_error",
                               "code": "invalid_json_schema"}}) == ("bad schema", "invalid_json_schema")
    # Ollama
    assert msg(404, {"error": 'model "x" not found'}) == ('model "x" not found', None)
    # vLLM
    assert msg(400, {"object": "error", "message": "max_tokens is too large", "type": "BadRequestError",
                     "param": None, "code": 400}) == ("max_tokens is too large", None)
    assert msg(502, "<html>Bad Gateway</html>") == ("<html>Bad Gateway</html>", None)


def test_retry_after_forms():
    import email.utils
    import time

    from reelforge.plugins.story_llm.transport import parse_retry_after

    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "7"}) == 1.5
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < parse_retry_after({"retry-after": later}) <= 60
    assert parse_retry_after({}) is None and parse_retry_after({"retry-after": "soon"}) is None


def test_http_is_imported_lazily():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, reelforge.plugins.story_llm.openai_compat, reelforge.plugins.story_llm.ollama; "
            "print('reelforge.plugins.story_llm.transport' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root)
    assert out.stdout.strip() == "False"  # httpx comes with the first request, not with --help


def test_docs_show_the_schemas_and_every_option():
    import json
    import re
    from pathlib import Path

    import attrs

    text = (Path(__file__).resolve().parents[2] / "docs" / "story_llms.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.+?)\n```", text, re.DOTALL)]
    assert blocks == [SCHEMAS["story"], SCHEMAS["scene_graph"], SCHEMAS["shot_plan"]]
    for cls in (openai_compat.OpenAIOptions, ollama.OllamaOptions):
        for field in attrs.fields(cls):
            assert f"| `{field.name}` |" in text, f"{cls.__name__}.{field.name} is not documented"
