"""The ComfyUI renderer and image generator against a fake ComfyUI on 127.0.0.1."""

from __future__ import annotations

import json
import threading

import pytest

from reelforge.errors import RetryableServiceError, ServiceError, StageError
from reelforge.plugins.comfy_render import ComfyRenderer, VideoOptions
from reelforge.plugins.comfy_render.client import (
    ComfyValidationError,
    PromptExecutionError,
)
from reelforge.plugins.image_gen.comfyui import ComfyImageGenerator, ImageOptions


# server_grace_s: a test that wants a deadline to pass sets a short one itself; by default it is
# ample, so a loaded machine's slow answers never look like an outage.
GRACE_S = 120.0


def renderer(*urls, **kw) -> ComfyRenderer:
    kw.setdefault("poll_interval_s", 0.05)
    kw.setdefault("server_grace_s", GRACE_S)
    return ComfyRenderer(VideoOptions(urls=tuple(urls), **kw))


def image_gen(*urls, **kw) -> ComfyImageGenerator:
    kw.setdefault("poll_interval_s", 0.05)
    kw.setdefault("server_grace_s", GRACE_S)
    return ComfyImageGenerator(ImageOptions(urls=tuple(urls), **kw))


def test_image_generator_writes_png_and_records_server(comfy, jobs, shot):
    gen = image_gen(comfy.url)
    job = jobs(shot, stage="images")
    path = gen.generate(shot, job)
    assert path.suffix == ".png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.resolve().is_relative_to(job.work_dir.resolve())
    cp = jobs.journal[("images", 1)]
    assert cp["server"] == comfy.url and cp["rendered_by"] == comfy.url
    assert cp["seconds"] >= 0 and cp["prompt_id"] == gen.backend.prompt_id_for(job)
    [body] = comfy.posts()
    assert body["prompt_id"] == cp["prompt_id"] and body["client_id"]
    wf = body["prompt"]
    assert wf["1"]["inputs"]["color"] == 1234 and wf["1"]["inputs"]["width"] == 512
    assert wf["2"]["inputs"]["filename_prefix"] == "reelforge/session_20261124_000000/images_shot001"
    # the checkpoint was written before POST /prompt
    first = next(i for i, s in enumerate(jobs.saves) if "prompt_id" in s)
    assert jobs.saves[first]["server"] == comfy.url and "rendered_by" not in jobs.saves[first]
    assert jobs.progress and jobs.progress[-1][0] == 1.0


def test_renderer_uploads_still_and_downloads_mp4(comfy, jobs, shot, still):
    r = renderer(comfy.url, fps=12)
    path = r.render(shot, still, jobs(shot))
    assert path.suffix == ".mp4" and path.read_bytes()[4:8] == b"ftyp"
    [body] = comfy.posts()
    wf = body["prompt"]
    assert wf["1"]["inputs"]["image"].startswith("reelforge/rf_")
    assert (comfy.input_dir / wf["1"]["inputs"]["image"]).read_bytes() == still.read_bytes()
    assert wf["2"]["inputs"]["amount"] == 24 and wf["3"]["inputs"]["fps"] == 12.0
    # uploads: the name the server returns is used, even when it renames
    (comfy.input_dir / "reelforge").mkdir(exist_ok=True)
    name = wf["1"]["inputs"]["image"].split("/")[1]
    (comfy.input_dir / "reelforge" / name).write_bytes(b"other bytes")
    import attrs

    other = attrs.evolve(shot, id=2)
    r.render(other, still, jobs(other))
    assert comfy.posts()[-1]["prompt"]["1"]["inputs"]["image"].endswith(" (1).png")


def test_validation_error_is_permanent_and_names_node_and_input(comfy, jobs, shot, tmp_path):
    # a template value the server refuses (sizes from options are bounded before they are sent)
    tpl = json.loads((__import__("reelforge.plugins.comfy_render.workflow", fromlist=["x"])
                      .builtin_path("image-basic")).read_text())
    tpl["workflow"]["1"]["inputs"]["batch_size"] = 99999
    path = tmp_path / "big_batch.json"
    path.write_text(json.dumps(tpl))
    gen = image_gen(comfy.url, template=str(path))
    with pytest.raises(ComfyValidationError) as info:
        gen.generate(shot, jobs(shot, stage="images"))
    assert not isinstance(info.value, RetryableServiceError)
    msg = str(info.value)
    assert "node 1 (EmptyImage) input 'batch_size'" in msg and "bigger than max" in msg
    assert comfy.url in msg
    assert len(comfy.posts()) == 1


