"""The ollama story writer against a fake /api/chat server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from fake_llm import (
    SCENES, STORY, Canned, ollama_chat, ollama_error, ollama_film, parts_asked, shots_for,
)
from reelforge.errors import RetryableServiceError, ServiceError, StageError
from reelforge.records import SceneGraph, Story, structure
from reelforge.plugins.story_llm.ollama import OllamaOptions, OllamaStory
from reelforge.plugins.story_llm.schemas import SCHEMAS

STORY_REC = structure(STORY, Story)
SCENES_REC = structure(SCENES, SceneGraph)


def backend(server, **options) -> OllamaStory:
    options.setdefault("timeout", 60.0)  # ample: a test that wants a timeout sets its own
    return OllamaStory(OllamaOptions(base_url=server.url, model="llama3.1", **options))


def test_three_stages_request_and_result(fake_server):
    fake_server.responder = ollama_film
    llm = backend(fake_server, seed=3, temperature=0.1, num_ctx=16384, shots=4)
    story = llm.write_story("a cat relights a lighthouse")
    graph = llm.build_scene_graph(story)
    plan = llm.plan_shots(story, graph)
    assert story.style == STORY["style"]
    assert [s.scene_id for s in plan.shots] == ["s1", "s1", "s2", "s3"]
    assert not any(STORY["style"] in s.image_prompt for s in plan.shots)  # the film's look: story.style

    first = fake_server.requests[0]
    assert first.path == "/api/chat"
    assert "authorization" not in first.headers
    assert first.body["stream"] is False
    assert first.body["format"] == SCHEMAS["story"]
    assert first.body["options"] == {"temperature": 0.1, "num_ctx": 16384, "seed": 3, "num_predict": 2048}
    assert [r.body["format"] for r in fake_server.requests] == [
        SCHEMAS["story"], SCHEMAS["scene_graph"], SCHEMAS["shot_plan"]]


def test_done_reason_length_splits_the_plan(fake_server):
    cut = json.dumps(shots_for([("s1", 2), ("s2", 1), ("s3", 1)]))[:250]
    fake_server.enqueue(ollama_chat(cut, done_reason="length"))
    fake_server.responder = ollama_film
    plan = backend(fake_server, shots=4).plan_shots(STORY_REC, SCENES_REC)
    assert [s.id for s in plan.shots] == [1, 2, 3, 4]
    assert [parts_asked(r) for r in fake_server.requests[1:]] == [
        (1, [("s1", 2)]), (3, [("s2", 1), ("s3", 1)])]


def test_truncated_story_names_num_ctx(fake_server):
    fake_server.enqueue(ollama_chat('{"title": "The', done_reason="length"))
    with pytest.raises(StageError, match="num_ctx"):
        backend(fake_server).write_story("idea")


def test_model_not_found_fails_at_once_with_ollamas_message(fake_server):
    fake_server.enqueue(ollama_error(404, 'model "llama9" not found, try pulling it first'))
    with pytest.raises(ServiceError) as info:
        backend(fake_server).write_story("idea")
    assert not isinstance(info.value, RetryableServiceError)
    assert 'model "llama9" not found, try pulling it first' in str(info.value)
    assert len(fake_server.requests) == 1


@pytest.mark.parametrize("status,message", [
    (400, "json: cannot unmarshal object into Go struct field ChatRequest.format of type string"),
    (500, "invalid JSON schema in format"),
])
def test_ollama_refusing_a_schema_format_gets_json(fake_server, status, message):
    fake_server.enqueue(ollama_error(status, message))
    fake_server.responder = ollama_film
    backend(fake_server).write_story("idea")
    assert [r.body["format"] for r in fake_server.requests] == [SCHEMAS["story"], "json"]


def test_500_is_retried(fake_server):
    fake_server.enqueue(ollama_error(500, "llama runner process has terminated: signal: killed"))
    fake_server.responder = ollama_film
    assert backend(fake_server).write_story("idea").title == STORY["title"]
    assert len(fake_server.requests) == 2


def test_invalid_json_is_repaired(fake_server):
    fake_server.enqueue(ollama_chat("{\"title\": \"x\",,}"))
    fake_server.responder = ollama_film
    assert backend(fake_server).write_story("idea").title == STORY["title"]
    assert "not valid JSON" in fake_server.requests[1].messages[-1]["content"]


def test_non_json_body_is_transient(fake_server):
    fake_server.enqueue(Canned(200, "<html>proxy error</html>"))
    fake_server.responder = ollama_film
    assert backend(fake_server).write_story("idea").title == STORY["title"]
