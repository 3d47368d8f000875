"""Issue 9 item 1 for the LLM backends: before a run creates a session, one cheap GET of the
server's model list (OpenAI: {base_url}/models, Ollama: /api/tags) proves the server is
there and speaks the API, or refuses with one clear message."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from fake_llm import API_KEY, Canned, ollama_film, openai_error, openai_film
from reelforge.cli.core import cli
from reelforge.errors import ServiceError
from reelforge.store.sessions import SessionStore
from reelforge.plugins.story_llm.ollama import OllamaOptions, OllamaStory
from reelforge.plugins.story_llm.openai_compat import OpenAIOptions, OpenAIStory


def openai(server, **kw) -> OpenAIStory:
    kw.setdefault("model", "fake-1")
    return OpenAIStory(OpenAIOptions(base_url=f"{server.url}/v1", **kw))


def ollama(server, **kw) -> OllamaStory:
    return OllamaStory(OllamaOptions(base_url=server.url, **kw))


def test_the_model_list_is_asked_once_with_the_key(fake_server):
    openai(fake_server).preflight()
    [seen] = fake_server.gets
    assert seen.path == "/v1/models" and seen.headers["authorization"] == f"Bearer {API_KEY}"
    ollama(fake_server).preflight()
    assert fake_server.gets[-1].path == "/api/tags"
    assert fake_server.requests == []  # no chat request was spent on it


def test_a_missing_model_is_named_with_those_the_server_offers(fake_server):
    fake_server.models = ["gpt-4o", "o3-mini"]
    with pytest.raises(ServiceError, match=r"has no model 'fake-1'; it offers: gpt-4o, o3-mini\. "
                                           r"Pick one with -o openai.model=NAME"):
        openai(fake_server).preflight()
    fake_server.models = ["llama3.1:latest", "qwen2.5:7b"]
    ollama(fake_server, model="llama3.1").preflight()  # llama3.1 is llama3.1:latest
    with pytest.raises(ServiceError, match=r"has no model 'mistral'; it offers: llama3.1:latest, "
                                           r"qwen2.5:7b\. Run `ollama pull mistral`"):
        ollama(fake_server, model="mistral").preflight()
    fake_server.models = []
    with pytest.raises(ServiceError, match="it lists no models"):
        ollama(fake_server).preflight()


def test_a_llama_cpp_server_serves_its_one_model_whatever_it_is_called(fake_server):
    fake_server.models, fake_server.owned_by = ["/models/qwen2.5-7b-instruct-q4_k_m.gguf"], "llamacpp"
    openai(fake_server, model="anything").preflight()


@pytest.mark.parametrize("canned, words", [
    (openai_error(401, "Incorrect API key provided: sk-te***", code="invalid_api_key"),
     r"answered 401 to GET /models: Incorrect API key provided.*; check the API key \(the environment "
     r"variable named by openai.api_key_env"),
    (Canned(404, "404 page not found", content_type="text/plain"),
     r"answered 404 to GET /models: 404 page not found; check base_url \(the API root, which for most "
     r"servers ends in /v1\)"),
    (Canned(200, "<html><body>Router login</body></html>", content_type="text/html"),
     r"answered GET /models with something that is not a JSON object; is base_url the API root"),
])
def test_a_wrong_server_or_key_is_one_clear_error(fake_server, canned, words):
    fake_server.on_get = canned
    with pytest.raises(ServiceError, match=words):
        openai(fake_server).preflight()


def test_a_busy_server_is_let_through(fake_server):
    fake_server.on_get = openai_error(503, "Loading model", "unavailable_error")
    openai(fake_server).preflight()


def test_nothing_listening_is_said_plainly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    writer = OpenAIStory(OpenAIOptions(base_url=f"http://127.0.0.1:{port}/v1"))
    with pytest.raises(ServiceError, match=r"could not reach OpenAI-compatible server at "
                                           r"http://127.0.0.1:\d+/v1: .*is it running and is base_url right\?"):
        writer.preflight()


def test_the_check_can_be_switched_off(fake_server):
    fake_server.on_get = Canned(404, "nope", content_type="text/plain")
    openai(fake_server, check_server=False).preflight()
    assert fake_server.gets == []


@pytest.mark.parametrize("backend, film", [("openai", openai_film), ("ollama", ollama_film)])
def test_run_refuses_before_a_session_exists_and_runs_when_all_is_well(tmp_path, fake_server, backend, film):
    out = tmp_path / "output"
    url = f"{fake_server.url}/v1" if backend == "openai" else fake_server.url
    args = ["run", "A cat relights a lighthouse", "--new", "--story-llm", backend,
            "-o", f"{backend}.base_url={url}", "-o", f"{backend}.model=missing-model",
            "-o", "shots=3", "-o", "target_seconds=3", "--output-dir", str(out)]
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "has no model 'missing-model'" in lines[0], r.output
    assert not SessionStore(out).ids() and fake_server.requests == []
    fake_server.responder = film
    args[args.index(f"{backend}.model=missing-model")] = f"{backend}.model=fake-1"
    r = CliRunner().invoke(cli, [*args, "-o", "storyboard.width=320", "-o", "storyboard.height=180",
                                 "-o", "kenburns.width=320", "-o", "kenburns.height=180",
                                 "-o", "kenburns.fps=8"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