def test_partial_acceptance_fails_only_when_our_output_is_refused(comfy, jobs, shot, tmp_path):
    tpl = json.loads((__import__("reelforge.plugins.comfy_render.workflow", fromlist=["x"])
                      .builtin_path("image-basic")).read_text())
    tpl["workflow"]["3"] = {"class_type": "SaveImage", "inputs": {"images": ["42", 0], "filename_prefix": "x"}}
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(tpl))
    path = image_gen(comfy.url, template=str(ok)).generate(shot, jobs(shot, stage="images"))
    assert path.suffix == ".png"
    tpl["output"] = "3"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tpl))
    # a changed template is not satisfied by the prompt recorded for the old one
    with pytest.raises(ComfyValidationError, match=r"refused output node\(s\) 3.*node 3 \(SaveImage\)"):
        image_gen(comfy.url, template=str(bad)).generate(shot, jobs(shot, stage="images", attempt=2))
    assert len(comfy.posts()) == 2


def test_execution_error_names_node_and_exception(comfy, jobs, shot, still):
    comfy.fail_nodes["SaveVideo"] = ("av.error.ExternalError",
                                     "[Errno 542398533] Generic error in an external library\n")
    with pytest.raises(PromptExecutionError) as info:
        renderer(comfy.url).render(shot, still, jobs(shot))
    assert not isinstance(info.value, RetryableServiceError)
    assert "node 4 (SaveVideo) raised av.error.ExternalError: [Errno 542398533]" in str(info.value)


def test_unknown_node_class_is_caught_before_submitting(comfy, jobs, shot, tmp_path):
    wf = {"1": {"class_type": "WanVideoSampler", "inputs": {"seed": 1}, "_meta": {"title": "reelforge.seed"}},
          "2": {"class_type": "LoadImage", "inputs": {"image": "x.png"}, "_meta": {"title": "reelforge.image"}}}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf))
    with pytest.raises(ServiceError, match="has no node class WanVideoSampler"):
        renderer(comfy.url, template=str(path)).render(shot, tmp_path / "none.png", jobs(shot))
    assert comfy.posts() == []


def test_event_socket_drop_falls_back_to_polling(comfy, jobs, shot, still):
    repeating = comfy.hold("RepeatImageBatch")  # the socket drops mid-render
    r = renderer(comfy.url)
    result = {}
    t = threading.Thread(target=lambda: result.update(path=r.render(shot, still, jobs(shot))))
    t.start()
    comfy.wait_until(lambda: comfy.held() and comfy.sockets)
    for ws in list(comfy.sockets.values()):
        comfy._call(ws.close())
    repeating.set()
    t.join(120)
    assert result["path"].suffix == ".mp4"
    assert len(comfy.posts()) == 1


def test_server_restart_mid_render_resubmits_once(comfy, jobs, shot, still):
    repeating = comfy.hold("RepeatImageBatch")  # mid-render when the server restarts
    r = renderer(comfy.url, server_grace_s=120)
    result = {}
    t = threading.Thread(target=lambda: result.update(path=r.render(shot, still, jobs(shot))))
    t.start()
    comfy.wait_until(comfy.held)
    first = comfy.posts()[0]["prompt_id"]
    comfy.kill()
    repeating.set()
    comfy.revive()
    t.join(120)
    assert result["path"].suffix == ".mp4"
    posts = comfy.posts()
    assert len(posts) == 2 and posts[1]["prompt_id"] != first
    # the still was uploaded again: the restarted server validates LoadImage against its input dir
    assert jobs.journal[("videos", 1)]["prompt_id"] == posts[1]["prompt_id"]


