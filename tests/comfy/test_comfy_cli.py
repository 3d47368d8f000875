"""ComfyUI backends through the real CLI: CliRunner end to end, and a `reelforge run`
subprocess SIGKILLed mid-render then resumed without a second submission."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.store.meta import DONE
from reelforge.store.sessions import SessionStore

ROOT = Path(__file__).resolve().parents[2]


def comfy_args(*urls: str) -> list[str]:
    args = ["--image-gen", "comfyui", "--renderer", "comfyui"]
    for url in urls:
        args += ["--comfy-url", url]
    return args + ["-o", "shots=3", "-o", "comfyui.poll_interval_s=0.05",
                   "-o", "comfyui.server_grace_s=120"]


def only_session(out: Path):
    store = SessionStore(out)
    [sid] = store.ids()
    return store.load(sid)


def test_cli_images_and_videos_end_to_end(tmp_path, comfy):
    out = tmp_path / "output"
    r = CliRunner().invoke(cli, ["run", "A lighthouse keeper and a storm", "--new",
                                 *comfy_args(comfy.url), "--output-dir", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "COMPLETE" in r.output
    session = only_session(out)
    meta = session.meta
    assert (session.path / "film.mp4").is_file()
    for s in meta.shots:
        for stage in ("images", "videos"):
            art = s.artifact(stage)
            assert art.state == DONE and art.backend == "comfyui"
            assert art.checkpoint["rendered_by"] == comfy.url and art.checkpoint["seconds"] >= 0
    assert [p.name for p in sorted((session.path / "images").iterdir())] == \
        ["shot_001.png", "shot_002.png", "shot_003.png"]
    assert [p.name for p in sorted((session.path / "videos").iterdir())] == \
        ["shot_001.mp4", "shot_002.mp4", "shot_003.mp4"]
    assert len(comfy.posts()) == 6  # one prompt per shot and stage, nothing resubmitted
    # the server URL is recorded in the session, so a resume needs no flag
    assert meta.backends["video"].options["urls"] == [comfy.url]


def test_cli_validation_error_fails_the_shot_with_the_servers_words(tmp_path, comfy):
    out = tmp_path / "output"
    # a template value the server refuses (sizes given as options are bounded before sending)
    from reelforge.plugins.comfy_render.workflow import builtin_path

    tpl = json.loads(builtin_path("image-basic").read_text())
    tpl["workflow"]["1"]["inputs"]["batch_size"] = 99999
    path = tmp_path / "big_batch.json"
    path.write_text(json.dumps(tpl))
    r = CliRunner().invoke(cli, ["run", "A lighthouse", "--new", *comfy_args(comfy.url),
                                 "-o", f"image.template={path}", "--output-dir", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 1
    assert "node 1 (EmptyImage) input 'batch_size'" in r.output
    assert len(comfy.posts()) == 3  # refused once per shot, never retried


def test_cli_bad_template_is_a_usage_error(tmp_path, comfy):
    bad = tmp_path / "wf.json"
    bad.write_text("{not json")
    r = CliRunner().invoke(cli, ["run", "x", "--new", *comfy_args(comfy.url),
                                 "-o", f"video.template={bad}", "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and "is not valid JSON" in r.output
    assert comfy.posts() == []


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(REELFORGE_LOAD_PLUGINS="", REELFORGE_RETRY_BACKOFF="0",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    env.pop("REELFORGE_COMFY_URL", None)
    return env


@pytest.mark.parametrize("jobs_api", [False, True], ids=["history", "jobs-api"])
def test_sigkill_mid_render_then_resume_does_not_resubmit(tmp_path, comfy, jobs_api):
    comfy.jobs_api = jobs_api  # the reattach reads /history and /queue, or GET /api/jobs/{id}
    out = tmp_path / "output"
    repeating = comfy.hold("RepeatImageBatch")  # a clip is mid-render when the run is killed
    proc = subprocess.Popen(
        [sys.executable, "-m", "reelforge", "run", "A glassblower's last commission", "--new",
         *comfy_args(comfy.url), "-o", "per_server=1", "--output-dir", str(out)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    def video_held() -> bool:
        assert proc.poll() is None, proc.stdout.read()
        return comfy.held()

    comfy.wait_until(video_held, timeout=120)
    killed_pid = comfy.running.prompt_id
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    assert comfy.held(killed_pid)  # still rendering
    repeating.set()

    resumed = subprocess.run([sys.executable, "-m", "reelforge", "resume", "--output-dir", str(out)],
                             env=_env(), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(comfy.posts(killed_pid)) == 1
    session = only_session(out)
    assert (session.path / "film.mp4").is_file()
    by_pid = {s.video.checkpoint.get("prompt_id"): s for s in session.meta.shots}
    assert killed_pid in by_pid
    assert by_pid[killed_pid].video.state == DONE
    # every shot and stage was submitted exactly once across both runs
    ids = [b["prompt_id"] for b in comfy.posts()]
    assert len(ids) == len(set(ids)) == 6, json.dumps(ids)
    looked_up = [p for m, p, _ in comfy.requests if p == f"/api/jobs/{killed_pid}"]
    assert bool(looked_up) == jobs_api


def test_comfyui_check_command(tmp_path, make_comfy):
    # no register_commands call here: the group adds plugin commands when asked for one
    comfy = make_comfy()
    r = CliRunner().invoke(cli, ["comfyui", "check", "--comfy-url", comfy.url])
    assert r.exit_code == 0, r.output
    assert "template video-basic (video): 4 nodes, injects filename_prefix, fps, frames, image" in r.output
    assert f"{comfy.url}: up, 0 prompt(s) queued, OK" in r.output
    r = CliRunner().invoke(cli, ["comfyui", "check", "--comfy-url", comfy.url, "--comfy-url",
                                 "http://127.0.0.1:9", "--video-template", "wan22-i2v"])
    assert r.exit_code == 1
    assert f"{comfy.url}: up, 0 prompt(s) queued, OK" in r.output  # Wan 2.2 nodes are built in
    assert "http://127.0.0.1:9: DOWN" in r.output


def test_ctrl_c_keeps_the_running_render_and_resume_adopts_it(tmp_path, comfy):
    out = tmp_path / "output"
    saving = comfy.hold("SaveImage")  # one still running, others queued, when Ctrl-C comes
    proc = subprocess.Popen(
        [sys.executable, "-m", "reelforge", "run", "A clockmaker's apprentice", "--new",
         *comfy_args(comfy.url), "--output-dir", str(out)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    def running_and_pending() -> bool:
        assert proc.poll() is None, proc.stdout.read()
        return comfy.held() and bool(comfy.pending)

    comfy.wait_until(running_and_pending, timeout=120)
    running = comfy.running.prompt_id
    pending = [i.prompt_id for i in comfy.pending]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 130, proc.stdout.read()
    # queued prompts were deleted; the one already rendering was left to finish
    deleted = {pid for m, p, b in comfy.requests if p == "/queue" and isinstance(b, dict)
               for pid in b.get("delete", [])}
    assert set(pending) <= deleted and running not in deleted
    assert not [p for m, p, _ in comfy.requests if p == "/interrupt"]
    saving.set()
    comfy.wait_until(lambda: running in comfy.history)
    assert comfy.history[running]["status"]["status_str"] == "success"

    resumed = subprocess.run([sys.executable, "-m", "reelforge", "resume", "--output-dir", str(out)],
                             env=_env(), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(comfy.posts(running)) == 1  # adopted from /history, not rendered again
    assert (only_session(out).path / "film.mp4").is_file()
