"""Issue 9 item 1: a server that is not there, or is not ComfyUI, stops `run` before a session
exists with one message; an outage during a run is reported once (and once when it ends);
one retry policy with a deadline, whose final error the runner does not retry again."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import socket
import threading
import time
from typing import Callable

import pytest
from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.errors import RetryableServiceError, ServiceError
from reelforge.engine.runner import Runner
from reelforge.store.sessions import SessionStore
from reelforge.plugins.comfy_render.client import ServerGone

from .test_comfy_backends import image_gen, renderer


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's (status, content type, body)."""

    def _answer(self) -> None:
        status, ctype, body = self.server.canned  # type: ignore[attr-defined]
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def canned():
    """A tiny HTTP server on 127.0.0.1 that is not ComfyUI; set .canned to what it answers."""
    servers = []

    def make(status: int, ctype: str, body: str) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
        server.canned = (status, ctype, body)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def run_cli(out, *args):
    return CliRunner().invoke(cli, ["run", "A lighthouse", "--new", "--image-gen", "comfyui", *args,
                                    "-o", "shots=2", "--output-dir", str(out)], catch_exceptions=False)


@pytest.mark.parametrize("server, words", [
    ("closed", r"refused the connection\. Start ComfyUI there \(or pass the right --comfy-url\)"),
    ((404, "text/html", "<h1>404 Not Found</h1>"),
     r"answered 404 to GET /system_stats: there is no ComfyUI API at this URL"),
    ((200, "text/html", "<html><body>Welcome to nginx</body></html>"),
     r"answered GET /system_stats with something that is not JSON \(text/html"),
    ((200, "application/json", json.dumps({"status": "ok"})),
     r"answered GET /system_stats with JSON that is not ComfyUI's"),
])
def test_run_refuses_a_missing_or_wrong_server_before_a_session_exists(tmp_path, canned, server, words):
    url = closed_url() if server == "closed" else canned(*server)
    out = tmp_path / "output"
    started = time.monotonic()
    r = run_cli(out, "--comfy-url", url)
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1, r.output  # one clear message, nothing else
    assert lines[0].startswith("Error: comfyui image generator: ComfyUI at " + url)
    import re

    assert re.search(words, lines[0]), lines[0]
    assert not SessionStore(out).ids()
    assert time.monotonic() - started < 30  # no retrying at all (it took minutes before)


def test_missing_node_classes_stop_the_run_before_a_session_exists(tmp_path, comfy):
    tpl = tmp_path / "custom.json"
    data = json.loads((__import__("reelforge.plugins.comfy_render.workflow", fromlist=["x"])
                       .builtin_path("video-basic")).read_text())
    data["workflow"]["2"]["class_type"] = "VHS_RepeatFrames"  # a custom node nobody installed
    tpl.write_text(json.dumps(data))
    r = CliRunner().invoke(cli, ["run", "A lighthouse", "--new", "--renderer", "comfyui",
                                 "--comfy-url", comfy.url, "-o", f"video.template={tpl}",
                                 "-o", "shots=2", "--output-dir", str(tmp_path / "other")],
                           catch_exceptions=False)
    assert r.exit_code == 1
    assert "has no node class VHS_RepeatFrames needed by template " in r.output
    assert not SessionStore(tmp_path / "other").ids()


