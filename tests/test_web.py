"""Issue 11 item 5: the `reelforge serve` app through Starlette's test client — the session
list, a session's page and its JSON state, media served only from inside the session, the
CSRF and host guards, actions one at a time per session, and the --host guard of the CLI."""

from __future__ import annotations

import re
import threading

import pytest
from click.testing import CliRunner
from support import wait_idle

from reelforge.cli.core import cli
from reelforge.errors import SessionLockedError
from reelforge.store.meta import COMPLETE, DONE
from reelforge.store.session import Session
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

TOKEN = "test-token-0123456789"


def client(out, **kw):
    from starlette.testclient import TestClient

    from reelforge.web.app import create_app

    return TestClient(create_app(out, csrf_token=TOKEN, **kw), base_url="http://127.0.0.1:8765")


@pytest.fixture
def done(out, fakes):
    result = run_session(out, "A <b>harbour</b> city", backends=fakes.narrated)
    assert result.ok, result.failed
    return SessionStore(out).load(result.session_id)


class FakeRunner:
    """Stands in for Runner: records the calls, and waits for ``release`` before returning."""

    calls: list[tuple] = []

    def __init__(self, release: threading.Event, outcome=None):
        self.release = release
        self.outcome = outcome
        self.cancel = threading.Event()

    def _wait(self, *call):
        FakeRunner.calls.append(call)
        self.release.wait(120)  # the test releases it; the limit only ends a forgotten one
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        from reelforge.engine.runner import RunResult

        return RunResult(call[1], self.outcome or COMPLETE, None)

    def redo(self, session_id, shot_id, stage="image", seed=None, new_seed=False):
        return self._wait("redo", session_id, shot_id, stage)

    def use_take(self, session_id, shot_id, stage, take):
        return self._wait("use", session_id, shot_id, stage, take)

    def approve(self, session_id):
        return self._wait("approve", session_id)


# -- pages -----------------------------------------------------------------------------------

def test_the_list_shows_every_session_escaped(out, done, fakes):
    c = client(out)
    r = c.get("/")
    assert r.status_code == 200
    assert f'<a href="/s/{done.id}">{done.id}</a>' in r.text
    assert "A &lt;b&gt;harbour&lt;/b&gt; city" in r.text and "<b>harbour" not in r.text
    assert c.get("/sessions.json").json()[0]["id"] == done.id


