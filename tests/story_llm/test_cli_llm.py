"""idea -> film.mp4 through the CLI with --story-llm openai / ollama against fake servers,
the offline image and video defaults, and the API key kept out of every file and log."""

from __future__ import annotations

import json
import logging

from click.testing import CliRunner

from fake_llm import API_KEY, STORY, ollama_film, openai_error, openai_film
from reelforge.cli.core import cli
from reelforge.store.sessions import SessionStore


#: Small, short clips keep the offline image and video stages fast.
SMALL = ["-o", "target_seconds=3", "-o", "storyboard.width=320", "-o", "storyboard.height=180",
         "-o", "kenburns.width=320", "-o", "kenburns.height=180", "-o", "kenburns.fps=8",
         "-o", "kenburns.prescale=1"]


def invoke(out, *args):
    return CliRunner().invoke(cli, [*args, *SMALL, "--output-dir", str(out)], catch_exceptions=False)


def session_files_text(out) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace")
                     for p in sorted(out.rglob("*")) if p.is_file())


def assert_film(out) -> str:
    [sid] = SessionStore(out).ids()
    session = out / "sessions" / sid
    assert (session / "film.mp4").stat().st_size > 0
    story = json.loads((session / "story.json").read_text())
    assert story["title"] == STORY["title"]
    shots = json.loads((session / "shots.json").read_text())["shots"]
    assert [s["id"] for s in shots] == [1, 2, 3]
    assert story["style"] == STORY["style"]  # the film's look, applied by the image backend
    assert not any(STORY["style"] in s["image_prompt"] for s in shots)
    return sid


def test_openai_idea_to_film(out, fake_server, caplog):
    caplog.set_level(logging.DEBUG)
    fake_server.responder = openai_film
    r = invoke(out, "run", "A cat relights a lighthouse", "--new", "--story-llm", "openai",
               "-o", f"openai.base_url={fake_server.url}/v1", "-o", "openai.model=fake-1",
               "-o", "shots=3", "-o", "openai.seed=11", "-o", "openai.json_mode=json_schema")
    assert r.exit_code == 0, r.output
    assert_film(out)
    assert len(fake_server.requests) == 3
    assert all(req.headers["authorization"] == f"Bearer {API_KEY}" for req in fake_server.requests)
    # the key is sent, never kept: not in the session files, the output or the log
    text = session_files_text(out)
    assert "OPENAI_API_KEY" in text  # the option naming the variable is recorded...
    assert API_KEY not in text  # ...the key itself is not
    assert API_KEY not in r.output and API_KEY not in caplog.text
    # the cost ledger: the API's usage fields, per story step
    usage = SessionStore(out).load(SessionStore(out).ids()[0]).meta.step_usage
    assert {step: (u["prompt_tokens"], u["completion_tokens"], u["attempts"]) for step, u in usage.items()} == {
        "story": (100, 50, 1), "scene_graph": (100, 50, 1), "shots": (100, 50, 1)}


def test_ollama_idea_to_film(out, fake_server):
    fake_server.responder = ollama_film
    r = invoke(out, "run", "A cat relights a lighthouse", "--new", "--story-llm", "ollama",
               "-o", f"ollama.base_url={fake_server.url}", "-o", "ollama.num_ctx=4096",
               "-o", "shots=3")
    assert r.exit_code == 0, r.output
    assert_film(out)
    assert [req.path for req in fake_server.requests] == ["/api/chat"] * 3
    assert fake_server.requests[0].body["options"]["num_ctx"] == 4096
    usage = SessionStore(out).load(SessionStore(out).ids()[0]).meta.step_usage
    assert usage["story"]["prompt_tokens"] == 26 and usage["shots"]["requests"] == 1