def test_one_server_down_of_two_is_said_once_and_the_run_goes_on(tmp_path, comfy, caplog):
    caplog.set_level(logging.WARNING, logger="reelforge.comfyui")
    out = tmp_path / "output"
    down = closed_url()
    r = CliRunner().invoke(cli, ["run", "A lighthouse", "--new", "--image-gen", "comfyui",
                                 "--renderer", "comfyui", "--comfy-url", comfy.url, "--comfy-url", down,
                                 "-o", "shots=3", "-o", "comfyui.poll_interval_s=0.05",
                                 "--output-dir", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    said = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert said == [f"ComfyUI at {down} is down (refused the connection); its shots go to {comfy.url}"]
    meta = SessionStore(out).load(SessionStore(out).ids()[0]).meta
    assert {s.image.checkpoint["rendered_by"] for s in meta.shots} == {comfy.url}
    assert {s.video.checkpoint["rendered_by"] for s in meta.shots} == {comfy.url}


def test_validate_checks_the_servers_and_start_refuses_the_same(tmp_path):
    runner = Runner(tmp_path / "out", backends={"image": "comfyui"},
                    options={"comfyui": {"urls": (closed_url(),)}})
    with pytest.raises(ServiceError, match="refused the connection"):
        runner.validate()
    with pytest.raises(ServiceError, match="refused the connection"):
        runner.start("an idea")
    assert not SessionStore(tmp_path / "out").ids()


@contextlib.contextmanager
def watching(runner, observer):
    """Register a hook observer for one call (the plugin manager is process-wide)."""
    runner.pm.register(observer)
    try:
        yield observer
    finally:
        runner.pm.unregister(observer)


class _KillAtStart:
    """Stops these fake servers once the session exists (after the pre-flight check), and
    notes the shots started."""

    def __init__(self, *fakes):
        self.fakes = fakes
        self.started: list[tuple[str, int]] = []

    from reelforge import hookimpl

    @hookimpl
    def session_started(self, session):
        for fake in self.fakes:
            if fake._runner is not None:
                fake.kill()

    @hookimpl
    def shot_started(self, session, stage, shot, attempt):
        self.started.append((stage, shot.id))


def test_resume_checks_a_server_only_before_its_first_shot(tmp_path, comfy):
    """A resume with nothing left for the ComfyUI backend does not need its server; one with
    shots left refuses before any of them starts."""
    out = tmp_path / "out"
    opts = {"comfyui": {"urls": (comfy.url,), "poll_interval_s": 0.05, "server_grace_s": 0.5},
            "offline": {"shots": 2}}
    quiet = {"image": "comfyui", "narration": "none"}  # only the ComfyUI stage has work
    done = Runner(out, backends=quiet, options=opts).start("an idea")
    assert done.ok
    runner = Runner(out, backends=quiet, options=opts)
    with watching(runner, _KillAtStart(comfy)) as killer:
        failed = runner.start("another idea")  # the server goes away once the session exists
    assert not failed.ok and {stage for stage, _ in killer.started} == {"images"}
    attempts = [s.image.attempts for s in SessionStore(out).load(failed.session_id).meta.shots]
    assert Runner(out).resume(done.session_id).ok  # nothing left to do: no server asked
    runner = Runner(out)
    with watching(runner, _KillAtStart()) as watch, \
            pytest.raises(ServiceError, match="refused the connection"):
        runner.resume(failed.session_id)
    assert watch.started == []  # refused before any shot started
    meta = SessionStore(out).load(failed.session_id).meta
    assert [s.image.attempts for s in meta.shots] == attempts
    comfy.revive()
    again = Runner(out).resume(failed.session_id)
    assert again.ok, again.failed


def test_resume_checks_every_backend_with_shots_left_before_any_shot(tmp_path, make_comfy):
    """Images on a (up again), clips on b (still down): refused before the first image starts,
    not after it, when the first clip would go to b."""
    a, b = make_comfy(), make_comfy()
    out = tmp_path / "out"
    opts = {"image": {"urls": (a.url,)}, "video": {"urls": (b.url,)},
            "comfyui": {"poll_interval_s": 0.05, "server_grace_s": 0.5}, "offline": {"shots": 2}}
    runner = Runner(out, backends={"image": "comfyui", "video": "comfyui"}, options=opts)
    with watching(runner, _KillAtStart(a, b)):
        failed = runner.start("an idea")
    assert not failed.ok
    a.revive()
    runner = Runner(out)
    with watching(runner, _KillAtStart()) as watch, \
            pytest.raises(ServiceError, match=f"comfyui renderer: ComfyUI at {b.url} refused the connection"):
        runner.resume(failed.session_id)
    assert watch.started == []
    b.revive()
    assert runner.resume(failed.session_id).ok  # the same runner: the refusal left it usable


def warned(caplog, words: str) -> Callable[[], bool]:
    """A condition for wait_until: a warning containing ``words`` was logged."""
    return lambda: any(words in rec.getMessage() for rec in list(caplog.records)
                       if rec.levelno >= logging.WARNING)


def test_an_outage_is_reported_once_and_its_end_once(comfy, jobs, shot, still, caplog):
    repeating = comfy.hold("RepeatImageBatch")  # the prompt is mid-render when the server dies
    r = renderer(comfy.url, server_grace_s=120)  # ample: the test, not a clock, ends the outage
    result = {}
    t = threading.Thread(target=lambda: result.update(path=r.render(shot, still, jobs(shot))))
    caplog.set_level(logging.INFO, logger="reelforge.comfyui")
    t.start()
    comfy.wait_until(comfy.held)
    comfy.kill()
    comfy.wait_until(warned(caplog, "is down"))  # the client has seen the outage
    repeating.set()
    comfy.revive()
    t.join(120)
    assert result["path"].suffix == ".mp4"
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert [w for w in warnings if "is down" in w] == [
        f"ComfyUI at {comfy.url} is down (refused the connection); waiting up to 120 s for it to come back "
        f"(server_grace_s)"]
    assert len([w for w in warnings if "is answering again" in w]) == 1
    assert len(warnings) == 2, warnings


def test_a_refused_server_is_marked_down_at_once_and_its_shot_moves(make_comfy, jobs, shot, still):
    good = make_comfy()
    down = closed_url()
    r = renderer(down, good.url, server_grace_s=240)
    started = time.monotonic()
    path = r.render(shot, still, jobs(shot))
    assert path.suffix == ".mp4" and jobs.journal[("videos", 1)]["rendered_by"] == good.url
    assert r.backend.pool.was_down(down) and not r.backend.pool.was_down(good.url)
    assert time.monotonic() - started < 120  # far inside the 240 s grace: nothing waited for it


def test_the_backend_gives_up_once_and_the_runner_does_not_retry_it(tmp_path, comfy, monkeypatch):
    """Three stacked layers (client, pick loop, runner) used to multiply an outage's cost:
    now the backend's deadline is all, and its ServerGone is not retryable."""
    monkeypatch.setenv("REELFORGE_RETRY_ATTEMPTS", "3")
    out = tmp_path / "out"
    runner = Runner(out, backends={"image": "comfyui", "narration": "none"},
                    options={"comfyui": {"urls": (comfy.url,), "server_grace_s": 0.5,
                                         "poll_interval_s": 0.05}, "offline": {"shots": 2}})
    calls = []
    original = type(runner).with_retries

    def counting(self, fn):
        def once():
            calls.append(1)
            return fn()
        return original(self, once)

    monkeypatch.setattr(type(runner), "with_retries", counting)
    started = time.monotonic()
    with watching(runner, _KillAtStart(comfy)):  # gone after the pre-flight check, before any shot
        result = runner.start("an idea")
    assert not result.ok and len(result.failed) == 2
    assert all("gave up on shot" in line for line in result.failed), result.failed
    image_calls = len(calls) - 3  # story, scenes and shots were one call each
    assert image_calls == 2  # one call per shot: the runner retried neither
    assert time.monotonic() - started < 20


def test_pre_flight_with_the_job_api_notes_it(make_comfy):
    new, old = make_comfy(), make_comfy()
    new.jobs_api = True
    gen = image_gen(new.url, old.url)
    gen.preflight()
    assert gen.backend.client(new.url).jobs_api is True
    assert gen.backend.client(old.url).jobs_api is False


def test_server_gone_is_not_retryable():
    assert not issubclass(ServerGone, RetryableServiceError)
