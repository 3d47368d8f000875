"""Issue 9 item 6: the job API of ComfyUI servers since late 2025 (GET /api/jobs, GET
/api/jobs/{id}) is used when a server has it, /history and /queue otherwise; reattaching
after a crash works either way."""

from __future__ import annotations

import threading

import attrs
import httpx
import pytest

from reelforge.errors import StageError
from reelforge.plugins.comfy_render.client import ComfyClient, PromptExecutionError, PromptInterrupted

from .test_comfy_backends import image_gen, renderer

BOTH = pytest.mark.parametrize("jobs_api", [False, True], ids=["history", "jobs-api"])


def paths(comfy, method="GET"):
    return [p for m, p, _ in comfy.requests if m == method]


def test_the_fakes_job_api_has_the_servers_shapes(comfy):
    get = lambda path: httpx.get(f"{comfy.url}{path}", trust_env=False)
    assert get("/api/jobs").status_code == 404  # off: as on 0.3.64
    comfy.jobs_api = True
    comfy.node_latency = 0.05
    saving = comfy.hold("SaveImage")  # p-1 runs, p-2 waits, until the test has looked
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "j"}}}
    httpx.post(f"{comfy.url}/prompt", json={"prompt": wf, "prompt_id": "p-1"}, trust_env=False)
    httpx.post(f"{comfy.url}/prompt", json={"prompt": wf, "prompt_id": "p-2"}, trust_env=False)
    comfy.wait_until(lambda: comfy.held("p-1"))
    running = get("/api/jobs/p-1").json()
    assert running["status"] == "in_progress" and "outputs" not in running
    assert get("/api/jobs/p-2").json()["status"] == "pending"
    saving.set()
    comfy.wait_until(lambda: "p-2" in comfy.history)
    job = get("/api/jobs/p-1").json()
    assert job["status"] == "completed" and job["outputs"]["2"]["images"][0]["filename"]
    assert job["execution_status"]["status_str"] == "success"
    assert job["execution_end_time"] - job["execution_start_time"] >= 100  # ms: two nodes of 50
    miss = get("/api/jobs/nope")
    assert miss.status_code == 404 and miss.json() == {"error": "Job not found"}
    listed = get("/api/jobs?status=completed&limit=1").json()
    assert [j["status"] for j in listed["jobs"]] == ["completed"]
    assert listed["pagination"] == {"offset": 0, "limit": 1, "total": 2, "has_more": True}


@BOTH
def test_a_render_uses_the_job_api_when_present_and_history_otherwise(comfy, jobs, shot, still, jobs_api):
    comfy.jobs_api = jobs_api
    comfy.node_latency = 0.05
    r = renderer(comfy.url)
    assert r.render(shot, still, jobs(shot)).suffix == ".mp4"
    cp = jobs.journal[("videos", 1)]
    got = paths(comfy)
    if jobs_api:
        assert f"/api/jobs/{cp['prompt_id']}" in got
        assert not [p for p in got if p.startswith(("/history", "/queue"))]
    else:
        assert f"/history/{cp['prompt_id']}" in got and "/queue" in got
        assert not [p for p in got if p.startswith("/api/jobs/")]
    # the server's own execution time, from either source: four nodes of 50 ms
    entry = comfy.history[cp["prompt_id"]]
    stamps = {name: data["timestamp"] for name, data in entry["status"]["messages"]}
    assert cp["server_seconds"] == pytest.approx((stamps["execution_success"] - stamps["execution_start"]) / 1000)
    assert cp["server_seconds"] >= 0.2


