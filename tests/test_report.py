"""Issue 11 items 5 and 6: `reelforge report` writes a self-contained index.html into the
session (every shot, its state, seed, backend, time, attempts, takes, clip, the film with
its subtitles, the ledger), with everything escaped; `sessions view` shows the ledger."""

from __future__ import annotations

import base64
import contextlib
import html.parser
import os
import re

import pytest
from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.web.creator import grand_total, ledger_lines, stage_totals
from reelforge.errors import TransientError
from reelforge.records import Character, Scene, SceneGraph, Shot, ShotPlan, Story
from reelforge.store.session import Session
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session

HOSTILE = '"><script>alert("idea")</script><img src=x onerror=alert(1)>'


class Elements(html.parser.HTMLParser):
    """The elements of a page, with their attributes, as a browser's parser sees them."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def elements(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(page)
    return parser.found


@contextlib.contextmanager
def writable(store, sid):
    """The session opened with its lock, as a runner holds it."""
    session = Session(store, sid)
    session.lock()
    try:
        session.load(repair=True)
        yield session
    finally:
        session.close()


def invoke(out, *args):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)], catch_exceptions=False)


@pytest.fixture
def hostile(out, fakes):
    """A finished, narrated session whose idea, story and prompts are all hostile markup."""
    fakes.story.enqueue(
        Story(title="<script>alert('title')</script>", logline="A \"quoted\" & <b>bold</b> logline",
              synopsis="<iframe src=javascript:alert(2)>", style="' onmouseover='alert(3)",
              characters=(Character("<svg onload=alert(4)>", "</textarea><script>x</script>"),)),
        SceneGraph(scenes=(Scene(id="s1<script>", order=1, summary="<style>body{}</style>"),)),
        ShotPlan(shots=(
            Shot(id=1, scene_id="s1<script>", description="<script>alert('desc')</script>",
                 image_prompt='" autofocus onfocus="alert(5)', motion_prompt="</details><script>m</script>",
                 negative_prompt="<!-- -->", duration_s=0.4, seed=1, narration="<b>said</b> & done"),
            Shot(id=2, scene_id="s1<script>", description="plain", image_prompt="a plain prompt",
                 duration_s=0.4, seed=2, narration="two words"),
        )))
    result = run_session(out, HOSTILE, backends=fakes.narrated)
    assert result.ok, result.failed
    return SessionStore(out).load(result.session_id)


def test_the_report_shows_every_shot_with_its_media_by_relative_path(out, fakes):
    result = run_session(out, "A lighthouse", backends=fakes.narrated)
    assert result.ok, result.failed
    r = invoke(out, "report", "latest")
    assert r.exit_code == 0, r.output
    session = SessionStore(out).load(result.session_id)
    page_path = session.path / "index.html"
    assert r.output.strip() == f"Report: {page_path}"
    page = page_path.read_text()
    found = elements(page)
    shots = [a for tag, a in found if tag == "article"]
    assert [a["data-shot"] for a in shots] == ["1", "2", "3"]
    assert all(a["data-indicator"] == "DONE" for a in shots)
    images = [a["src"] for tag, a in found if tag == "img"]
    assert images == [f"images/shot_{i:03d}.png" for i in (1, 2, 3)]
    videos = [a["src"] for tag, a in found if tag == "video"]
    assert videos == ["film.mp4", *[f"videos/shot_{i:03d}.mp4" for i in (1, 2, 3)]]
    for src in images + videos:  # every media reference resolves inside the session
        assert (session.path / src).is_file()
    # the film's subtitles ride along as a data: URL (a file page may not load another file)
    track = next(a for tag, a in found if tag == "track")
    assert track["src"].startswith("data:text/vtt;base64,")
    assert base64.b64decode(track["src"].split(",", 1)[1]) == (session.path / "film.vtt").read_bytes()
    assert not [t for t, a in found if t in ("script", "link")]  # self-contained: nothing loaded
    # state, seed, backend, time and attempts per stage
    meta = session.meta
    rows = [a for tag, a in found if tag == "li" and "data-stage" in a]
    assert len(rows) == 9  # image, voice, clip for 3 shots
    assert {(a["data-stage"], a["data-state"], a["data-attempts"]) for a in rows} == {
        (stage, "done", "1") for stage in ("image", "narration", "video")}
    first_card = page.split('id="shot-1"')[1].split("</article>")[0]
    assert re.search(rf'data-stage="image".*?seed {meta.shot(1).image.seed}</span> · <span title="backend">fake</span>',
                     first_card, re.S)
    assert "Shot total:" in first_card


def test_a_hostile_idea_and_prompts_are_inert_text(out, hostile):
    r = invoke(out, "report", hostile.id)
    assert r.exit_code == 0, r.output
    page = (hostile.path / "index.html").read_text()
    tags = [tag for tag, _ in elements(page)]
    assert "script" not in tags and "iframe" not in tags and "svg" not in tags and "b" not in tags
    for tag, attrs in elements(page):
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "autofocus" not in attrs
    assert page.count("<style>") == 1  # the page's own
    # the text is all there, escaped
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in page
    assert "&#34;&gt;&lt;script&gt;alert(&#34;idea&#34;)&lt;/script&gt;" in page
    assert "&lt;b&gt;said&lt;/b&gt; &amp; done" in page
    assert "&lt;svg onload=alert(4)&gt;" in page
    assert "&#34; autofocus onfocus=&#34;alert(5)" in page
    # the page forbids scripts even if something slipped through
    csp = next(a for tag, a in elements(page) if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "script-src 'none'" in csp["content"]


def test_the_report_replaces_a_link_and_touches_nothing_else(out, hostile, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (hostile.path / "index.html").symlink_to(victim)
    before = {p: p.read_bytes() for p in hostile.path.rglob("*") if p.is_file() and not p.is_symlink()}
    assert invoke(out, "report", "latest").exit_code == 0
    assert victim.read_text() == "keep me"
    assert not (hostile.path / "index.html").is_symlink()
    after = {p: p.read_bytes() for p in hostile.path.rglob("*") if p.is_file() and p.name != "index.html"}
    assert after == before


def test_the_report_of_a_failed_shot_shows_its_error_and_attempts(out, fakes):
    from reelforge.errors import StageError

    fakes.image.fail(2, *[StageError("the <GPU> fell over")] * 5)
    result = run_session(out, "A storm", backends=fakes.backends)
    assert not result.ok
    assert invoke(out, "report", "latest").exit_code == 0
    page = (SessionStore(out).load(result.session_id).path / "index.html").read_text()
    card = page.split('id="shot-2"')[1].split("</article>")[0]
    assert 'data-indicator="FAILED"' in page.split('id="shot-2"')[1][:200]
    attempts = SessionStore(out).load(result.session_id).meta.shot(2).image.attempts
    assert attempts >= 1
    assert f'data-stage="image" data-state="failed" data-attempts="{attempts}"' in card
    assert "the &lt;GPU&gt; fell over" in card
    assert "no image yet" in card
    assert "Not assembled yet." in page


# -- the ledger (item 6, display) ------------------------------------------------------------

def test_the_ledger_adds_up_the_shots_and_the_story_steps(out, fakes):
    fakes.video.fail(1, TransientError("flaky"))
    result = run_session(out, "A ledger", backends=fakes.backends)
    assert result.ok, result.failed
    store = SessionStore(out)
    assert set(store.load(result.session_id).meta.step_usage) == {"story", "scene_graph", "shots"}  # the runner's
    with writable(store, result.session_id) as s:  # figures as an LLM's usage fields give them
        s.meta.step_usage = {}
        s.add_step_usage("story", seconds=1.5, attempts=1, prompt_tokens=120, completion_tokens=80)
        s.add_step_usage("shots", seconds=2.0, attempts=2, prompt_tokens=300, completion_tokens=500)
    meta = store.load(result.session_id).meta
    totals = stage_totals(meta)
    assert totals["videos"]["attempts"] == 4  # shot 1 took two
    assert totals["images"]["attempts"] == 3
    assert totals["videos"]["backend_seconds"] == pytest.approx(
        sum(st.video.backend_seconds for st in meta.shots))
    assert totals["story"] == {"backend_seconds": 1.5, "attempts": 1, "prompt_tokens": 120, "completion_tokens": 80}
    assert totals["scene_graph"]["attempts"] is None
    total = grand_total(totals)
    assert total["prompt_tokens"] == 420 and total["completion_tokens"] == 580
    assert total["attempts"] == 1 + 2 + 3 + 4

    view = invoke(out, "sessions", "view", "latest").output
    ledger = view.split("Ledger")[1]
    assert re.search(r"\n  Story +1\.5 s +1 attempt +120 prompt \+ 80 completion tokens", ledger)
    assert re.search(r"\n  Videos +[0-9.]+ s +4 attempts\n", ledger)
    assert re.search(r"\n  Total +[0-9.]+ s +10 attempts +420 prompt \+ 580 completion tokens", ledger)
    assert "Scenes" not in ledger  # nothing recorded for it

    assert invoke(out, "report", "latest").exit_code == 0
    page = (store.load(result.session_id).path / "index.html").read_text()
    row = page.split('data-ledger="story"')[1].split("</tr>")[0]
    assert "1.5 s" in row and ">120<" in row and ">80<" in row
    card = page.split('id="shot-1"')[1].split("</article>")[0]
    assert 'data-stage="video" data-state="done" data-attempts="2"' in card


def test_a_session_with_nothing_spent_shows_no_ledger(out):
    s = SessionStore(out).create("Nothing yet")
    s.close()
    assert ledger_lines(SessionStore(out).load(s.id).meta) == []
    assert "Ledger" not in invoke(out, "sessions", "view", "latest").output


def test_report_ids_accept_what_sessions_view_accepts(out, fakes):
    result = run_session(out, "Prefix", backends=fakes.backends)
    short = result.session_id[len("session_"):][:11]
    assert invoke(out, "report", short).exit_code == 0
    r = invoke(out, "report", "session_19990101")
    assert r.exit_code == 2 and "no session matches" in r.output
    assert os.path.isfile(result.path / "index.html")


def test_report_and_export_load_no_plugin_and_no_web_server(out, fakes, tmp_path):
    from test_cli_startup import reelforge

    result = run_session(out, "Light", backends=fakes.backends)
    for args in (["report", "latest"], ["export", "latest", "--prompts"]):
        proc, modules = reelforge(*args, "--output-dir", str(out), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert not [m for m in modules if m.startswith("reelforge.plugins.")], args
        assert not {"starlette", "uvicorn", "opentimelineio", "playwright"} & modules, args
    assert (result.path / "index.html").is_file()
