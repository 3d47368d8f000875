"""A hostile or broken LLM server (the fake, really listening on 127.0.0.1): echoed API
keys, floods, trickles, absurd nesting, oversized fields, credentials in base_url."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import fake_llm
from fake_llm import Canned, chat_completion, film_content
from reelforge.cli.core import cli
from reelforge.errors import ConfigError, ServiceError, StageError
from reelforge.plugins.story_llm.ollama import OllamaOptions, OllamaStory
from reelforge.plugins.story_llm.openai_compat import OpenAIOptions, OpenAIStory

from .conftest import files_holding

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-hostile-5c0ffee5ecre7d00d1e"


def writer(server, **kw) -> OpenAIStory:
    return OpenAIStory(OpenAIOptions(base_url=f"{server.url}/v1", model="m", **kw))


# -- item 9: an echoed API key reaches nothing -------------------------------------------

@pytest.mark.parametrize("echo", [fake_llm.echo_auth_401, fake_llm.echo_auth_500_html,
                                  fake_llm.echo_auth_400_json])
def test_an_echoed_api_key_is_in_no_output_and_no_file(llm, tmp_path, echo):
    """`reelforge run` as a user runs it (a subprocess: terminal, logs and warnings as they
    really are), against a server that repeats the Authorization header in its error."""
    llm.responder = echo
    out = tmp_path / "output"
    env = {**os.environ, "OPENAI_API_KEY": KEY, "REELFORGE_RETRY_ATTEMPTS": "2",
           "REELFORGE_RETRY_BACKOFF": "0", "REELFORGE_LOAD_PLUGINS": "", "NO_PROXY": "127.0.0.1",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "reelforge", "run", "A lighthouse keeper", "--new",
           "--story-llm", "openai", "-o", f"openai.base_url={llm.url}/v1", "-o", "shots=3",
           "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert llm.requests and all(r.headers["authorization"] == f"Bearer {KEY}" for r in llm.requests)
    # the server's echo did come back, masked: the user still sees what the server said
    terminal = proc.stdout + proc.stderr
    assert "***" in terminal, terminal
    quoted = __import__("urllib.parse").parse.quote(KEY)
    for form in (KEY, quoted, KEY[3:]):
        assert form not in terminal
    assert not files_holding(out, KEY, KEY[3:]), "the key reached a session file"
    assert not files_holding(tmp_path, KEY, KEY[3:])
    # and the session is resumable with the failure on record
    [meta] = out.glob("sessions/*/*_meta.json")
    assert "***" in meta.read_text()


def test_an_echoed_key_is_masked_in_exceptions_and_log_records(llm, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    llm.responder = fake_llm.echo_auth_500_html
    monkeypatch.setenv("REELFORGE_RETRY_ATTEMPTS", "2")
    with caplog.at_level("DEBUG"):
        with pytest.raises(ServiceError) as info:
            writer(llm).write_story("an idea")
    chain = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("Authorization: Bearer ***" in text for text in chain)
    assert all(KEY not in text for text in chain)
    assert all(KEY not in r.getMessage() for r in caplog.records)


def test_the_ollama_key_is_sent_and_registered(llm, monkeypatch):
    monkeypatch.setenv("MY_OLLAMA_KEY", "olk-1234567890abcdef")
    llm.responder = lambda seen: Canned(401, {"error": f"unauthorized: {seen.headers['authorization']}"})
    story = OllamaStory(OllamaOptions(base_url=llm.url, api_key_env="MY_OLLAMA_KEY"))
    with pytest.raises(ServiceError) as info:
        story.write_story("an idea")
    assert llm.requests[0].headers["authorization"] == "Bearer olk-1234567890abcdef"
    assert "Bearer ***" in str(info.value) and "olk-1234567890abcdef" not in str(info.value)
    # without api_key_env nothing is sent
    OllamaStory(OllamaOptions(base_url=llm.url)).close()


@pytest.mark.parametrize("backend, url", [
    ("openai", "http://user:pa55-word-xyz@127.0.0.1:9/v1"),
    ("openai", "https://sk-inurl-abcdef123456@api.example/v1"),
    ("ollama", "http://user:pa55-word-xyz@127.0.0.1:9"),
])
def test_credentials_in_base_url_are_refused_before_a_session_exists(tmp_path, backend, url):
    out = tmp_path / "output"
    r = CliRunner().invoke(cli, ["run", "x", "--new", "--story-llm", backend, "-o",
                                 f"{backend}.base_url={url}", "--output-dir", str(out)])
    assert r.exit_code == 2, r.output
    assert "carries a user name or password" in r.output and "***@" in r.output
    assert "pa55-word-xyz" not in r.output and "sk-inurl-abcdef123456" not in r.output
    assert "api_key_env" in r.output
    assert not (out / "sessions").exists()


# -- item 10: bounded answers ------------------------------------------------------------

def test_a_300_mb_chunked_answer_is_refused_while_it_streams(llm):
    llm.enqueue(Canned(200, flood_bytes=300 * 1024 * 1024))
    with pytest.raises(ServiceError, match=r"refusing its answer: the answer passed the 8.0 MiB limit") as info:
        writer(llm).write_story("an idea")
    assert "max_answer_mib" in str(info.value)
    assert llm.sent < 100 * 1024 * 1024
    assert len(llm.requests) == 1  # refused, not retried


def test_the_answer_cap_is_an_option(llm):
    llm.enqueue(chat_completion(dict(fake_llm.STORY, synopsis="s" * 300_000)))
    with pytest.raises(ServiceError, match=r"announced 293.8 KiB, over the 102.4 KiB limit"):
        writer(llm, max_answer_mib=0.1).write_story("an idea")


def test_a_one_byte_a_second_answer_fails_at_the_timeout(llm, monkeypatch):
    monkeypatch.setenv("REELFORGE_RETRY_ATTEMPTS", "1")
    canned = chat_completion(fake_llm.STORY)
    canned.trickle_s = 0.2  # each byte well inside the read timeout: only a deadline stops it
    llm.enqueue(canned)
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"did not answer within 1s"):
        writer(llm, timeout=1.0).write_story("an idea")
    assert time.monotonic() - started < 30
    assert 0 < llm.sent < 100


def test_a_50_mb_title_is_refused(llm):
    llm.enqueue(chat_completion(dict(fake_llm.STORY, title="T" * (50 * 1024 * 1024))))
    with pytest.raises(ServiceError, match="announced 50.0 MiB, over the 8.0 MiB limit"):
        writer(llm).write_story("an idea")
    assert llm.sent == 0  # refused on its Content-Length, before a byte of the body was read


def test_an_oversized_field_is_refused_naming_it_and_not_resent_whole(llm):
    huge = dict(fake_llm.STORY, title="T" * 1_000_000)  # under the body cap, over the field's
    llm.enqueue(*[chat_completion(huge)] * 3)
    with pytest.raises(StageError, match=r"\$\.title: 1,000,000 characters; at most 300 are allowed"):
        writer(llm).write_story("an idea")
    assert len(llm.requests) == 3
    for seen in llm.requests[1:]:
        echoed = [m["content"] for m in seen.messages if m["role"] == "assistant"]
        assert echoed and all(len(e) < 40_000 for e in echoed)


@pytest.mark.parametrize("field, value, words", [
    ("synopsis", "s" * 20_001, r"\$\.synopsis: 20,001 characters"),
    ("style", "s" * 2_001, r"\$\.style: 2,001 characters"),
    ("characters", [{"name": "n" * 101, "description": "d"}], r"\$\.characters\[0\]\.name: 101 characters"),
    ("characters", [{"name": f"c{i}", "description": "d"} for i in range(101)], r"\$\.characters: 101 characters"),
])
def test_story_field_bounds(llm, field, value, words):
    llm.enqueue(*[chat_completion(dict(fake_llm.STORY, **{field: value}))] * 3)
    with pytest.raises(StageError, match=words):
        writer(llm).write_story("an idea")


def test_shot_field_bounds(llm):
    from reelforge.records import SceneGraph, Story, structure

    story = structure(fake_llm.STORY, Story)
    graph = structure(fake_llm.SCENES, SceneGraph)
    plan = fake_llm.shots_for([("s1", 1), ("s2", 1), ("s3", 1)])
    plan["shots"][1]["image_prompt"] = "p" * 4_001
    llm.enqueue(*[chat_completion(plan)] * 3)
    with pytest.raises(StageError, match=r"\$\.shots\[1\]\.image_prompt: 4,001 characters"):
        writer(llm, shots=3).plan_shots(story, graph)
    plan["shots"][1]["image_prompt"] = "fine"
    plan["shots"][2]["duration_s"] = 1e308
    llm.enqueue(*[chat_completion(plan)] * 3)
    with pytest.raises(StageError, match=r"\$\.shots\[2\]\.duration_s: must be more than 0 and at most 3600"):
        writer(llm, shots=3).plan_shots(story, graph)


# -- item 11: deep nesting ---------------------------------------------------------------

def test_deeply_nested_http_json_is_a_clear_error(llm):
    llm.enqueue(Canned(200, "[" * 100_000 + "]" * 100_000))
    with pytest.raises(ServiceError, match="answered with JSON nested too deeply"):
        writer(llm).write_story("an idea")


def test_deeply_nested_content_is_repaired_then_a_clear_error(llm):
    deep = '{"title": ' + "[" * 100_000 + "]" * 100_000 + "}"
    llm.enqueue(*[chat_completion(deep)] * 3)
    with pytest.raises(StageError, match="nested too deeply"):
        writer(llm).write_story("an idea")
    assert len(llm.requests) == 3  # sent back for repair like any invalid JSON


def test_a_deep_but_decodable_answer_is_refused_by_type_not_recursion(llm):
    llm.enqueue(*[chat_completion({**fake_llm.STORY, "characters": [[[[[[[[[["x"]]]]]]]]]]})] * 3)
    with pytest.raises(StageError, match=r"characters"):
        writer(llm).write_story("an idea")


def test_huge_integers_are_invalid_json_not_a_crash(llm):
    llm.enqueue(*[chat_completion('{"title": "x", "n": ' + "9" * 5000 + "}")] * 3)
    with pytest.raises(StageError, match="not usable JSON"):
        writer(llm).write_story("an idea")


@pytest.mark.parametrize("body", [
    {"choices": [{"message": "not an object"}]},
    {"choices": [{"message": {"content": {"a": 1}}, "finish_reason": 7}], "usage": [1]},
])
def test_answers_of_the_wrong_shape_are_service_errors(llm, body):
    llm.enqueue(Canned(200, body))
    with pytest.raises(ServiceError, match="not an object|not text"):
        writer(llm).write_story("an idea")


@pytest.mark.parametrize("headers, expected", [
    ({"retry-after": "nan"}, None), ({"retry-after": "1e400"}, None), ({"retry-after-ms": "inf"}, None),
    ({"retry-after": "2"}, 2.0), ({"retry-after-ms": "1500"}, 1.5),
])
def test_retry_after_values_that_are_not_finite_are_ignored(headers, expected):
    from reelforge.plugins.story_llm.transport import parse_retry_after

    assert parse_retry_after(headers) == expected


def test_a_bible_that_would_overflow_a_prompt_is_cut_to_fit(llm):
    from reelforge.records import MAX_PROMPT, SceneGraph, Story, structure

    cast = [{"name": f"Person {i}", "description": f"look {i} " + "d" * 1_900} for i in range(40)]
    story = structure(dict(fake_llm.STORY, characters=cast, style="s" * 1_999), Story)
    graph = structure(fake_llm.SCENES, SceneGraph)
    plan = fake_llm.shots_for([("s1", 1), ("s2", 1), ("s3", 1)])
    for draft in plan["shots"]:
        draft.update(image_prompt="p" * 3_999, characters=[c["name"] for c in cast])
    llm.enqueue(chat_completion(plan))
    shots = writer(llm, shots=3).plan_shots(story, graph).shots
    assert all(len(s.image_prompt) <= MAX_PROMPT for s in shots)
    # the style is the film's look (story.style), not in the prompt; the backend adds it whole
    from reelforge.looks import compose

    assert not any("s" * 50 in s.image_prompt for s in shots)
    assert all(compose(s.image_prompt, story.style).endswith("s" * 1_999) for s in shots)


def test_target_seconds_must_fit_the_longest_shot():
    with pytest.raises(ConfigError, match="more than 600s a shot"):
        OpenAIStory(OpenAIOptions(base_url="http://127.0.0.1:9/v1", shots=2, target_seconds=5000))


def test_a_whole_film_still_plans_with_every_bound_in_place(llm):
    llm.responder = lambda seen: chat_completion(film_content(seen))
    story = writer(llm, shots=5)
    s = story.write_story("a lighthouse")
    g = story.build_scene_graph(s)
    assert len(story.plan_shots(s, g).shots) == 5