def test_a_session_page_shows_its_shots_with_buttons_and_the_token(out, done):
    c = client(out)
    r = c.get(f"/s/{done.id}")
    assert r.status_code == 200
    assert [int(n) for n in re.findall(r'<article class="shot" id="shot-(\d+)"', r.text)] == [1, 2, 3]
    # per shot: redo image, voice, clip, redo with a seed, edit; and verify
    assert r.text.count(f'name="csrf" value="{TOKEN}"') == 16
    assert 'data-redo="2-image"' in r.text and 'data-redo="2-video"' in r.text
    assert f'src="/s/{done.id}/media/images/shot_001.png?v={done.meta.shot(1).image.sha256[:12]}"' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    # a unique start of the id redirects to the page
    r = c.get(f"/s/{done.id[len('session_'):][:13]}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/s/{done.id}"
    assert c.get("/s/session_19990101_000000").status_code == 404
    assert c.get("/s/..%2F..%2Fetc").status_code == 404


def test_the_state_json_has_what_the_page_shows(out, done):
    state = client(out).get(f"/s/{done.id}/state.json").json()
    assert state["status"] == COMPLETE and [s["id"] for s in state["shots"]] == [1, 2, 3]
    image = state["shots"][0]["stages"]["image"]
    assert image["state"] == DONE and image["seed"] == done.meta.shot(1).image.seed
    assert image["backend"] == "fake" and image["attempts"] == 1 and image["takes"] == []
    meta = done.meta
    shot_attempts = sum(st.image.attempts + st.narration.attempts + st.video.attempts for st in meta.shots)
    assert shot_attempts == 9
    assert state["ledger_total"]["attempts"] == shot_attempts + sum(
        int(u.get("attempts", 0)) for u in meta.step_usage.values())
    assert state["action"] == {"running": None, "last": None}
    assert state["film"]["url"].startswith(f"/s/{done.id}/media/film.mp4")
    brief = client(out).get(f"/s/{done.id}/state.json?versions=1").json()  # what the page polls
    assert brief["version"] == state["version"] and brief["film"] == {"version": state["film"]["version"]}
    assert brief["shots"] == [{"id": s["id"], "version": s["version"]} for s in state["shots"]]


def test_fragments_are_the_parts_of_the_page(out, done):
    c = client(out)
    card = c.get(f"/s/{done.id}/fragment/shot-2").text
    assert card.startswith('<article class="shot" id="shot-2"')
    assert c.get(f"/s/{done.id}/fragment/summary").text.startswith('<section id="summary"')
    assert c.get(f"/s/{done.id}/fragment/shot-9").status_code == 404
    assert c.get(f"/s/{done.id}/fragment/nothing").status_code == 404


# -- media -----------------------------------------------------------------------------------

def test_media_come_only_from_inside_the_session(out, done, tmp_path):
    c = client(out)
    base = f"/s/{done.id}/media"
    r = c.get(f"{base}/images/shot_001.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (done.path / "images/shot_001.png").read_bytes()
    r = c.get(f"{base}/film.mp4", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100 and r.headers["content-type"] == "video/mp4"
    assert c.get(f"{base}/film.vtt").headers["content-type"].startswith("text/vtt")

    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (done.path / "images" / "shot_009.png").symlink_to(secret)
    (done.path / "images" / "linked").symlink_to(tmp_path, target_is_directory=True)
    (done.path / ".work").mkdir(exist_ok=True)
    (done.path / ".work" / "x.png").write_bytes(b"scratch")
    for path in ("images/shot_009.png", "images/linked/secret.txt", f"{done.id}_meta.json", "journal.jsonl",
                 "story.json", "images/../story.json", "images/%2e%2e/story.json", ".work/x.png",
                 "images/.hidden.png", "images", "images/", "videos/nothing.mp4", "/etc/passwd",
                 "%2Fetc%2Fpasswd"):
        r = c.get(f"{base}/{path}")
        assert r.status_code == 404, path
        assert b"private" not in r.content


def test_a_file_swapped_for_a_link_after_the_check_is_not_followed(out, done, tmp_path):
    from reelforge.web.app import file_response, media_file

    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    path, st = media_file(done.path, "images/shot_002.png")
    path.unlink()
    path.symlink_to(secret)  # between the check and the open
    from starlette.exceptions import HTTPException

    with pytest.raises(HTTPException) as info:
        file_response(path, st)
    assert info.value.status_code == 404
    # ...and once opened, the response reads the file that was checked, whatever the name holds later
    path3, st3 = media_file(done.path, "images/shot_003.png")
    original = path3.read_bytes()
    response = file_response(path3, st3)
    path3.unlink()
    path3.symlink_to(secret)
    with open(response.path, "rb") as fh:
        assert fh.read() == original


# -- guards ----------------------------------------------------------------------------------

def test_actions_need_the_token_and_this_sites_origin(out, done):
    release = threading.Event()
    c = client(out, runner_factory=lambda: FakeRunner(release))
    FakeRunner.calls.clear()
    url = f"/s/{done.id}/redo"
    form = {"shot": "1", "stage": "image"}
    assert c.post(url, data=form).status_code == 403
    assert c.post(url, data={**form, "csrf": "wrong"}).status_code == 403
    r = c.post(url, data={**form, "csrf": TOKEN}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "another site" in r.text
    r = c.post(url, data={**form, "csrf": TOKEN}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert c.get(f"/s/{done.id}/redo").status_code == 405  # actions are POSTs only
    assert FakeRunner.calls == []
    # a rebound DNS name reaching this server is refused outright
    assert c.get("/", headers={"Host": "attacker.example:8765"}).status_code == 400
    release.set()


def test_bad_forms_say_what_is_wrong(out, done):
    c = client(out, runner_factory=lambda: FakeRunner(threading.Event()))
    url = f"/s/{done.id}/redo"
    r = c.post(url, data={"csrf": TOKEN, "shot": "7", "stage": "image"}, headers={"Accept": "application/json"})
    assert r.status_code == 400 and r.json()["message"] == f"session {done.id} has no shot 7"
    r = c.post(url, data={"csrf": TOKEN, "shot": "1", "stage": "sound"}, headers={"Accept": "application/json"})
    assert r.status_code == 400 and "stage must be one of" in r.json()["message"]
    r = c.post(f"/s/{done.id}/approve", data={"csrf": TOKEN}, headers={"Accept": "application/json"})
    assert r.status_code == 400 and "is not awaiting review" in r.json()["message"]


# -- actions ---------------------------------------------------------------------------------

def test_one_action_at_a_time_per_session_and_a_second_click_says_so(out, done, fakes):
    other = run_session(out, "Another", backends=fakes.backends).session_id
    release = threading.Event()
    c = client(out, runner_factory=lambda: FakeRunner(release))
    FakeRunner.calls.clear()
    r = c.post(f"/s/{done.id}/redo", data={"csrf": TOKEN, "shot": "2", "stage": "video"},
               headers={"Accept": "application/json"})
    assert r.status_code == 202 and r.json() == {"ok": True, "message": "redo shot 2 clip: started"}
    state = c.get(f"/s/{done.id}/state.json").json()
    assert state["action"]["running"] == "redo shot 2 clip" and state["active"] is True
    assert 'disabled data-redo="1-image"' in c.get(f"/s/{done.id}").text
    r = c.post(f"/s/{done.id}/use", data={"csrf": TOKEN, "shot": "1", "stage": "image", "take": "1"},
               headers={"Accept": "application/json"})
    assert r.status_code == 409
    assert r.json()["message"] == (f"session {done.id} is busy: redo shot 2 clip is still running; "
                                   f"wait for it to finish")
    r = c.post(f"/s/{done.id}/redo", data={"csrf": TOKEN, "shot": "1", "stage": "image"})  # no JS: a page
    assert r.status_code == 409 and "is busy" in r.text
    # another session is not held up
    r = c.post(f"/s/{other}/redo", data={"csrf": TOKEN, "shot": "1", "stage": "image"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/s/{other}"
    release.set()
    state = wait_idle(c, done.id)
    assert state["action"]["last"]["ok"] is True and state["action"]["last"]["label"] == "redo shot 2 clip"
    wait_idle(c, other)
    assert sorted(FakeRunner.calls) == sorted([("redo", done.id, 2, "video"), ("redo", other, 1, "image")])
    # free again: the next action starts
    r = c.post(f"/s/{done.id}/use", data={"csrf": TOKEN, "shot": "1", "stage": "image", "take": "1"},
               headers={"Accept": "application/json"})
    assert r.status_code == 202
    wait_idle(c, done.id)
    assert FakeRunner.calls[-1] == ("use", done.id, 1, "image", 1)


def test_a_session_locked_by_another_process_is_reported(out, done):
    release = threading.Event()
    release.set()
    locked = SessionLockedError(f"session {done.id} is being run by another reelforge process")
    c = client(out, runner_factory=lambda: FakeRunner(release, outcome=locked))
    r = c.post(f"/s/{done.id}/redo", data={"csrf": TOKEN, "shot": "1", "stage": "image"},
               headers={"Accept": "application/json"})
    assert r.status_code == 202
    last = wait_idle(c, done.id)["action"]["last"]
    assert last["ok"] is False and "being run by another reelforge process" in last["message"]
    assert "being run by another reelforge process" in c.get(f"/s/{done.id}").text


def test_redo_through_the_app_runs_the_real_runner(out, done, fakes):
    """The button calls Runner.redo: the old image becomes take 1, a new one is made, and
    the session is brought up to date."""
    from reelforge.engine.runner import Runner

    c = client(out, runner_factory=lambda: Runner(out))
    before = fakes.image.calls[:]
    r = c.post(f"/s/{done.id}/redo", data={"csrf": TOKEN, "shot": "2", "stage": "image"},
               headers={"Accept": "application/json"})
    assert r.status_code == 202, r.text
    state = wait_idle(c, done.id, timeout=60)
    assert state["action"]["last"]["ok"] is True, state["action"]["last"]
    shot = next(s for s in state["shots"] if s["id"] == 2)
    assert shot["stages"]["image"]["state"] == DONE and len(shot["stages"]["image"]["takes"]) == 1
    assert len(fakes.image.calls) == len(before) + 1 and fakes.image.calls[-1][0] == 2
    assert state["status"] == COMPLETE
    # the take is shown, and can be put back
    page = c.get(f"/s/{done.id}").text
    assert 'data-use="2-image-1"' in page
    take_url = shot["stages"]["image"]["takes"][0]["url"]
    assert c.get(take_url).status_code == 200


# -- the command -----------------------------------------------------------------------------

def test_serve_refuses_a_reachable_host_without_allow_remote(out):
    r = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--output-dir", str(out)])
    assert r.exit_code == 2 and "--allow-remote" in r.output and "no login" in r.output
    r = CliRunner().invoke(cli, ["serve", "--host", "192.0.2.1", "--output-dir", str(out)])
    assert r.exit_code == 2


def test_loopback_names_are_local():
    from reelforge.web.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.5.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("example.com")


def test_an_action_still_running_when_the_server_stops_is_cancelled(out, done):
    from reelforge.web.app import Actions

    started = threading.Event()

    class Slow:
        def __init__(self):
            self.cancel = threading.Event()

        def redo(self, sid, shot_id, stage="image"):
            started.set()
            self.cancel.wait(120)
            from reelforge.engine.runner import Interrupted

            raise Interrupted(sid)

    actions = Actions(Slow)
    actions.start(done.id, "redo shot 1 image", lambda runner: runner.redo(done.id, 1))
    assert started.wait(120)
    assert actions.busy() == [f"{done.id}: redo shot 1 image"]
    assert actions.shutdown(timeout=120) == []  # returns as soon as the action ends
    last = actions.status(done.id)["last"]
    assert last["ok"] is False and "interrupted" in last["message"]


def test_a_session_opened_by_a_runner_still_shows(out, done):
    """The app reads sessions read-only: a session whose lock a runner holds still loads."""
    s = Session(SessionStore(out), done.id)
    s.lock()
    try:
        assert client(out).get(f"/s/{done.id}/state.json").status_code == 200
    finally:
        s.close()


def test_an_unreadable_session_is_listed_with_its_problem(out, done):
    broken = SessionStore(out).create("Broken")
    broken.close()
    broken.meta_path.write_text("{not json")
    c = client(out)
    page = c.get("/").text
    row = page.split(f'data-session="{broken.id}"')[1].split("</tr>")[0]
    assert "UNREADABLE" in row and "invalid JSON" in row
    assert f'href="/s/{done.id}"' in page
    r = c.get(f"/s/{broken.id}")
    assert r.status_code == 500 and "invalid JSON" in r.text


def test_serve_with_allow_remote_warns_and_accepts_any_host_name(out, monkeypatch):
    import uvicorn

    seen = {}

    def run(self, sockets=None):
        seen["app"] = self.config.app
        seen["address"] = sockets[0].getsockname()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    r = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0", "--allow-remote",
                                 "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert "warning: serving on 0.0.0.0 with --allow-remote" in r.output and "no login" in r.output
    assert seen["address"][0] == "0.0.0.0"
    assert f"http://0.0.0.0:{seen['address'][1]}/" in r.output
    from starlette.testclient import TestClient

    remote = TestClient(seen["app"], base_url="http://192.0.2.7:8765")
    assert remote.get("/").status_code == 200


def test_serve_on_loopback_refuses_other_host_names(out, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: seen.setdefault("app", self.config.app))
    r = CliRunner().invoke(cli, ["serve", "--port", "0", "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert "warning" not in r.output
    from starlette.testclient import TestClient

    assert TestClient(seen["app"], base_url="http://localhost:8765").get("/").status_code == 200
    assert TestClient(seen["app"], base_url="http://rebound.example:8765").get("/").status_code == 400


def test_a_port_in_use_says_so(out):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        r = CliRunner().invoke(cli, ["serve", "--port", str(busy.getsockname()[1]), "--output-dir", str(out)])
    finally:
        busy.close()
    assert r.exit_code == 1 and "choose another with --port" in r.output


def test_approve_and_use_take_through_the_app_run_the_real_runner(out, fakes):
    from reelforge.engine.runner import Runner
    from reelforge.store.meta import AWAITING_REVIEW

    held = run_session(out, "Wait for me", backends=fakes.backends, review="images")
    assert held.status == AWAITING_REVIEW
    c = client(out, runner_factory=lambda: Runner(out))
    page = c.get(f"/s/{held.session_id}").text
    assert 'data-action="approve"' in page and len(fakes.video.calls) == 0
    r = c.post(f"/s/{held.session_id}/approve", data={"csrf": TOKEN}, headers={"Accept": "application/json"})
    assert r.status_code == 202, r.text
    state = wait_idle(c, held.session_id, timeout=60)
    assert state["action"]["last"]["ok"] is True, state["action"]["last"]
    assert state["status"] == COMPLETE and len(fakes.video.calls) == 3
    assert 'data-action="approve"' not in c.get(f"/s/{held.session_id}").text

    # redo shot 1's image, then put the first one back
    first = SessionStore(out).load(held.session_id).meta.shot(1).image.sha256
    for path, form in (("redo", {"shot": "1", "stage": "image"}),
                       ("use", {"shot": "1", "stage": "image", "take": "1"})):
        r = c.post(f"/s/{held.session_id}/{path}", data={"csrf": TOKEN, **form}, headers={"Accept": "application/json"})
        assert r.status_code == 202, r.text
        state = wait_idle(c, held.session_id, timeout=60)
        assert state["action"]["last"]["ok"] is True, state["action"]["last"]
    image = SessionStore(out).load(held.session_id).meta.shot(1).image
    assert image.sha256 == first and image.pinned
    assert [t["n"] for t in image.takes] == [2]  # take 1 is the image again; the redone one is take 2
    assert state["shots"][0]["stages"]["image"]["pinned"] is True


def test_a_file_not_in_place_gets_no_url_until_it_is(out, done):
    """A commit records a file as done just before renaming it into place: a page that
    reads the session in between must not show a broken picture, and must see it appear."""
    c = client(out)
    picture = done.path / "images" / "shot_003.png"
    aside = done.path / "shot_003.png.aside"
    before = c.get(f"/s/{done.id}/state.json").json()["shots"][2]
    picture.rename(aside)
    shot = c.get(f"/s/{done.id}/state.json").json()["shots"][2]
    assert shot["stages"]["image"]["state"] == DONE and shot["stages"]["image"]["url"] is None
    assert shot["version"] != before["version"]
    assert "no image yet" in c.get(f"/s/{done.id}/fragment/shot-3").text
    aside.rename(picture)
    assert c.get(f"/s/{done.id}/state.json").json()["shots"][2]["version"] == before["version"]


def test_a_registered_secret_never_reaches_a_page(out, fakes):
    from reelforge.errors import StageError
    from reelforge.redact import forget_secrets, register_secret

    fakes.image.fail(1, StageError("server said: token sk-live-0123456789 is not valid"))
    result = run_session(out, "Secrets", backends=fakes.backends)
    assert not result.ok
    register_secret("sk-live-0123456789")  # e.g. a backend read it from the environment since
    try:
        c = client(out)
        for url in (f"/s/{result.session_id}", f"/s/{result.session_id}/state.json",
                    f"/s/{result.session_id}/fragment/shot-1"):
            r = c.get(url)
            assert r.status_code == 200 and "sk-live-0123456789" not in r.text and "***" in r.text, url
    finally:
        forget_secrets()