def test_two_servers_one_dies_and_its_shots_move(make_comfy, jobs, still):
    from reelforge.records import Shot

    a, b = make_comfy(), make_comfy()
    a.hold("RepeatImageBatch")  # nothing finishes on a before it dies
    r = renderer(a.url, b.url, per_server=2, server_grace_s=120)
    assert r.concurrency == 4
    shots = [Shot(id=i, scene_id="s", description="d", image_prompt="p", duration_s=1.0, seed=i)
             for i in range(1, 5)]
    results, errors = {}, []

    def work(s):
        try:
            results[s.id] = r.render(s, still, jobs(s))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in shots]
    for t in threads:
        t.start()
    a.wait_until(a.held)
    a.kill()
    for t in threads:
        t.join(120)
    assert not errors and sorted(results) == [1, 2, 3, 4]
    assert all(p.suffix == ".mp4" for p in results.values())
    assert {jobs.journal[("videos", i)]["rendered_by"] for i in range(1, 5)} == {b.url}
    assert len(a.posts()) >= 1  # some shots had started on the server that died


def test_hostile_output_names_are_refused(comfy, jobs, shot, still, tmp_path):
    comfy.hostile_outputs = [
        {"filename": "../../../escaped.mp4", "subfolder": "", "type": "output"},
        {"filename": "fine.mp4", "subfolder": "../../..", "type": "output"},
        {"filename": "/etc/passwd", "subfolder": "", "type": "output"},
        {"filename": "..", "subfolder": "", "type": "output"},
        {"filename": "c:evil.mp4", "subfolder": "", "type": "output"},
    ]
    job = jobs(shot)
    path = renderer(comfy.url).render(shot, still, job)
    assert path.name.endswith("_00001_.mp4") and path.parent == job.work_dir / "comfy"
    assert not list(tmp_path.rglob("escaped.mp4")) and not list(tmp_path.rglob("passwd"))
    views = [p for m, p, _ in comfy.requests if p == "/view"]
    assert len(views) == 1  # only the genuine output was fetched


def test_only_hostile_outputs_is_an_error(comfy, jobs, shot, still, tmp_path):
    comfy.hostile_outputs = [{"filename": "../x.mp4", "subfolder": "", "type": "output"}]
    tpl = tmp_path / "t.json"
    data = json.loads((__import__("reelforge.plugins.comfy_render.workflow", fromlist=["x"])
                       .builtin_path("video-basic")).read_text())
    data["workflow"]["4"]["class_type"] = "SaveAnimatedWEBP"  # a webp is not a clip
    data["workflow"]["4"]["inputs"] = {"images": ["2", 0], "filename_prefix": "a", "fps": 12.0,
                                       "lossless": False, "quality": 80, "method": "default"}
    data["workflow"].pop("3")
    data["inject"] = {"image": "1.image", "frames": "2.amount", "fps": "4.fps",
                      "filename_prefix": "4.filename_prefix"}
    tpl.write_text(json.dumps(data))
    with pytest.raises(ServiceError, match=r"produced 4-.*webp \(refusing output file name '../x.mp4'"):
        renderer(comfy.url, template=str(tpl)).render(shot, still, jobs(shot))


# Reattaching to a running prompt after a crash: tests/comfy/test_comfy_jobs_api.py, on both
# the /history and the /api/jobs paths.


def test_reattach_to_finished_prompt_downloads_without_submitting(comfy, jobs, shot, still):
    r = renderer(comfy.url)
    first = r.render(shot, still, jobs(shot))
    first.unlink()
    again = renderer(comfy.url).render(shot, still, jobs(shot, attempt=2))
    assert again.exists() and len(comfy.posts()) == 1
    assert not [p for m, p, _ in comfy.requests if p == "/upload/image"][1:]


def test_reattach_after_server_forgot_submits_again(comfy, jobs, shot, still):
    renderer(comfy.url).render(shot, still, jobs(shot))
    comfy.restart()
    renderer(comfy.url).render(shot, still, jobs(shot, attempt=2))
    posts = comfy.posts()
    assert len(posts) == 2 and posts[0]["prompt_id"] != posts[1]["prompt_id"]


