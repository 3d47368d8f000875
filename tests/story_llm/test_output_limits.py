"""Issue 15 item 12: a runaway local model does not burn timeout x retries. Every request
carries an output cap fitted to its stage; an answer cut off at the cap is never sent again
as it was; and while the model works, the stage reports how long it has waited."""

from __future__ import annotations

import io
import itertools
import json
import re
import threading

import pytest
from click.testing import CliRunner

from fake_llm import (STORY, Canned, chat_completion, film_content, ollama_chat, ollama_film,
                      openai_film, stage_of)
from reelforge import hookimpl
from reelforge.cli.core import cli
from reelforge.errors import ConfigError, StageError
from reelforge.cli.progress import RichProgress
from reelforge.testing import run_session
from reelforge.plugins.story_llm.chat import DEFAULT_CAPS, ChatStoryWriter
from reelforge.plugins.story_llm.ollama import OllamaOptions, OllamaStory
from reelforge.plugins.story_llm.openai_compat import OpenAIOptions, OpenAIStory


def openai(server, **kw) -> OpenAIStory:
    kw.setdefault("model", "fake-1")
    return OpenAIStory(OpenAIOptions(base_url=f"{server.url}/v1", **kw))


def ollama(server, **kw) -> OllamaStory:
    return OllamaStory(OllamaOptions(base_url=server.url, **kw))


def cap_of(seen) -> int | None:
    body = seen.body
    return body.get("max_tokens") if "max_tokens" in body or "options" not in body \
        else body["options"].get("num_predict")


def run_three_stages(llm) -> None:
    story = llm.write_story("a cat relights a lighthouse")
    graph = llm.build_scene_graph(story)
    llm.plan_shots(story, graph)


# -- (a) a default cap that fits each stage, sent in the request --------------------------

@pytest.mark.parametrize("make, film", [(openai, openai_film), (ollama, ollama_film)])
def test_every_request_carries_a_cap_fitted_to_its_stage(fake_server, make, film):
    fake_server.responder = film
    run_three_stages(make(fake_server, shots=4, scenes=3, target_seconds=12))
    caps = {stage_of(r): cap_of(r) for r in fake_server.requests}
    fixed, per = DEFAULT_CAPS["scene_graph"]
    fixed_shot, per_shot = DEFAULT_CAPS["shot_plan"]
    assert caps == {"story": DEFAULT_CAPS["story"][0], "scene_graph": fixed + 3 * per,
                    "shot_plan": fixed_shot + 4 * per_shot}


def test_a_long_plan_asks_each_part_with_the_cap_of_its_own_size(fake_server):
    fake_server.responder = openai_film
    run_three_stages(openai(fake_server, shots=15, batch_shots=12, target_seconds=45))
    fixed, per = DEFAULT_CAPS["shot_plan"]
    assert [cap_of(r) for r in fake_server.requests if stage_of(r) == "shot_plan"] == \
        [fixed + 12 * per, fixed + 3 * per]


@pytest.mark.parametrize("make, option", [(openai, "max_tokens"), (ollama, "num_predict")])
def test_the_cap_option_overrides_and_zero_sends_none(fake_server, make, option):
    fake_server.responder = openai_film if make is openai else ollama_film
    run_three_stages(make(fake_server, shots=3, target_seconds=9, **{option: 700}))
    assert {cap_of(r) for r in fake_server.requests} == {700}
    fake_server.requests.clear()
    run_three_stages(make(fake_server, shots=3, target_seconds=9, **{option: 0}))
    assert {cap_of(r) for r in fake_server.requests} == {None}
    with pytest.raises(ConfigError, match=f"{option} must be from 0"):
        make(fake_server, **{option: -1})


# -- (b) an answer cut off at the cap is never sent again as it was ------------------------

def _bodies(server) -> list[str]:
    return [json.dumps(r.body, sort_keys=True) for r in server.requests]


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_a_story_cut_off_at_the_cap_is_asked_once_and_names_the_option(tmp_path, fake_server, backend):
    cut = '{"title": "The Lighthouse Keeper\'s Cat", "synopsis": "Storm night. Storm night. Storm'
    fake_server.responder = (lambda seen: chat_completion(cut, finish_reason="length")) if backend == "openai" \
        else (lambda seen: ollama_chat(cut, done_reason="length"))
    url = f"{fake_server.url}/v1" if backend == "openai" else fake_server.url
    option = "max_tokens" if backend == "openai" else "num_predict"
    r = CliRunner().invoke(cli, ["run", "A cat relights a lighthouse", "--new", "--story-llm", backend,
                                 "-o", f"{backend}.base_url={url}", "-o", f"{backend}.model=fake-1",
                                 "--output-dir", str(tmp_path / "out")])
    assert r.exit_code == 1
    assert len(fake_server.requests) == 1, _bodies(fake_server)  # not retried, by anyone
    assert f"output limit of 2,048 tokens; raise it with -o {backend}.{option}=N" in r.output, r.output


