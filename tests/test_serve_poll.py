"""Issue 18 item 7: a poll of `reelforge serve` costs what changed. The page's session is
followed (store.view / web.follow): journal events appended since the last read are applied
on their own, a step file is parsed again only when it changed, a shot's row is made again
only when its record, plan entry or files changed. Held to one rule after every kind of
change a real session goes through: what the followed app answers is what a fresh app,
reading the session whole, answers."""

from __future__ import annotations

import json

import pytest

from reelforge.engine.edits import edit_shot, saved_plan
from reelforge.engine.runner import Runner
from reelforge.errors import SessionCorruptError, SessionError
from reelforge.records import unstructure
from reelforge.store.sessions import SessionStore
from reelforge.store.view import SessionView
from reelforge.testing import run_session

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def client(out):
    from starlette.testclient import TestClient

    from reelforge.web.app import create_app

    return TestClient(create_app(out, csrf_token="test-token-0123456789"), base_url="http://127.0.0.1:8765")


class Page:
    """A page that keeps polling one session (``?since=`` its last version), checked after
    each change against a fresh app's answer."""

    def __init__(self, out, sid):
        self.out, self.sid, self.app = out, sid, client(out)
        self.version = self.app.get(f"/s/{sid}/state.json?since=").json()["version"]
        self.made = self.rows_made()

    def rows_made(self) -> int:
        return self.app.app.state.followed[self.sid].rows_made

    def poll(self) -> tuple[set[int], int]:
        """The ids the poll answered as changed, and how many shot rows it made."""
        r = self.app.get(f"/s/{self.sid}/state.json?since={self.version}")
        assert r.status_code == 200, r.text
        answer = r.json()
        self.version = answer["version"]
        changed = {s["id"] for s in answer.get("changed", ())}  # none: no file changed (the holder may have)
        made, self.made = self.rows_made() - self.made, self.rows_made()
        # the whole state and the page, as a fresh app reading the session whole answers them
        assert self.app.get(f"/s/{self.sid}/state.json").json() == client(self.out).get(
            f"/s/{self.sid}/state.json").json()
        return changed, made


def same_as_a_fresh_load(view: SessionView) -> bool:
    fresh = SessionStore(view.session.store.output_dir).load(view.session.id)
    return unstructure(view.meta) == unstructure(fresh.meta)


def test_a_followed_session_answers_as_a_fresh_read_after_every_change(out, fakes):
    result = run_session(out, "A harbour city", backends=fakes.narrated)
    assert result.ok, result.failed
    sid = result.session_id
    page = Page(out, sid)
    assert page.poll() == (set(), 0)

    # a run holds the session: a clip is rendered (a journal event, a file renamed into place)
    running = SessionStore(out).open(sid)
    try:
        produced = running.work_dir("videos", 2) / "clip.mp4"
        produced.write_bytes((running.path / running.meta.shot(2).video.path).read_bytes())
        running.mark_shot_done("videos", 2, produced, backend=fakes.video.name, seed=77, seconds=1.5,
                               fingerprint="another", info={"duration": 3.5})
        assert page.poll() == ({2}, 1)
        running.mark_shot_started("images", 3)  # an attempt counted: not fsynced, still read
        assert page.poll() == ({3}, 1)
        assert page.poll() == (set(), 0)
    finally:
        running.close()  # folds the journal into the meta: read again in full
    changed, made = page.poll()
    # nothing the page shows changed; only shot 2's record did (its commit's scratch name is gone)
    assert changed == set() and made <= 1

    # an edit: shots.json and the meta rewritten; only the edited shot's row is made again
    with SessionStore(out).open(sid) as editing:
        edit_shot(editing, saved_plan(editing), 1, {"narration": "The harbour wakes."})
    changed, made = page.poll()
    assert changed == {1} and made == 1

    # the runner remakes what the edit reaches, redoes a picture, brings the first one back
    runner = Runner(out)
    assert runner.resume(sid).ok
    page.poll()
    assert runner.redo(sid, 2, "image", new_seed=True).ok
    changed, made = page.poll()
    assert 2 in changed and made == len(changed)
    assert runner.use_take(sid, 2, "image", 1).ok
    changed, made = page.poll()
    assert 2 in changed and made == len(changed)

    # a new session beside it is followed on its own; the first one still answers the same
    other = run_session(out, "A mountain village", backends=fakes.narrated)
    assert Page(out, other.session_id).poll() == (set(), 0)
    assert page.poll() == (set(), 0)


def test_a_torn_journal_line_is_not_there_until_it_is_complete(out, fakes):
    """A writer mid-append (or killed mid-append) leaves a last line without its newline:
    a follower reads it as the store's replay does, as not there yet, and writes nothing."""
    result = run_session(out, "A harbour city", backends=fakes.narrated)
    sid = result.session_id
    page = Page(out, sid)
    view = SessionView(SessionStore(out), sid)
    journal = view.session.journal_path
    seq = view.meta.journal_seq + 1
    line = json.dumps({"seq": seq, "t": "2030-01-01T00:00:00", "op": "shot", "shot": 2, "stage": "images",
                       "set": {"attempts": 9}}, separators=(",", ":")).encode() + b"\n"
    with open(journal, "ab") as fh:
        fh.write(line[:25])
    before = journal.read_bytes()
    assert view.refresh().shots == frozenset() and view.meta.shot(2).image.attempts != 9
    assert same_as_a_fresh_load(view) and page.poll() == (set(), 0)
    with open(journal, "ab") as fh:
        fh.write(line[25:-1])  # the whole event, but no newline yet: still an append under way
    assert view.refresh().shots == frozenset() and page.poll() == (set(), 0)
    assert journal.read_bytes() == before + line[25:-1]  # nothing was cut off: a reader never writes
    with open(journal, "ab") as fh:
        fh.write(b"\n")
    changes = view.refresh()
    assert not changes.full and changes.shots == {2} and view.meta.shot(2).image.attempts == 9
    assert same_as_a_fresh_load(view)
    assert page.poll() == ({2}, 1)
    assert page.app.get(f"/s/{sid}/state.json").json()["shots"][1]["stages"]["image"]["attempts"] == 9


