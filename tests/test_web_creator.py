"""Issue 18 item 7: working in `reelforge serve` — new film, edit a shot, redo with a new or
given seed, resume, downloads, the lock holder named and its actions refused, a poll that
answers only what changed. Through the real app (Starlette's test client) and the real Runner."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from support import wait_idle, wait_until
from test_web import TOKEN, client

from reelforge.store.meta import COMPLETE, FAILED
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

JSON = {"Accept": "application/json"}


def plan(out, sid):
    return {s["id"]: s for s in json.loads((SessionStore(out).path_for(sid) / "shots.json").read_text())["shots"]}


def test_edit_a_shot_changes_shots_json_and_remakes_only_it(out, done, fakes):
    c = client(out)
    calls = len(fakes.image.calls)
    form = {"csrf": TOKEN, "shot": "2", "image_prompt": "a red boat at dusk", "narration": "The boat comes home.",
            "motion_prompt": plan(out, done.id)[2]["motion_prompt"], "look": ""}
    r = c.post(f"/s/{done.id}/edit", data=form, headers=JSON)
    assert r.status_code == 202, r.text
    assert r.json()["changed"] == ["image_prompt", "narration"]
    state = wait_idle(c, done.id)
    assert state["action"]["last"]["ok"] is True, state["action"]["last"]
    shot = plan(out, done.id)[2]
    assert shot["image_prompt"] == "a red boat at dusk" and shot["narration"] == "The boat comes home."
    assert plan(out, done.id)[1]["image_prompt"] == done.read_step_output("shots").shots[0].image_prompt
    assert [call[0] for call in fakes.image.calls[calls:]] == [2]  # only shot 2's image is made again
    assert state["status"] == COMPLETE
    # no change, an unknown shot, a bad token: refused with a reason
    r = c.post(f"/s/{done.id}/edit", data={**form, "image_prompt": "a red boat at dusk"}, headers=JSON)
    assert r.status_code == 400 and "no change" in r.json()["message"]
    assert c.post(f"/s/{done.id}/edit", data={**form, "shot": "9"}, headers=JSON).status_code == 400
    assert c.post(f"/s/{done.id}/edit", data={**form, "image_prompt": ""}, headers=JSON).status_code == 400
    assert c.post(f"/s/{done.id}/edit", data={**form, "csrf": "x"}, headers=JSON).status_code == 403
    r = c.post(f"/s/{done.id}/edit", data={**form, "image_prompt": "x"}, headers={**JSON, "Origin": "http://evil.example"})
    assert r.status_code == 403


def test_redo_picks_a_new_seed_or_the_given_one(out, done):
    c = client(out)
    old = plan(out, done.id)[1]["seed"]
    r = c.post(f"/s/{done.id}/redo", data={"csrf": TOKEN, "shot": "1", "stage": "image"}, headers=JSON)
    assert r.status_code == 202 and "new seed" in r.json()["message"]
    last = wait_idle(c, done.id)["action"]["last"]
    new = plan(out, done.id)[1]["seed"]
    assert last["ok"] is True and new != old and f"(seed {new})" in last["message"]
    r = c.post(f"/s/{done.id}/redo", data={"csrf": TOKEN, "shot": "1", "stage": "image", "seed": "4242"}, headers=JSON)
    assert r.status_code == 202
    assert wait_idle(c, done.id)["action"]["last"]["ok"] is True
    assert plan(out, done.id)[1]["seed"] == 4242
    image = SessionStore(out).load(done.id).meta.shot(1).image
    assert image.seed == 4242 and len({t["sha256"] for t in image.takes} | {image.sha256}) == 3  # never a duplicate
    r = c.post(f"/s/{done.id}/redo", data={"csrf": TOKEN, "shot": "1", "stage": "image", "seed": "-1"}, headers=JSON)
    assert r.status_code == 400 and "seed" in r.json()["message"]


def test_a_new_film_from_the_form(out, fakes):
    c = client(out)
    page = c.get("/").text
    assert 'name="backend_image"' in page and f'<option value="{fakes.image.name}">' in page
    form = {"csrf": TOKEN, "idea": "A fox learns to sail", "backend_story": fakes.story.name,
            "backend_image": fakes.image.name, "backend_video": fakes.video.name, "backend_narration": "none",
            "shots": "2", "transition": "crossfade", "subtitles": "none"}
    assert c.post("/new", data={**form, "idea": " "}, headers=JSON).status_code == 400
    assert c.post("/new", data={**form, "backend_image": "nosuch"}, headers=JSON).status_code == 400
    assert c.post("/new", data={**form, "shots": "0"}, headers=JSON).status_code == 400
    assert c.post("/new", data={**form, "csrf": "no"}, headers=JSON).status_code == 403
    r = c.post("/new", data=form, headers=JSON)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    wait_until(lambda: not c.get(job).json()["running"], what="the new film")
    info = c.get(job).json()
    assert info["last"]["ok"] is True, info
    meta = SessionStore(out).load(info["session"]).meta
    assert meta.idea == "A fox learns to sail" and meta.status == COMPLETE and len(meta.shots) == 2
    assert meta.backends["image"].name == fakes.image.name and meta.backends["narration"].name == "none"
    assert meta.film_settings.get("transition") == "crossfade"
    assert info["url"] == f"/s/{info['session']}"


def test_resume_a_failed_session(out, fakes):
    from reelforge.errors import StageError

    fakes.image.fail(2, StageError("nope"))
    result = run_session(out, "Fails once", backends=fakes.backends)
    assert result.status == FAILED
    c = client(out)
    assert 'data-resume="1"' in c.get(f"/s/{result.session_id}").text
    r = c.post(f"/s/{result.session_id}/resume", data={"csrf": TOKEN}, headers=JSON)
    assert r.status_code == 202
    assert wait_idle(c, result.session_id)["status"] == COMPLETE
    assert 'data-resume="1"' not in c.get(f"/s/{result.session_id}").text


def test_downloads_the_bundle_and_the_prompts_and_leaves_no_temp_file(out, done):
    c = client(out)
    before = set(os.listdir(tempfile.gettempdir()))
    r = c.get(f"/s/{done.id}/download/bundle.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert f'filename="{done.id}.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read(f"{done.id}/manifest.json"))
        film = zf.read(f"{done.id}/film.mp4")
    assert film == (done.path / "film.mp4").read_bytes()
    assert {f["path"] for f in manifest["files"]} | {"manifest.json"} == {n.split("/", 1)[1] for n in names}
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("reelforge-bundle-")}
    r = c.get(f"/s/{done.id}/download/prompts.csv")
    assert r.status_code == 200 and r.text.splitlines()[0].startswith("shot,scene,description,image_prompt")
    assert len(r.text.strip().splitlines()) == 4
    assert c.get(f"/s/{done.id}/download/prompts.json").json()["session"] == done.id
    assert c.get(f"/s/{done.id}/download/prompts.exe").status_code == 404


def test_a_poll_answers_only_what_changed(out, done):
    c = client(out)
    first = c.get(f"/s/{done.id}/state.json?since=").json()
    assert len(first["shots"]) == 3 and "unchanged" not in first
    again = c.get(f"/s/{done.id}/state.json?since={first['version']}").json()
    assert again["unchanged"] is True and "shots" not in again and again["version"] == first["version"]
    # a change of one shot in the files: the next poll says so and carries that shot only
    with SessionStore(out).open(done.id) as session:
        from reelforge.engine.edits import edit_shot, saved_plan

        edit_shot(session, saved_plan(session), 3, {"narration": "Night falls."})
    changed = c.get(f"/s/{done.id}/state.json?since={first['version']}").json()
    assert "unchanged" not in changed and changed["version"] != first["version"]
    assert [s["id"] for s in changed["changed"]] == [3] and changed["changed"][0]["narration"] == "Night falls."


HOLD = """
import sys
from reelforge.store.sessions import SessionStore
session = SessionStore(sys.argv[1]).open(sys.argv[2])
print("locked", flush=True)
sys.stdin.read()
"""


def test_another_process_holding_the_lock_greys_the_page_and_is_refused_by_name(out, done, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[1]),
                                                                    os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), done.id], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "locked"
        c = client(out)
        state = c.get(f"/s/{done.id}/state.json").json()
        assert state["holder"]["pid"] == proc.pid and state["locked"] is True
        page = c.get(f"/s/{done.id}").text
        assert f'data-holder="{proc.pid}"' in page and f"pid {proc.pid}" in page
        assert 'disabled data-redo="1-image"' in page
        for path, form in (("redo", {"shot": "1", "stage": "image"}), ("resume", {}),
                           ("edit", {"shot": "1", "narration": "other words"})):
            r = c.post(f"/s/{done.id}/{path}", data={"csrf": TOKEN, **form}, headers=JSON)
            assert r.status_code == 409, (path, r.text)
            assert f"pid {proc.pid}" in r.json()["message"]
        # killed while holding it: the lock and its holder go with the process
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = c.get(f"/s/{done.id}/state.json").json()
        assert state["holder"] is None and state["locked"] is False
        assert 'disabled data-redo="1-image"' not in c.get(f"/s/{done.id}").text
        r = c.post(f"/s/{done.id}/edit", data={"csrf": TOKEN, "shot": "1", "narration": "other words",
                                               "remake": "0"}, headers=JSON)
        assert r.status_code == 202, r.text
        assert plan(out, done.id)[1]["narration"] == "other words"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_page_puts_the_film_first_with_a_poster_and_the_clip_with_its_voice(out, done):
    page = client(out).get(f"/s/{done.id}").text
    assert page.index('<section id="film"') < page.index('<section id="summary"') < page.index('<section id="shots"')
    poster = f'poster="/s/{done.id}/poster.jpg?v={done.meta.film.sha256[:16]}"'  # a frame of the film (test_poster)
    assert poster in page
    assert 'data-voice="voice-2"' in page and 'id="voice-2"' in page
    assert f'href="/s/{done.id}/download/bundle.zip"' in page


def test_the_cast_is_a_row_of_portraits_whose_redo_and_replace_remake_only_that_characters_shots(out, fakes):
    """Issue 20 item 1 in serve: the cast above the shots, each portrait served from the
    session and redone with a new seed; then exactly the shots with that character (and
    their clips and the film) are made again."""
    from test_cast import _enqueue  # five shots, three characters: Tove in shots 2 and 5

    from reelforge.engine.cast import cast_rows

    fakes.image.takes_references = True  # a generator that takes references: the session gets a cast
    _enqueue(fakes)
    result = run_session(out, "A lighthouse", backends=fakes.backends)
    assert result.ok, result.failed
    session = SessionStore(out).load(result.session_id)
    rows = {r["name"]: r for r in cast_rows(session)}
    name = next(n for n, r in rows.items() if r["shots"] and len(r["shots"]) < len(session.meta.shots))
    c = client(out)
    page = c.get(f"/s/{result.session_id}").text
    assert page.index('<h2>Cast') < page.index('id="shots"')  # above the shots
    assert all(f'data-character="{n}"' in page for n in rows)
    data = c.get(f"/s/{result.session_id}/state.json").json()
    portrait = next(p for p in data["cast"] if p["name"] == name)
    r = c.get(portrait["url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    before = {s.id: s.image.sha256 for s in session.meta.shots}
    portraits, images = len(fakes.image.portraits), len(fakes.image.calls)
    r = c.post(f"/s/{result.session_id}/cast_redo", data={"csrf": TOKEN, "name": name}, headers=JSON)
    assert r.status_code == 202, r.text
    state = wait_idle(c, result.session_id)
    assert state["action"]["last"]["ok"] is True, state["action"]["last"]
    assert [p[0] for p in fakes.image.portraits[portraits:]] == [name]  # that portrait only
    assert sorted(call[0] for call in fakes.image.calls[images:]) == sorted(rows[name]["shots"])
    after = SessionStore(out).load(result.session_id)
    assert after.meta.status == COMPLETE and len(after.portrait(name).takes) == 1
    changed = {s.id for s in after.meta.shots if s.image.sha256 != before[s.id]}
    assert changed == set(rows[name]["shots"])
    # replaced with a picture of the user's: that portrait, then that character's shots again
    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (48, 48), (10, 200, 30)).save(picture, format="PNG")
    images = len(fakes.image.calls)
    r = c.post(f"/s/{result.session_id}/cast_set", data={"csrf": TOKEN, "name": name},
               files={"file": ("me.png", picture.getvalue(), "image/png")}, headers=JSON)
    assert r.status_code == 202, r.text
    state = wait_idle(c, result.session_id)
    assert state["action"]["last"]["ok"] is True, state["action"]["last"]
    mine = SessionStore(out).load(result.session_id).portrait(name)
    assert mine.backend == "user" and mine.pinned and len(mine.takes) == 2
    assert (SessionStore(out).path_for(result.session_id) / mine.path).read_bytes() == picture.getvalue()
    assert sorted(call[0] for call in fakes.image.calls[images:]) == sorted(rows[name]["shots"])
    r = c.post(f"/s/{result.session_id}/cast_set", data={"csrf": TOKEN, "name": name},
               files={"file": ("notes.txt", b"not a picture", "text/plain")}, headers=JSON)
    assert r.status_code == 400 and "Pillow" in r.json()["message"]
    # refused: a name not in the story, a bad token
    assert c.post(f"/s/{result.session_id}/cast_redo", data={"csrf": TOKEN, "name": "Nobody"},
                  headers=JSON).status_code == 400
    assert c.post(f"/s/{result.session_id}/cast_redo", data={"csrf": "x", "name": name},
                  headers=JSON).status_code == 403