def test_a_shot_plan_cut_off_is_asked_again_differently_never_identically(fake_server):
    cut_once = itertools.count()

    def answer(seen):
        if stage_of(seen) == "shot_plan" and next(cut_once) == 0:
            return chat_completion(json.dumps(film_content(seen))[:300], finish_reason="length")
        return openai_film(seen)

    fake_server.responder = answer
    run_three_stages(openai(fake_server, shots=6, target_seconds=18))
    bodies = _bodies(fake_server)
    assert len(bodies) == 5 and len(set(bodies)) == len(bodies)
    fixed, per = DEFAULT_CAPS["shot_plan"]
    assert [cap_of(r) for r in fake_server.requests[2:]] == [fixed + 6 * per, fixed + 3 * per, fixed + 3 * per]


# -- (c) the seconds waited are reported while the model works ------------------------------

class Job:
    """A StageJob's progress side, recording what it is told."""

    def __init__(self, enough: int):
        self.checkpoint: dict = {}
        self.messages: list[str] = []
        self.enough = enough
        self.heard = threading.Event()

    def progress(self, fraction, message):
        self.messages.append(message)
        if len(self.messages) >= self.enough:
            self.heard.set()

    def save_checkpoint(self, **data):
        self.checkpoint.update(data)


def _ticking_clock():
    """A clock that moves 5 s each time it is read: the reports count it, not wall time."""
    ticks = itertools.count(0, 5)
    return lambda: float(next(ticks))


def test_the_writer_reports_the_seconds_it_has_waited(fake_server, monkeypatch):
    llm = openai(fake_server)
    llm.wait_tick_s = 0.001
    llm.clock = _ticking_clock()
    job = Job(enough=3)
    # The model answers only once three reports were heard while it was "working".
    fake_server.enqueue(Canned(200, chat_completion(STORY).body, hold=job.heard))
    story = llm.write_story("a cat relights a lighthouse", job=job)
    assert story.title == STORY["title"] and job.heard.is_set()
    assert job.messages[:3] == ["waiting 5s for fake-1", "waiting 10s for fake-1", "waiting 15s for fake-1"]
    sent = len(job.messages)
    assert not any(t.name == "reelforge-llm-wait" for t in threading.enumerate())  # ticker ended
    assert len(job.messages) == sent


class WaitRecorder:
    """An observer of the run's stage_progress hook."""

    def __init__(self, enough: int):
        self.seen: list[tuple[str, str]] = []
        self.heard = threading.Event()
        self.enough = enough

    @hookimpl
    def stage_progress(self, session, stage, fraction, message):
        self.seen.append((stage, message))
        if sum(1 for s, m in self.seen if s == "story" and m.startswith("waiting")) >= self.enough:
            self.heard.set()


def test_a_run_shows_the_story_step_waiting(tmp_path, fake_server, fakes, monkeypatch):
    monkeypatch.setattr(ChatStoryWriter, "wait_tick_s", 0.001)
    recorder = WaitRecorder(enough=2)
    first = [True]

    def answer(seen):
        if first[0]:  # the story: held until the run has shown the wait twice
            first[0] = False
            return Canned(200, openai_film(seen).body, hold=recorder.heard)
        return openai_film(seen)

    fake_server.responder = answer
    result = run_session(tmp_path / "out", "A cat relights a lighthouse", plugins=[recorder],
                         backends={**fakes.backends, "story": "openai"},
                         options={"openai": {"base_url": f"{fake_server.url}/v1", "model": "fake-1",
                                             "shots": 3, "target_seconds": 9}})
    assert result.ok
    waits = [m for s, m in recorder.seen if s == "story"]
    assert len(waits) >= 2 and all(re.fullmatch(r"waiting \d+s for fake-1", m) for m in waits)


def test_off_a_terminal_the_wait_is_printed_every_so_often(capsys):
    from rich.console import Console

    now = [0.0]
    observer = RichProgress(Console(file=io.StringIO(), force_terminal=False), clock=lambda: now[0])

    class Meta:
        shots: list = []

    class Session:
        meta = Meta()

    observer.stage_started(Session, "story")
    for second in range(1, 95):
        now[0] = float(second)
        observer.stage_progress(Session, "story", 0.0, f"waiting {second}s for qwen2.5")
    observer.stop()
    said = [line for line in capsys.readouterr().err.splitlines() if "waiting" in line]
    assert said == ["  … Story: waiting 30s for qwen2.5", "  … Story: waiting 60s for qwen2.5",
                    "  … Story: waiting 90s for qwen2.5"]


def test_a_cut_off_single_stage_answer_is_a_stage_error_naming_the_cap(fake_server):
    fake_server.enqueue(chat_completion('{"title": "The Li', finish_reason="length"))
    with pytest.raises(StageError, match=r"cut off its story at its output limit of 2,048 tokens; "
                                         r"raise it with -o openai.max_tokens=N \(0: no cap\)"):
        openai(fake_server).write_story("idea")
    assert len(fake_server.requests) == 1