@BOTH
def test_reattach_to_a_running_prompt_after_a_crash(comfy, jobs, shot, still, jobs_api):
    comfy.jobs_api = jobs_api
    repeating = comfy.hold("RepeatImageBatch")  # still running when the fresh process looks
    r = renderer(comfy.url, on_interrupt="none")
    job = jobs(shot)
    t = threading.Thread(target=lambda: pytest.raises(StageError, r.render, shot, still, job))
    t.start()
    comfy.wait_until(comfy.held)
    job.cancelled.set()  # the orchestrator goes away; the prompt keeps running on the server
    t.join(120)
    pid = jobs.journal[("videos", 1)]["prompt_id"]
    assert comfy.held(pid)
    fresh = renderer(comfy.url)  # a new process: nothing in memory but the checkpoint
    result = {}
    again = threading.Thread(target=lambda: result.update(path=fresh.render(shot, still, jobs(shot, attempt=2))))
    seen = len(comfy.requests)
    again.start()
    comfy.wait_until(lambda: any(pid in p for _, p, _ in comfy.requests[seen:]))  # it looked the prompt up
    repeating.set()
    again.join(120)
    assert result["path"].suffix == ".mp4"
    assert len(comfy.posts(pid)) == 1 and len(comfy.posts()) == 1  # looked up, never resubmitted
    assert jobs.journal[("videos", 1)]["rendered_by"] == comfy.url
    assert jobs.journal[("videos", 1)]["rendered_by"] == comfy.url


@BOTH
def test_reattach_to_a_finished_prompt_and_to_a_forgotten_one(comfy, jobs, shot, still, jobs_api):
    comfy.jobs_api = jobs_api
    first = renderer(comfy.url).render(shot, still, jobs(shot))
    first.unlink()
    again = renderer(comfy.url).render(shot, still, jobs(shot, attempt=2))
    assert again.exists() and len(comfy.posts()) == 1  # adopted, not rendered again
    comfy.restart()  # forgets everything
    comfy.jobs_api = jobs_api
    renderer(comfy.url).render(shot, still, jobs(shot, attempt=3))
    posts = comfy.posts()
    assert len(posts) == 2 and posts[0]["prompt_id"] != posts[1]["prompt_id"]


@BOTH
def test_failures_read_from_either_source_name_the_node(comfy, jobs, shot, jobs_api):
    comfy.jobs_api = jobs_api
    comfy.fail_nodes = {"SaveImage": ("OSError", "disk full")}
    with pytest.raises(PromptExecutionError, match=r"node 2 \(SaveImage\) raised OSError: disk full"):
        image_gen(comfy.url).generate(shot, jobs(shot, stage="images"))


@BOTH
def test_an_interrupt_read_from_either_source_is_retryable(comfy, jobs, shot, still, jobs_api):
    comfy.jobs_api = jobs_api
    comfy.hold("RepeatImageBatch")  # running when the interrupt comes; the interrupt ends it
    box = {}

    def work():
        with pytest.raises(PromptInterrupted) as info:
            renderer(comfy.url).render(shot, still, jobs(shot))
        box["exc"] = info.value

    t = threading.Thread(target=work)
    t.start()
    comfy.wait_until(comfy.held)
    httpx.post(f"{comfy.url}/interrupt", trust_env=False)
    t.join(120)
    assert "interrupted prompt" in str(box["exc"])


def test_a_server_without_the_job_api_is_looked_at_once(comfy, jobs, shot, still):
    r = renderer(comfy.url)
    for i in (1, 2):
        other = attrs.evolve(shot, id=i)
        r.render(other, still, jobs(other))
    assert len([p for p in paths(comfy) if p == "/api/jobs"]) == 1
    assert r.backend.client(comfy.url).jobs_api is False


def test_a_job_without_outputs_is_completed_from_history(comfy, monkeypatch):
    """A server whose finished jobs leave out their outputs: /history fills them in."""
    comfy.jobs_api = True
    client = ComfyClient(comfy.url)
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "k"}}}
    client.submit(wf, prompt_id="p-9", client_id="c")
    comfy.wait_until(lambda: "p-9" in comfy.history)
    original = comfy._job_of_history
    monkeypatch.setattr(comfy, "_job_of_history", lambda pid, entry, full: original(pid, entry, False))
    state, entry = client.locate("p-9")
    assert state == "done" and entry["outputs"]["2"]["images"][0]["filename"].startswith("k_")
    assert entry["execution_seconds"] >= 0
