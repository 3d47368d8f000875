"""Less common paths: ambiguous submissions, interrupts by others, timeouts, vanished
outputs, and split image/video servers."""

from __future__ import annotations

import logging
import threading

import httpx
import pytest
from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.errors import RetryableServiceError
from reelforge.store.sessions import SessionStore
from reelforge.plugins.comfy_render.client import PromptInterrupted

from .test_comfy_backends import renderer


def test_500_after_queueing_is_looked_up_not_resubmitted(comfy, jobs, shot, still):
    comfy.prompt_faults = ["500_after_queue"]
    path = renderer(comfy.url).render(shot, still, jobs(shot))
    assert path.suffix == ".mp4"
    assert len(comfy.posts()) == 1


def test_interrupt_by_someone_else_is_retryable_and_the_retry_resubmits(comfy, jobs, shot, still):
    repeating = comfy.hold("RepeatImageBatch")  # running when the interrupt comes
    r = renderer(comfy.url)
    box = {}

    def first():
        with pytest.raises(PromptInterrupted) as info:
            r.render(shot, still, jobs(shot))
        box["exc"] = info.value

    t = threading.Thread(target=first)
    t.start()
    comfy.wait_until(comfy.held)
    httpx.post(f"{comfy.url}/interrupt", trust_env=False)  # someone at the ComfyUI web page
    t.join(120)
    assert isinstance(box["exc"], RetryableServiceError)
    repeating.set()
    # the runner retries with attempt + 1: the interrupted prompt is not adopted
    assert renderer(comfy.url).render(shot, still, jobs(shot, attempt=2)).suffix == ".mp4"
    assert len(comfy.posts()) == 2


def test_timeout_is_retryable_and_the_retry_waits_for_the_same_prompt(comfy, jobs, shot, still):
    repeating = comfy.hold("RepeatImageBatch")  # unfinished until the first render timed out
    with pytest.raises(RetryableServiceError, match="did not finish within timeout_s"):
        renderer(comfy.url, timeout_s=0.2).render(shot, still, jobs(shot))
    repeating.set()
    path = renderer(comfy.url).render(shot, still, jobs(shot, attempt=2))
    assert path.suffix == ".mp4" and len(comfy.posts()) == 1


def test_reattach_with_output_gone_from_server_resubmits(comfy, jobs, shot, still):
    renderer(comfy.url).render(shot, still, jobs(shot))
    for f in comfy.output_dir.rglob("*.mp4"):
        f.unlink()
    path = renderer(comfy.url).render(shot, still, jobs(shot, attempt=2))
    assert path.exists() and len(comfy.posts()) == 2


def test_reconnect_with_same_client_id_resumes_events(comfy, jobs, shot, still):
    repeating = comfy.hold("RepeatImageBatch")  # node 2 runs until the second renderer listens
    r = renderer(comfy.url, on_interrupt="none")
    job = jobs(shot)
    t = threading.Thread(target=lambda: pytest.raises(Exception, r.render, shot, still, job))
    t.start()
    comfy.wait_until(lambda: comfy.held() and comfy.running.current_node == "2")
    job.cancelled.set()
    t.join(120)
    before = len(jobs.progress)
    again = threading.Thread(target=lambda: renderer(comfy.url).render(shot, still, jobs(shot, attempt=2)))
    sockets = len(comfy.connects)
    # The next node holds too, so the prompt cannot finish (and be collected from /history
    # without a single event) before the reattached renderer has heard an event on its socket.
    creating = comfy.hold("CreateVideo")
    again.start()
    comfy.wait_until(lambda: len(comfy.connects) > sockets)  # the second renderer listens
    repeating.set()
    # the reattached socket (same clientId) gets the remaining events: the next node's start
    comfy.wait_until(lambda: any(m.startswith("node ") for _, m in jobs.progress[before:]))
    creating.set()
    again.join(120)
    assert not again.is_alive()
    assert comfy.connects[sockets] == comfy.connects[0]  # with the same clientId
    assert len(comfy.posts()) == 1


def test_image_generator_and_renderer_on_different_servers(tmp_path, make_comfy):
    a, b = make_comfy(), make_comfy()
    out = tmp_path / "output"
    r = CliRunner().invoke(cli, ["run", "Two servers", "--new", "--image-gen", "comfyui",
                                 "--renderer", "comfyui", "-o", "shots=2",
                                 "-o", f"image.urls={a.url}", "-o", f"video.urls={b.url}",
                                 "-o", "comfyui.poll_interval_s=0.05", "--output-dir", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    store = SessionStore(out)
    meta = store.load(store.ids()[0]).meta
    assert {s.image.checkpoint["rendered_by"] for s in meta.shots} == {a.url}
    assert {s.video.checkpoint["rendered_by"] for s in meta.shots} == {b.url}
    assert len(a.posts()) == 2 and len(b.posts()) == 2


def test_server_that_ignores_client_prompt_ids_still_works_and_is_recorded(comfy, jobs, shot, still):
    comfy.ignore_client_prompt_id = True
    renderer(comfy.url).render(shot, still, jobs(shot))
    [server_pid] = list(comfy.history)
    assert jobs.journal[("videos", 1)]["prompt_id"] == server_pid
    renderer(comfy.url).render(shot, still, jobs(shot, attempt=2))  # reattaches by the real id
    assert len(comfy.posts()) == 1


def test_a_server_restarting_when_the_shot_starts_is_waited_for(comfy, jobs, shot, still, caplog):
    comfy.kill()
    result = {}
    t = threading.Thread(target=lambda: result.update(path=renderer(comfy.url, server_grace_s=120)
                                                      .render(shot, still, jobs(shot))))
    caplog.set_level(logging.WARNING, logger="reelforge.comfyui")
    t.start()
    comfy.wait_until(lambda: any("is down" in rec.getMessage() for rec in list(caplog.records)))
    comfy.revive()  # once the shot has found the server down, not after a guessed pause
    t.join(120)
    assert result["path"].suffix == ".mp4" and len(comfy.posts()) == 1


def test_slow_http_answers_are_waited_for(comfy, jobs, shot, still):
    comfy.http_latency = 0.05  # every request, websocket upgrade included
    path = renderer(comfy.url).render(shot, still, jobs(shot))
    assert path.suffix == ".mp4" and len(comfy.posts()) == 1


def test_recorded_server_gone_moves_the_shot_to_the_configured_one(comfy, jobs, shot, still):
    jobs.journal[("videos", 1)] = {"prompt_id": "0b7c1f1e-0000-5000-8000-000000000000",
                                   "server": "http://127.0.0.1:9", "client_id": "x"}
    path = renderer(comfy.url).render(shot, still, jobs(shot, attempt=2))
    assert path.suffix == ".mp4" and len(comfy.posts()) == 1
    assert jobs.journal[("videos", 1)]["rendered_by"] == comfy.url