def test_the_view_reads_on_through_a_run_and_its_compaction(out, fakes):
    """Read-only and lock-free while a run holds the session; read whole again once the run
    folds its journal into a new meta."""
    result = run_session(out, "A harbour city", backends=fakes.narrated)
    sid = result.session_id
    view = SessionView(SessionStore(out), sid)
    with SessionStore(out).open(sid) as running:
        with pytest.raises(SessionError, match="read-only"):
            running.catch_up()  # a writer has its own state: following is for readers
        running.mark_shot_started("videos", 1)
        running.mark_shot_failed("videos", 1, "the renderer fell over")
        changes = view.refresh()
        assert not changes.full and changes.shots == {1} and not view.session.locked
        assert view.meta.shot(1).video.last_error == "the renderer fell over"
        assert same_as_a_fresh_load(view)
    changes = view.refresh()
    assert changes.full and same_as_a_fresh_load(view)
    assert view.refresh() == type(changes)(full=False)


def test_a_changed_plan_reads_as_the_store_reads_it(out, fakes):
    """A changed shots.json structures only its changed shots, with the same result, and the
    same error for a bad entry (``true`` where a number belongs is not ``1``)."""
    result = run_session(out, "A harbour city", backends=fakes.narrated)
    view = SessionView(SessionStore(out), result.session_id)
    plan = view.step_output("shots")
    assert view.step_output("shots") is plan  # the file has not changed: not read again
    path = view.session.path / "shots.json"
    data = json.loads(path.read_text())
    data["shots"][1]["narration"] = "Changed by hand."
    path.write_text(json.dumps(data))
    again = view.step_output("shots")
    assert again == view.session.read_step_output("shots") and again.shots[1].narration == "Changed by hand."
    assert again.shots[0] is plan.shots[0] and again.shots[2] is plan.shots[2]
    data["shots"][0]["id"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(SessionCorruptError) as bad:
        view.step_output("shots")
    with pytest.raises(SessionCorruptError) as expected:
        view.session.read_step_output("shots")
    assert str(bad.value) == str(expected.value)


WRITER = """
import sys
from reelforge.store.sessions import SessionStore
session = SessionStore(sys.argv[1]).open(sys.argv[2])
session.mark_shot_started("images", 1)
session.mark_shot_failed("videos", 2, "the renderer fell over")
print("ready", flush=True)
sys.stdin.readline()  # held open, its journal not folded in, until it is killed
"""


def test_a_killed_writer_is_read_as_it_left_the_session(out, fakes):
    """A run SIGKILLed with its events only in the journal (no compaction at close): the
    page read them while it ran, and reads on after its death, a torn last line and the
    next run's repair of it included, always as a fresh read answers."""
    import os
    import signal
    import subprocess
    import sys

    result = run_session(out, "A harbour city", backends=fakes.narrated)
    sid = result.session_id
    page = Page(out, sid)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out), sid], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        assert page.poll() == ({1, 2}, 2)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(30)
    assert page.poll() == (set(), 0)
    journal = SessionStore(out).path_for(sid) / "journal.jsonl"
    with open(journal, "ab") as fh:  # what a kill in the middle of an append leaves
        fh.write(b'{"seq":99,"op":"shot","shot":3,"stage":"images","set":{"attem')
    assert page.poll() == (set(), 0)
    with SessionStore(out).open(sid) as again:  # cuts the torn line off, appends after it
        again.mark_shot_failed("images", 3, "out of memory")
        again.mark_shot_started("images", 3)
        assert page.poll() == ({3}, 1)
    assert page.poll()[0] == set()


def test_a_followed_session_that_breaks_or_goes_says_so_as_a_first_read_does(out, fakes):
    import shutil

    result = run_session(out, "A harbour city", backends=fakes.narrated)
    sid = result.session_id
    page = Page(out, sid)
    meta = SessionStore(out).path_for(sid) / f"{sid}_meta.json"
    text = meta.read_text()
    meta.write_text(text.replace('"status"', '"status": 1, "x"', 1))
    broken = page.app.get(f"/s/{sid}/state.json?since={page.version}")
    assert broken.status_code == 500 and "meta.json" in broken.text
    assert broken.text == client(out).get(f"/s/{sid}/state.json").text
    meta.write_text(text)
    page.poll()
    shutil.rmtree(meta.parent)
    assert page.app.get(f"/s/{sid}/state.json?since={page.version}").status_code == 404


def test_a_secret_learnt_later_is_masked_in_the_rows_kept(out, fakes):
    from reelforge.redact import forget_secrets, register_secret

    result = run_session(out, "A harbour city", backends=fakes.narrated)
    sid = result.session_id
    page = Page(out, sid)
    with SessionStore(out).open(sid) as editing:
        edit_shot(editing, saved_plan(editing), 3, {"narration": "The code is hunter2-secret."})
    page.poll()
    try:
        register_secret("hunter2-secret")
        with SessionStore(out).open(sid) as running:  # any change: shot 1's attempt counted
            running.mark_shot_started("images", 1)
            page.poll()  # which compares the whole state with a fresh app's
        shown = page.app.get(f"/s/{sid}/state.json").text
        assert "hunter2-secret" not in shown and "The code is ***." in shown
    finally:
        forget_secrets()
