"""The openai story writer against a fake chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from fake_llm import (
    API_KEY, SCENES, STORY, Canned, chat_completion, openai_error, openai_film, parts_asked,
    shot, shots_for,
)
from reelforge.errors import ConfigError, RetryableServiceError, ServiceError, StageError
from reelforge.records import SceneGraph, Story, structure
from reelforge.plugins.story_llm.openai_compat import OpenAIOptions, OpenAIStory
from reelforge.plugins.story_llm.schemas import SCHEMAS


def backend(server, **options) -> OpenAIStory:
    options.setdefault("timeout", 60.0)  # ample: a test that wants a timeout sets its own
    return OpenAIStory(OpenAIOptions(base_url=f"{server.url}/v1", model="fake-1", **options))


STORY_REC = structure(STORY, Story)
SCENES_REC = structure(SCENES, SceneGraph)


def test_three_stages_request_and_result(fake_server, caplog):
    caplog.set_level(logging.DEBUG)
    fake_server.responder = openai_film
    llm = backend(fake_server, seed=7, max_tokens=4000, temperature=0.2, shots=6, target_seconds=24)
    story = llm.write_story("a cat relights a lighthouse")
    graph = llm.build_scene_graph(story)
    plan = llm.plan_shots(story, graph)

    assert story.title == STORY["title"] and story.characters[0].name == "Mabel"
    assert [s.id for s in graph.scenes] == ["s1", "s2", "s3"]
    assert [s.id for s in plan.shots] == [1, 2, 3, 4, 5, 6]
    assert [s.scene_id for s in plan.shots] == ["s1", "s1", "s2", "s2", "s3", "s3"]

    first = fake_server.requests[0]
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    body = first.body
    assert body["model"] == "fake-1" and body["seed"] == 7 and body["max_tokens"] == 4000
    assert body["temperature"] == 0.2
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "story", "strict": True, "schema": SCHEMAS["story"]}}
    assert "a cat relights a lighthouse" in first.user
    assert [r.body["response_format"]["json_schema"]["name"] for r in fake_server.requests] == [
        "story", "scene_graph", "shot_plan"]

    # the cast's looks are carried into every image prompt by code, whatever the model wrote;
    # the style is the film's look (story.style), applied by the image backend, not in the prompt
    for s in plan.shots:
        assert STORY["style"] not in s.image_prompt and s.look == ""
        assert "ginger tabby" in s.image_prompt
        assert "Old Tom" not in s.image_prompt  # not in frame
        assert s.characters == ("Mabel",)  # "mabel" normalised to the story's spelling
        assert s.negative_prompt  # a default when the model gave none
    # durations fitted to the target length; seeds deterministic and distinct
    assert sum(s.duration_s for s in plan.shots) == pytest.approx(24)
    assert len({s.seed for s in plan.shots}) == 6
    again = backend(fake_server, seed=7, shots=6, target_seconds=24).plan_shots(story, graph)
    assert [s.seed for s in again.shots] == [s.seed for s in plan.shots]
    assert API_KEY not in caplog.text


def test_json_schema_refused_falls_back_to_json_object(fake_server, caplog):
    fake_server.enqueue(openai_error(
        400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
        param="response_format"))
    fake_server.responder = openai_film
    llm = backend(fake_server)
    story = llm.write_story("idea")
    llm.build_scene_graph(story)
    modes = [r.body["response_format"]["type"] for r in fake_server.requests]
    assert modes == ["json_schema", "json_object", "json_object"]
    # json_object mode needs the schema (and the word JSON) in the messages
    assert "JSON schema" in fake_server.requests[1].messages[0]["content"]
    assert '"logline"' in fake_server.requests[1].messages[0]["content"]
    assert "json_object" in caplog.text


def test_old_llama_cpp_500_for_json_schema_falls_back_at_once(fake_server):
    fake_server.enqueue(Canned(500, {"error": {"code": 500, "type": "server_error", "message":
        'response_format type must be one of "text" or "json_object", but got: json_schema'}}))
    fake_server.responder = openai_film
    backend(fake_server).write_story("idea")
    assert [r.body["response_format"]["type"] for r in fake_server.requests] == [
        "json_schema", "json_object"]


def test_json_object_refused_too_falls_back_to_prompt_only(fake_server):
    fake_server.enqueue(
        openai_error(400, "response_format json_schema is not supported"),
        openai_error(400, "Unrecognized request argument supplied: response_format"),
    )
    fake_server.responder = openai_film
    backend(fake_server).write_story("idea")
    assert [r.body.get("response_format", {}).get("type") for r in fake_server.requests] == [
        "json_schema", "json_object", None]


def test_json_mode_none_sends_no_response_format(fake_server):
    fake_server.responder = openai_film
    backend(fake_server, json_mode="none").write_story("idea")
    assert "response_format" not in fake_server.requests[0].body


def test_unrelated_400_is_not_retried_and_keeps_server_message(fake_server):
    fake_server.enqueue(openai_error(400, "This model's maximum context length is 8192 tokens.",
                                     code="context_length_exceeded"))
    with pytest.raises(ServiceError) as info:
        backend(fake_server).write_story("idea")
    assert not isinstance(info.value, RetryableServiceError)
    assert "maximum context length is 8192" in str(info.value)
    assert info.value.status_code == 400
    assert len(fake_server.requests) == 1


@pytest.mark.parametrize("status,message,hint", [
    (401, "Incorrect API key provided: sk-test-***re7.", "API key"),
    (403, "You are not allowed to use this model.", "API key"),
    (404, "The model `fake-1` does not exist or you do not have access to it.", "model name"),
])
def test_client_errors_fail_at_once(fake_server, status, message, hint):
    fake_server.enqueue(openai_error(status, message))
    with pytest.raises(ServiceError) as info:
        backend(fake_server).write_story("idea")
    assert not isinstance(info.value, RetryableServiceError)
    assert message in str(info.value) and hint in str(info.value)
    assert str(status) in str(info.value)
    assert len(fake_server.requests) == 1
    assert API_KEY not in str(info.value)


def test_429_with_retry_after_is_retried(fake_server):
    fake_server.enqueue(openai_error(429, "Rate limit reached for requests", type_="requests",
                                     code="rate_limit_exceeded", headers={"Retry-After": "7"}))
    fake_server.responder = openai_film
    story = backend(fake_server).write_story("idea")
    assert story.title == STORY["title"]
    assert len(fake_server.requests) == 2


def test_retry_after_is_read_from_the_answer(fake_server, monkeypatch):
    monkeypatch.setenv("REELFORGE_RETRY_ATTEMPTS", "1")
    fake_server.enqueue(openai_error(429, "Rate limit reached", code="rate_limit_exceeded",
                                     headers={"Retry-After": "7"}))
    with pytest.raises(ServiceError) as info:
        backend(fake_server).write_story("idea")
    cause = info.value.__cause__
    assert isinstance(cause, RetryableServiceError) and cause.retry_after == 7.0
    assert cause.status_code == 429
    assert "Rate limit reached" in str(info.value) and "after 1 attempt;" in str(info.value)


def test_insufficient_quota_is_not_retried(fake_server):
    fake_server.enqueue(openai_error(429, "You exceeded your current quota.", type_="insufficient_quota",
                                     code="insufficient_quota"))
    with pytest.raises(ServiceError, match="exceeded your current quota"):
        backend(fake_server).write_story("idea")
    assert len(fake_server.requests) == 1


def test_5xx_retried_then_gives_up_as_non_retryable(fake_server):
    for _ in range(3):
        fake_server.enqueue(openai_error(503, "The server is overloaded.", type_="server_error"))
    with pytest.raises(ServiceError) as info:
        backend(fake_server).write_story("idea")
    # retried here already: the runner must not retry the stage again on top
    assert not isinstance(info.value, RetryableServiceError)
    assert "overloaded" in str(info.value) and "3 attempts" in str(info.value)
    assert len(fake_server.requests) == 3


def test_connection_refused_is_transient_then_clear(fake_server):
    url = fake_server.url
    fake_server.httpd.shutdown()
    fake_server.httpd.server_close()
    llm = OpenAIStory(OpenAIOptions(base_url=f"{url}/v1", timeout=2))
    with pytest.raises(ServiceError, match="could not reach OpenAI-compatible server") as info:
        llm.write_story("idea")
    assert isinstance(info.value.__cause__, RetryableServiceError)


def test_timeout_is_retried(fake_server):
    first_answer = threading.Event()  # the first request hangs until the retry has come

    def retried(seen):
        first_answer.set()
        return openai_film(seen)

    fake_server.enqueue(Canned(200, {}, hold=first_answer))
    fake_server.responder = retried
    llm = backend(fake_server, timeout=3.0)  # short enough to wait out, long for a local answer
    assert llm.write_story("idea").title == STORY["title"]
    assert len(fake_server.requests) == 2


def test_missing_key_for_api_openai_com_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIStory(OpenAIOptions())


def test_local_server_needs_no_key(fake_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    fake_server.responder = openai_film
    backend(fake_server).write_story("idea")
    assert "authorization" not in fake_server.requests[0].headers


def test_key_read_from_the_named_variable(fake_server, monkeypatch):
    monkeypatch.setenv("MY_VLLM_KEY", "token-abc")
    fake_server.responder = openai_film
    backend(fake_server, api_key_env="MY_VLLM_KEY").write_story("idea")
    assert fake_server.requests[0].headers["authorization"] == "Bearer token-abc"


# -- malformed output: repair, then a clear error ---------------------------------------

def test_invalid_json_is_sent_back_for_repair(fake_server):
    bad = '{"title": "The Lighthouse", "logline": "x", '
    fake_server.enqueue(chat_completion(bad))
    fake_server.responder = openai_film
    story = backend(fake_server).write_story("idea")
    assert story.title == STORY["title"]
    repair = fake_server.requests[1].messages
    assert repair[-2] == {"role": "assistant", "content": bad}
    assert repair[-1]["role"] == "user" and "not valid JSON" in repair[-1]["content"]


def test_markdown_fences_are_tolerated(fake_server):
    fake_server.enqueue(chat_completion("```json\n" + json.dumps(STORY) + "\n```"))
    assert backend(fake_server).write_story("idea").title == STORY["title"]
    assert len(fake_server.requests) == 1


def test_missing_field_repaired_twice_then_names_the_field(fake_server):
    broken = {k: v for k, v in STORY.items() if k != "logline"}
    for _ in range(3):
        fake_server.enqueue(chat_completion(broken))
    with pytest.raises(StageError) as info:
        backend(fake_server).write_story("idea")
    assert "logline" in str(info.value) and "2 repair attempts" in str(info.value)
    assert len(fake_server.requests) == 3
    assert "logline" in fake_server.requests[1].messages[-1]["content"]
    assert len(fake_server.requests[2].messages) == 6  # two repair rounds in the conversation


def test_wrong_type_names_the_shot_and_field(fake_server):
    bad = {"shots": [shot("s1", 1), shot("s2", 2, duration_s="a while"), shot("s3", 3)]}
    for _ in range(3):
        fake_server.enqueue(chat_completion(bad))
    with pytest.raises(StageError, match=r"shots\[1\]\.duration_s"):
        backend(fake_server, shots=3).plan_shots(STORY_REC, SCENES_REC)


def test_extra_keys_and_unknown_scene_are_repaired(fake_server):
    fake_server.enqueue(
        chat_completion({"shots": [shot("s1", 1, lens="50mm"), shot("s2", 2), shot("s3", 3)]}),
        chat_completion({"shots": [shot("s1", 1), shot("s9", 2), shot("s3", 3)]}),
        chat_completion(shots_for([("s1", 1), ("s2", 1), ("s3", 1)])),
    )
    plan = backend(fake_server, shots=3).plan_shots(STORY_REC, SCENES_REC)
    assert len(plan.shots) == 3
    assert "lens" in fake_server.requests[1].messages[-1]["content"]
    assert "'s9' is not one of the scenes" in fake_server.requests[2].messages[-1]["content"]


def test_short_shot_list_is_repaired_not_accepted(fake_server):
    fake_server.enqueue(chat_completion(shots_for([("s1", 1), ("s2", 1), ("s3", 1)])))
    fake_server.responder = openai_film
    plan = backend(fake_server, shots=5).plan_shots(STORY_REC, SCENES_REC)
    assert len(plan.shots) == 5
    assert "expected exactly 5 shots, got 3" in fake_server.requests[1].messages[-1]["content"]


def test_every_shot_gets_its_narration_and_a_missing_line_is_repaired(fake_server):
    fake_server.enqueue(
        chat_completion({"shots": [shot("s1", 1), shot("s2", 2, narration="  "), shot("s3", 3)]}),
        chat_completion({"shots": [shot("s1", 1), shot("s2", 2), shot("s3", 3, narration="La lampe   s'allume.")]}),
    )
    plan = backend(fake_server, shots=3).plan_shots(STORY_REC, SCENES_REC)
    assert "$.shots[1].narration: must not be empty" in fake_server.requests[1].messages[-1]["content"]
    assert [s.narration for s in plan.shots] == [
        "Mabel climbs towards the lamp, step 1 of the long night.",
        "Mabel climbs towards the lamp, step 2 of the long night.", "La lampe s'allume."]
    asked = fake_server.requests[0].user
    assert "narration" in asked and "language the idea is written in" in asked


def test_refusal_is_a_service_error(fake_server):
    fake_server.enqueue(chat_completion("", refusal="I can't help with that."))
    with pytest.raises(ServiceError, match="refused: I can't help with that"):
        backend(fake_server).write_story("idea")


# -- truncation and batching ------------------------------------------------------------

def test_truncated_shot_list_is_asked_again_in_halves(fake_server):
    full = shots_for([("s1", 2), ("s2", 2), ("s3", 2)])
    cut = json.dumps(full)[:300]
    fake_server.enqueue(chat_completion(cut, finish_reason="length"))
    fake_server.responder = openai_film
    plan = backend(fake_server, shots=6).plan_shots(STORY_REC, SCENES_REC)
    assert [s.id for s in plan.shots] == [1, 2, 3, 4, 5, 6]
    asked = [parts_asked(r) for r in fake_server.requests[1:]]
    assert asked == [(1, [("s1", 2), ("s2", 1)]), (4, [("s2", 1), ("s3", 2)])]
    # the second half is told what came just before, for continuity
    assert "shot 3 in s2" in fake_server.requests[2].user


def test_a_parsable_answer_cut_at_the_limit_is_not_kept(fake_server):
    fake_server.enqueue(chat_completion(shots_for([("s1", 1), ("s2", 1), ("s3", 1)]),
                                        finish_reason="length"))
    fake_server.responder = openai_film
    plan = backend(fake_server, shots=3).plan_shots(STORY_REC, SCENES_REC)
    assert len(plan.shots) == 3 and len(fake_server.requests) == 3


def test_truncated_story_is_a_clear_error(fake_server):
    fake_server.enqueue(chat_completion('{"title": "The Li', finish_reason="length"))
    with pytest.raises(StageError, match="cut off its story.*max_tokens"):
        backend(fake_server, max_tokens=20).write_story("idea")


def test_single_shot_still_truncated_is_a_clear_error(fake_server):
    for _ in range(3):
        fake_server.enqueue(chat_completion('{"shots": [', finish_reason="length"))
    with pytest.raises(StageError, match="shot 1 .*max_tokens"):
        backend(fake_server, shots=2).plan_shots(STORY_REC, SCENES_REC)


def test_long_plan_is_asked_in_batches(fake_server):
    fake_server.responder = openai_film
    plan = backend(fake_server, shots=30, batch_shots=12, target_seconds=90).plan_shots(
        STORY_REC, SCENES_REC)
    assert [s.id for s in plan.shots] == list(range(1, 31))
    asked = [parts_asked(r) for r in fake_server.requests]
    assert asked == [(1, [("s1", 10), ("s2", 2)]), (13, [("s2", 8), ("s3", 4)]), (25, [("s3", 6)])]
    assert "Plan only shots 13 to 24 (exactly 12 shots)" in fake_server.requests[1].user
    assert sum(s.duration_s for s in plan.shots) == pytest.approx(90)


def test_retry_waits_as_long_as_the_server_asks(fake_server, monkeypatch):
    monkeypatch.setenv("REELFORGE_RETRY_BACKOFF", "5")  # backoff on: the server's wait wins
    fake_server.enqueue(openai_error(429, "Rate limit reached", code="rate_limit_exceeded",
                                     headers={"retry-after-ms": "300", "Retry-After": "1"}))
    fake_server.responder = openai_film
    import tenacity.nap

    waits: list[float] = []
    monkeypatch.setattr(tenacity.nap, "time", type("Clock", (), {"sleep": staticmethod(waits.append)}))
    backend(fake_server).write_story("idea")
    assert waits == [0.3]  # the server's retry-after-ms, not the 5 s backoff nor its Retry-After
    assert len(fake_server.requests) == 2


def test_fewer_shots_than_scenes_says_which_scenes_get_none(fake_server, caplog):
    fake_server.responder = openai_film
    plan = backend(fake_server, shots=2).plan_shots(STORY_REC, SCENES_REC)
    assert [s.scene_id for s in plan.shots] == ["s1", "s2"]
    assert "scene(s) s3 get no shot" in caplog.text


def test_parts_of_a_long_plan_survive_a_failure(fake_server):
    import threading

    from reelforge.protocols import StageJob

    saved: dict = {}
    progress: list = []

    def job():
        return StageJob(session_id="s", stage="shots", checkpoint=dict(saved), cancelled=threading.Event(),
                        save=saved.update, progress=lambda f, m: progress.append((round(f, 2), m)))

    def fail_on_second_part(seen):
        if parts_asked(seen)[0] == 13:
            return openai_error(400, "This model's maximum context length is exceeded")
        return openai_film(seen)

    fake_server.responder = fail_on_second_part
    writer = backend(fake_server, shots=30, batch_shots=12, target_seconds=90)
    with pytest.raises(ServiceError, match="maximum context length"):
        writer.plan_shots(STORY_REC, SCENES_REC, job=job())
    assert list(saved["parts"]) == ["1"] and len(saved["parts"]["1"]) == 12
    assert progress == [(0.33, "shots 1-12 of 30")]

    fake_server.requests.clear()
    fake_server.responder = openai_film
    plan = writer.plan_shots(STORY_REC, SCENES_REC, job=job())
    assert [s.id for s in plan.shots] == list(range(1, 31))
    assert [parts_asked(r)[0] for r in fake_server.requests] == [13, 25]  # part 1 not asked again

    fake_server.requests.clear()
    other = backend(fake_server, shots=30, batch_shots=12, target_seconds=60)  # other options
    other.plan_shots(STORY_REC, SCENES_REC, job=job())
    assert [parts_asked(r)[0] for r in fake_server.requests] == [1, 13, 25]  # saved parts not reused