def test_failed_llm_stage_is_resumable(out, fake_server):
    fake_server.enqueue(openai_error(401, "Incorrect API key provided."))
    fake_server.responder = openai_film
    args = ["--story-llm", "openai", "-o", f"openai.base_url={fake_server.url}/v1", "-o", "shots=3"]
    r = invoke(out, "run", "A cat relights a lighthouse", "--new", *args)
    assert r.exit_code == 1
    assert "Incorrect API key provided" in r.output
    assert len(fake_server.requests) == 1  # a 401 is not retried
    [sid] = SessionStore(out).ids()
    assert SessionStore(out).load(sid).meta.status == "FAILED"

    r = invoke(out, "resume", sid)  # backend and options come from the session
    assert r.exit_code == 0, r.output
    assert assert_film(out) == sid
    assert API_KEY not in session_files_text(out)


def test_bad_option_is_a_usage_error(out, fake_server):
    r = invoke(out, "run", "idea", "--new", "--story-llm", "openai", "-o", "openai.json_mode=yaml")
    assert r.exit_code == 2 and "json_mode" in r.output
    r = invoke(out, "run", "idea", "--new", "--story-llm", "ollama", "-o", "ollama.num_ctx=lots")
    assert r.exit_code == 2 and "num_ctx" in r.output


def test_missing_key_for_openai_com_stops_before_a_session_exists(out, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    r = invoke(out, "run", "idea", "--new", "--story-llm", "openai")
    assert r.exit_code == 2 and "set the environment variable OPENAI_API_KEY" in r.output
    assert SessionStore(out).ids() == []


def test_unrepairable_shot_plan_fails_that_stage_and_resume_redoes_only_it(out, fake_server):
    from fake_llm import chat_completion, stage_of

    broken = chat_completion({"shots": [{"id": 1, "scene_id": "s1"}]})

    def answer(seen):
        return broken if stage_of(seen) == "shot_plan" else openai_film(seen)

    fake_server.responder = answer
    args = ["--story-llm", "openai", "-o", f"openai.base_url={fake_server.url}/v1", "-o", "shots=3"]
    r = invoke(out, "run", "A cat relights a lighthouse", "--new", *args)
    assert r.exit_code == 1
    assert "gave no usable shot plan after 2 repair attempts" in r.output
    assert "image_prompt" in r.output  # the field is named
    [sid] = SessionStore(out).ids()
    meta = SessionStore(out).load(sid).meta
    assert meta.status == "FAILED"
    assert (meta.steps["story"], meta.steps["scene_graph"], meta.steps["shots"]) == ("done", "done", "failed")
    assert [stage_of(req) for req in fake_server.requests] == ["story", "scene_graph"] + ["shot_plan"] * 3

    fake_server.requests.clear()
    fake_server.responder = openai_film
    r = invoke(out, "resume", sid)
    assert r.exit_code == 0, r.output
    assert [stage_of(req) for req in fake_server.requests] == ["shot_plan"]
    assert_film(out)


def test_backend_and_options_from_reelforge_toml(tmp_path, monkeypatch, fake_server):
    monkeypatch.chdir(tmp_path)
    fake_server.responder = ollama_film
    (tmp_path / "reelforge.toml").write_text(
        'story_llm = "ollama"\n'
        f'[backends.ollama]\nbase_url = "{fake_server.url}"\nmodel = "qwen2.5:7b"\nnum_ctx = 16384\n'
        '[backends.story]\nshots = 3\ntarget_seconds = 3\n')
    r = invoke(tmp_path / "output", "run", "A cat relights a lighthouse", "--new")
    assert r.exit_code == 0, r.output
    assert_film(tmp_path / "output")
    assert {req.body["model"] for req in fake_server.requests} == {"qwen2.5:7b"}


def test_a_key_in_reelforge_toml_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reelforge.toml").write_text('[backends.openai]\napi_key = "sk-oops"\n')
    r = invoke(tmp_path / "output", "run", "idea", "--new", "--story-llm", "openai")
    assert r.exit_code == 2 and "unknown key 'api_key'" in r.output and "api_key_env" in r.output