def test_cancel_with_on_interrupt_all_deletes_and_interrupts(comfy, jobs, shot, still):
    comfy.hold("RepeatImageBatch")  # running when the cancel comes; the interrupt ends it
    job = jobs(shot)
    r = renderer(comfy.url, on_interrupt="all")
    t = threading.Thread(target=lambda: pytest.raises(StageError, r.render, shot, still, job))
    t.start()
    comfy.wait_until(comfy.held)
    job.cancelled.set()
    t.join(120)
    pid = jobs.journal[("videos", 1)]["prompt_id"]
    assert ("POST", "/interrupt", {"prompt_id": pid}) in comfy.requests
    assert ("POST", "/queue", {"delete": [pid]}) in comfy.requests
    comfy.wait_until(lambda: pid in comfy.history)
    assert comfy.history[pid]["status"]["status_str"] == "error"


def test_no_server_answering_fails_the_shot_at_its_deadline_for_good(jobs, shot, still):
    """The backend's one retry policy spends server_grace_s; what it raises then is final,
    so the runner does not retry the same outage on top."""
    import time

    started = time.monotonic()
    first = renderer("http://127.0.0.1:9", server_grace_s=1.0)
    with pytest.raises(ServiceError, match=r"127.0.0.1:9 refused the connection; "
                                           r"gave up on shot 1 after \d+s") as info:
        first.render(shot, still, jobs(shot))
    assert not isinstance(info.value, RetryableServiceError)
    assert 0.9 < time.monotonic() - started < 60  # the deadline was spent, not much more
    # another shot while every server has been down longer than the deadline: fails at once,
    # without a single wait between attempts (the retry policy waits on the job's cancel event).
    # The outage is counted from the first refusal, a moment after shot 1 started: wait until
    # it is past the deadline, as it is for every shot after the first in a real run.
    deadline = time.monotonic() + 60
    while (first.backend.pool.all_down_for() or 0.0) < 1.0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    other = __import__("attrs").evolve(shot, id=2)
    job = jobs(other)
    job.cancelled = Waits()
    with pytest.raises(ServiceError, match="gave up on shot 2"):
        renderer("http://127.0.0.1:9", server_grace_s=1.0).render(other, still, job)
    assert job.cancelled.waits == []


class Waits(threading.Event):
    """A cancel event that notes every wait on it (the retry policy's waits between attempts)."""

    def __init__(self):
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return super().wait(timeout)


def test_least_busy_server_is_picked(make_comfy, jobs, shot, still):
    a, b = make_comfy(), make_comfy()
    a.hold("SaveImage")  # a stays busy with the other prompt for the whole test
    r = renderer(a.url, b.url)
    # keep a busy with someone else's prompt
    import httpx
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "other"}}}
    httpx.post(f"{a.url}/prompt", json={"prompt": wf}, trust_env=False)
    a.wait_until(a.held)
    r.render(shot, still, jobs(shot))
    assert jobs.journal[("videos", 1)]["rendered_by"] == b.url


def test_cancel_by_default_deletes_pending_prompts_but_keeps_running_ones(comfy, jobs, still):
    from reelforge.records import Shot

    repeating = comfy.hold("RepeatImageBatch")  # one running, one pending when the cancel comes
    r = renderer(comfy.url, per_server=2)
    shots = [Shot(id=i, scene_id="s", description="d", image_prompt="p", seed=i) for i in (1, 2)]
    batch = [jobs(s) for s in shots]
    for job in batch[1:]:
        job.cancelled = batch[0].cancelled  # one Ctrl-C for the whole run, as the runner does
    threads = [threading.Thread(target=lambda s=s, j=j: pytest.raises(StageError, r.render, s, still, j))
               for s, j in zip(shots, batch)]
    for t in threads:
        t.start()
    comfy.wait_until(lambda: comfy.held() and len(comfy.pending) == 1)
    running, pending = comfy.running.prompt_id, comfy.pending[0].prompt_id
    batch[0].cancelled.set()
    for t in threads:
        t.join(120)
    assert ("POST", "/queue", {"delete": [pending]}) in comfy.requests
    assert not [b for m, p, b in comfy.requests if p == "/interrupt"]
    repeating.set()  # the running one, left alone, finishes
    comfy.wait_until(lambda: running in comfy.history)
    assert comfy.history[running]["status"]["status_str"] == "success"
    assert pending not in comfy.history and not comfy.pending
