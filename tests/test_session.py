"""The session store: ids, atomic files, the journal, locking, corrupt files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from PIL import Image

from reelforge.errors import SessionCorruptError, SessionError, SessionLockedError
from reelforge.records import Shot, ShotPlan, Story
from reelforge.store.meta import DONE, IN_PROGRESS, NEW
from reelforge.store.sessions import SessionStore


def _plan(n: int) -> ShotPlan:
    return ShotPlan(tuple(Shot(id=i, scene_id="s1", description=f"d{i}", image_prompt="p")
                          for i in range(1, n + 1)))


def _png(path: Path) -> Path:
    Image.new("RGB", (8, 8), "red").save(path)
    return path


def test_same_second_sessions_get_distinct_ids(out):
    store = SessionStore(out)
    clock = dt.datetime(2025, 2, 8, 0, 22, 38)
    a = store.create("one", clock=clock)
    b = store.create("two", clock=clock)
    assert a.id == "session_20250208_002238"
    assert b.id != a.id and b.id.startswith(a.id)
    assert a.meta_path.name == "session_20250208_002238_meta.json"
    assert {s for s in store.ids()} == {a.id, b.id}


def test_new_session_records_idea_status_and_schema(out):
    s = SessionStore(out).create("  A lighthouse in a storm ")
    data = json.loads(s.meta_path.read_text())
    assert data["idea"] == "A lighthouse in a storm"
    assert data["status"] == NEW
    assert data["schema_version"] == 1
    assert set(data["steps"]) == {"story", "scene_graph", "shots", "images", "narration", "videos", "assemble"}


@pytest.mark.parametrize("bad", ["../etc", "session_1/../../x", "", "session_20250101_000000/..", "/tmp/x"])
def test_user_supplied_ids_cannot_escape(out, bad):
    with pytest.raises(SessionError, match="not a session id"):
        SessionStore(out).path_for(bad)


def test_second_runner_is_refused_and_changes_nothing(out):
    store = SessionStore(out)
    s = store.create("idea")
    before = s.meta_path.read_bytes()
    with pytest.raises(SessionLockedError, match="another reelforge process"):
        store.open(s.id)
    assert s.meta_path.read_bytes() == before
    s.close()
    store.open(s.id).close()  # free again once released


def test_shot_progress_survives_reload_via_journal(out, tmp_path):
    store = SessionStore(out)
    s = store.create("idea")
    s.save_step_output("shots", _plan(3))
    assert s.meta.status == IN_PROGRESS
    s.mark_shot_started("images", 2)
    s.save_shot_checkpoint("images", 2, {"prompt_id": "abc"})
    s.mark_shot_done("images", 2, _png(s.work_dir("images", 2) / "x.png"), backend="b", seed=7, seconds=1.5, fingerprint="f")
    # Not compacted yet: the state lives in the journal; a reader replays it.
    view = store.load(s.id)
    img = view.meta.shot(2).image
    assert (img.state, img.attempts, img.seed, img.checkpoint) == (DONE, 1, 7, {"prompt_id": "abc"})
    assert (s.path / "images" / "shot_002.png").is_file()
    assert len(img.sha256) == 64
    s.close()  # compacts: the meta alone holds everything, the journal is empty
    assert s.journal_path.read_bytes() == b""
    meta = json.loads(s.meta_path.read_text())
    assert meta["shots"][1]["image"]["state"] == DONE


def test_torn_final_journal_line_is_ignored_and_trimmed(out, tmp_path):
    store = SessionStore(out)
    s = store.create("idea")
    s.save_step_output("shots", _plan(2))
    s.mark_shot_done("images", 1, _png(s.work_dir("images", 1) / "a.png"), backend="b", seed=1, seconds=1, fingerprint="f")
    s._journal.close(); s._journal = None
    s._lock_file.release(); s._lock_file = None  # simulate a crash: no compaction
    with open(s.journal_path, "ab") as fh:
        fh.write(b'{"seq": 99, "op": "shot", "shot": 2, "stage": "images", "set": {"state": "do')
    reopened = store.open(s.id)
    assert reopened.meta.shot(1).image.state == DONE
    assert reopened.meta.shot(2).image.state == "todo"
    assert not reopened.journal_path.read_bytes().endswith(b'"do')
    reopened.close()


def test_corrupt_journal_in_the_middle_is_an_error(out, tmp_path):
    store = SessionStore(out)
    s = store.create("idea")
    s.save_step_output("shots", _plan(2))
    s.mark_shot_started("images", 1)
    s.mark_shot_started("images", 2)
    s._journal.close(); s._journal = None
    s._lock_file.release(); s._lock_file = None
    lines = s.journal_path.read_bytes().splitlines(keepends=True)
    s.journal_path.write_bytes(b"garbage\n" + lines[1])
    meta_before = s.meta_path.read_bytes()
    with pytest.raises(SessionCorruptError, match="journal.jsonl"):
        store.load(s.id)
    with pytest.raises(SessionCorruptError, match="line 1"):
        store.open(s.id)
    assert s.journal_path.read_bytes() == b"garbage\n" + lines[1]  # nothing overwritten
    assert s.meta_path.read_bytes() == meta_before


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"id": 3}', b"\xff\xfe"])
def test_corrupt_meta_is_named_and_left_alone(out, content):
    store = SessionStore(out)
    s = store.create("idea")
    s.close()
    s.meta_path.write_bytes(content)
    with pytest.raises(SessionCorruptError) as info:
        store.open(s.id)
    assert s.meta_path.name in str(info.value)
    assert s.meta_path.read_bytes() == content


def test_checkpoint_cost_does_not_grow_with_shots(out, tmp_path):
    """Per-shot writes append to the journal; the meta is rewritten only every
    max(64, n_shots) events, so bytes written per shot stay flat."""
    store = SessionStore(out)
    written = {}
    for n in (50, 800):
        s = store.create(f"idea {n}")
        s.save_step_output("shots", _plan(n))
        meta_writes = 0
        original = s.write_meta

        def counting():
            nonlocal meta_writes
            meta_writes += 1
            original()

        s.write_meta = counting
        for i in range(1, n + 1):
            s.mark_shot_started("images", i)
        written[n] = meta_writes
        s.close()
    # 50 events -> no rewrite before close; 800 events -> one rewrite per 800 events
    assert written[50] <= 2 and written[800] <= 2


def test_unknown_future_schema_is_refused(out):
    store = SessionStore(out)
    s = store.create("idea")
    s.close()
    data = json.loads(s.meta_path.read_text())
    data["schema_version"] = 99
    s.meta_path.write_text(json.dumps(data))
    with pytest.raises(SessionCorruptError, match="newer"):
        store.load(s.id)


def test_step_output_roundtrip_and_corrupt_story(out):
    store = SessionStore(out)
    s = store.create("idea")
    story = Story(title="T", logline="L", synopsis="S")
    s.save_step_output("story", story)
    assert s.read_step_output("story") == story
    (s.path / "story.json").write_text('{"title": "T"}')
    with pytest.raises(SessionCorruptError, match=r"story.json.*logline"):
        s.read_step_output("story")
    s.close()
