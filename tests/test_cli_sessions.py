"""Issue 9 items 2 and 3 through the CLI: `run` never hijacks a new idea, `run` answered n
asks for the idea, `sessions rm`/`abandon`, and `sessions list`/`view` as people use them
(id prefixes, `latest`, newest first, -n, --status, --search, --json, aligned columns)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.store.listing import resolve_session_id, session_sort_key
from reelforge.errors import SessionError, SessionNotFoundError, StageError
from reelforge.records import Shot, ShotPlan
from reelforge.store.meta import ABANDONED, DONE, FAILED, IN_PROGRESS
from reelforge.store.sessions import SessionStore

FAKE = ["--story-llm", "fake", "--image-gen", "fake", "--renderer", "fake"]


def invoke(out, *args, input=None):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)], input=input, catch_exceptions=False)


def make(out, idea, when, *, shots=0, done=0, status=None):
    """A session made through the store (no backends): ``shots`` planned, the first
    ``done`` of them recorded done for images and videos (the files need not exist for
    listing)."""
    store = SessionStore(out)
    s = store.create(idea, clock=when)
    if shots:
        s.save_step_output("shots", ShotPlan(shots=tuple(
            Shot(id=i, scene_id="s1", description=f"Shot number {i}", image_prompt="p")
            for i in range(1, shots + 1))))
        for st in s.meta.shots[:done]:
            for art, rel in ((st.image, f"images/shot_{st.id:03d}.png"), (st.video, f"videos/shot_{st.id:03d}.mp4")):
                art.state, art.path, art.size, art.sha256 = DONE, rel, 1, "0" * 64
        s.write_meta()
    if status:
        s.set_status(status)
    s.close()
    return s.id


T0 = dt.datetime(2026, 12, 1, 15, 30, 0)


def at(minutes=0, seconds=0):
    return T0 + dt.timedelta(minutes=minutes, seconds=seconds)


# -- item 2: Continue? never hijacks new work --------------------------------------------

def test_a_new_idea_is_never_offered_another_ideas_session(out, fakes):
    fakes.video.fail(1, StageError("boom"))
    invoke(out, "run", "First idea", *FAKE)
    first = SessionStore(out).ids()[0]
    r = invoke(out, "run", "A new idea", *FAKE, input="")  # nothing to answer: no question is asked
    assert r.exit_code == 0, r.output
    assert "INCOMPLETE SESSION FOUND" not in r.output and "Continue?" not in r.output
    assert ("Starting a new session for this idea; 1 incomplete session of other ideas is left as it is "
            "(`reelforge resume ID` continues one).") in r.output
    store = SessionStore(out)
    assert len(store.ids()) == 2
    assert store.load(first).meta.status == FAILED
    new = store.load([i for i in store.ids() if i != first][0]).meta
    assert (new.idea, new.status) == ("A new idea", "COMPLETE")


def test_the_same_idea_in_other_case_and_spacing_is_offered(out, fakes):
    fakes.video.fail(1, StageError("boom"))
    invoke(out, "run", "First idea", *FAKE)
    r = invoke(out, "run", "  first   IDEA ", *FAKE, input="y\n")
    assert r.exit_code == 0, r.output
    assert "INCOMPLETE SESSION FOUND" in r.output and "Continue? [Y/n]" in r.output
    store = SessionStore(out)
    assert len(store.ids()) == 1 and store.load(store.ids()[0]).meta.status == "COMPLETE"


def test_resume_flag_with_an_idea_takes_only_that_ideas_session(out, fakes):
    fakes.video.fail(1, StageError("boom"))
    invoke(out, "run", "First idea", *FAKE)
    r = invoke(out, "run", "Other idea", "--resume", *FAKE)
    assert r.exit_code == 2
    assert "no incomplete session of this idea" in r.output and "1 incomplete session of other ideas" in r.output
    assert len(SessionStore(out).ids()) == 1
    r = invoke(out, "run", "FIRST IDEA", "--resume", *FAKE)
    assert r.exit_code == 0, r.output
    assert len(SessionStore(out).ids()) == 1


def test_run_without_idea_answered_no_stops_and_says_how_to_give_one(out, fakes):
    # Issue 18: the spec's n starts a new session, but asking `Idea:` is not in it: say how.
    fakes.video.fail(1, StageError("boom"))
    invoke(out, "run", "First idea", *FAKE)
    r = invoke(out, "run", *FAKE, input="n\nA lighthouse in a storm\n")
    assert r.exit_code == 2, r.output
    assert "Continue? [Y/n]: n\n" in r.output and "is left as it is; to start a new session give its idea" in r.output
    assert [SessionStore(out).load(i).meta.idea for i in SessionStore(out).ids()] == ["First idea"]


def test_run_without_idea_answered_no_and_no_idea_on_stdin_is_a_usage_error(out, fakes):
    fakes.video.fail(1, StageError("boom"))
    invoke(out, "run", "First idea", *FAKE)
    for given in ("n\n", "n\n\n"):  # end of input, and an empty line
        r = invoke(out, "run", *FAKE, input=given)
        assert r.exit_code == 2, r.output
        assert "pass --resume to continue it or --new" in r.output or "give its idea" in r.output
    assert len(SessionStore(out).ids()) == 1


# -- item 2: abandon and rm ------------------------------------------------------------------

def test_an_abandoned_session_is_never_offered_but_resume_id_continues_it(out, fakes):
    fakes.video.fail(1, StageError("boom"))
    invoke(out, "run", "First idea", *FAKE)
    sid = SessionStore(out).ids()[0]
    r = invoke(out, "sessions", "abandon", sid[len("session_"):])  # a prefix without session_
    assert r.exit_code == 0, r.output
    assert f"Session {sid} is ABANDONED" in r.output and f"reelforge resume {sid}" in r.output
    assert SessionStore(out).load(sid).meta.status == ABANDONED
    assert invoke(out, "sessions", "abandon", sid).exit_code == 0  # again: nothing changes
    assert "ABANDONED" in invoke(out, "sessions", "list").output
    # never offered: not for the same idea, not with no idea, not by --resume
    r = invoke(out, "run", "First idea", *FAKE, input="")
    assert r.exit_code == 0 and "INCOMPLETE SESSION FOUND" not in r.output
    assert len(SessionStore(out).ids()) == 2
    r = invoke(out, "run", "--resume", *FAKE)
    assert r.exit_code == 2 and "no incomplete session" in r.output
    # but it can be continued on purpose, and is then an ordinary session again
    r = invoke(out, "resume", sid)
    assert r.exit_code == 0, r.output
    assert SessionStore(out).load(sid).meta.status == "COMPLETE"


def test_opening_an_abandoned_session_to_run_it_makes_it_in_progress(out):
    sid = make(out, "idea", at(), shots=3, done=1, status=ABANDONED)
    store = SessionStore(out)
    assert not store.load(sid).meta.is_incomplete
    assert store.scan()[0] == []
    with store.open(sid) as s:
        assert s.meta.status == IN_PROGRESS
    assert store.load(sid).meta.status == IN_PROGRESS
    assert [s.id for s in store.scan()[0]] == [sid]


def test_abandon_refuses_complete_and_running_sessions(out, fakes):
    invoke(out, "run", "Done idea", "--new", *FAKE)
    sid = SessionStore(out).ids()[0]
    r = invoke(out, "sessions", "abandon", sid)
    assert r.exit_code == 1 and "COMPLETE: there is nothing to abandon" in r.output
    running = make(out, "busy", at(), shots=2)
    held = SessionStore(out).open(running)
    try:
        r = invoke(out, "sessions", "abandon", running)
        assert r.exit_code == 1 and "being run by another reelforge process" in r.output
    finally:
        held.close()
    assert SessionStore(out).load(running).meta.status != ABANDONED


def test_rm_asks_and_removes_only_on_yes(out):
    sid = make(out, "To remove", at(), shots=2, done=1)
    path = out / "sessions" / sid
    r = invoke(out, "sessions", "rm", sid, input="n\n")
    assert r.exit_code == 0 and f"Remove session {sid} and all its files? [y/N]: n" in r.output
    assert "Nothing removed." in r.output and path.is_dir()
    r = invoke(out, "sessions", "rm", sid, input="\n")  # the default is no
    assert r.exit_code == 0 and path.is_dir()
    r = invoke(out, "sessions", "rm", sid, input="")  # no answer at all: refuse, say how
    assert r.exit_code == 2 and "pass --yes" in r.output and path.is_dir()
    r = invoke(out, "sessions", "rm", sid, input="y\n")
    assert r.exit_code == 0 and f"Removed session {sid}." in r.output
    assert not path.exists()
    other = make(out, "Another", at(1))
    r = invoke(out, "sessions", "rm", "latest", "--yes")
    assert r.exit_code == 0 and not (out / "sessions" / other).exists()


def test_rm_refuses_a_session_a_run_holds(out):
    sid = make(out, "busy", at(), shots=2)
    held = SessionStore(out).open(sid)
    try:
        r = invoke(out, "sessions", "rm", sid, "--yes")
        assert r.exit_code == 1 and "being run by another reelforge process" in r.output
    finally:
        held.close()
    assert (out / "sessions" / sid / f"{sid}_meta.json").is_file()


def test_rm_never_follows_links(out, tmp_path):
    outside = tmp_path / "precious"
    (outside / "inner").mkdir(parents=True)
    (outside / "keep.txt").write_text("keep me")
    (outside / "inner" / "also.txt").write_text("and me")
    # a session folder that is itself a link: refused, its target untouched
    root = out / "sessions"
    root.mkdir(parents=True)
    linked = root / "session_20261201_120000"
    linked.symlink_to(outside, target_is_directory=True)
    r = invoke(out, "sessions", "rm", linked.name, "--yes")
    assert r.exit_code == 1 and "is a symbolic link" in r.output
    assert linked.is_symlink() and (outside / "keep.txt").read_text() == "keep me"
    linked.unlink()
    # links inside a session are removed as links, their targets untouched
    sid = make(out, "with links", at(), shots=1)
    (out / "sessions" / sid / "to_dir").symlink_to(outside, target_is_directory=True)
    (out / "sessions" / sid / "images").mkdir(exist_ok=True)
    (out / "sessions" / sid / "images" / "to_file").symlink_to(outside / "keep.txt")
    r = invoke(out, "sessions", "rm", sid, "--yes")
    assert r.exit_code == 0, r.output
    assert not (out / "sessions" / sid).exists()
    assert (outside / "keep.txt").read_text() == "keep me"
    assert (outside / "inner" / "also.txt").read_text() == "and me"


def test_rm_removes_an_unreadable_session_and_refuses_bad_ids(out):
    sid = make(out, "to break", at())
    (out / "sessions" / sid / f"{sid}_meta.json").write_text("{")
    r = invoke(out, "sessions", "rm", sid, "--yes")
    assert r.exit_code == 0 and "UNREADABLE" in r.output
    assert not (out / "sessions" / sid).exists()
    empty = out / "sessions" / "session_20200101_000000"  # left by a crash inside create()
    empty.mkdir()
    (empty / ".lock").touch()
    r = invoke(out, "sessions", "rm", empty.name, "--yes")
    assert r.exit_code == 0 and f"{empty.name} (EMPTY)" in r.output and not empty.exists()
    for bad in ("../../etc", "session_2026/..", "/tmp"):
        r = invoke(out, "sessions", "rm", bad, "--yes")
        assert r.exit_code == 2 and "is not a session id" in r.output


# -- item 3: ids, prefixes and latest ------------------------------------------------------

def test_view_takes_a_unique_prefix_latest_and_lists_an_ambiguous_prefix(out):
    a = make(out, "Morning idea", at(0))
    b = make(out, "Afternoon idea", at(60))
    c = make(out, "Later the same minute", at(60, 30))
    assert (a, b, c) == ("session_20261201_153000", "session_20261201_163000", "session_20261201_163030")
    r = invoke(out, "sessions", "view", "20261201_1530")
    assert r.exit_code == 0 and f"Session: {a}" in r.output
    r = invoke(out, "sessions", "view", "session_20261201_1530")
    assert r.exit_code == 0 and f"Session: {a}" in r.output
    r = invoke(out, "sessions", "view", "latest")
    assert r.exit_code == 0 and f"Session: {c}" in r.output
    r = invoke(out, "sessions", "view", "20261201_1630")
    assert r.exit_code == 2
    assert "'20261201_1630' matches 2 sessions; give more of the id" in r.output
    assert f"{c} (NEW) Later the same minute" in r.output and f"{b} (NEW) Afternoon idea" in r.output
    assert a not in r.output
    r = invoke(out, "sessions", "view", "2027")
    assert r.exit_code == 2 and "no session matches '2027'" in r.output
    r = invoke(out, "sessions", "view", "2026-12-01")
    assert r.exit_code == 2 and "is not a session id" in r.output


def test_an_exact_id_wins_over_longer_ids_it_starts(out):
    first = make(out, "one", at())
    second = make(out, "two", at())  # the same second: session_..._153000_2
    assert second == first + "_2"
    store = SessionStore(out)
    assert resolve_session_id(store, first) == first
    assert resolve_session_id(store, "latest") == second
    with pytest.raises(SessionError, match="matches 2 sessions"):
        resolve_session_id(store, first[:-1])


def test_latest_orders_numbered_ids_by_number_not_text():
    ids = ["session_20261201_153000_10", "session_20261201_153000", "session_20261201_153000_2",
           "session_20261130_235959_99"]
    assert sorted(ids, key=session_sort_key) == [
        "session_20261130_235959_99", "session_20261201_153000", "session_20261201_153000_2",
        "session_20261201_153000_10"]


def test_latest_with_no_sessions(out):
    with pytest.raises(SessionNotFoundError, match="no sessions in"):
        resolve_session_id(SessionStore(out), "latest")


def test_resume_takes_a_prefix(out, fakes):
    fakes.video.fail(1, StageError("boom"))
    invoke(out, "run", "idea", *FAKE)
    sid = SessionStore(out).ids()[0]
    r = invoke(out, "resume", sid[len("session_"):][:13])
    assert r.exit_code == 0, r.output
    assert f"Session {sid} COMPLETE" in r.output


# -- item 3: list ------------------------------------------------------------------------------

def _ids_in(output: str) -> list[str]:
    return re.findall(r"^(session_\d{8}_\d{6}(?:_\d+)?)\s", output, re.M)


def test_list_newest_first_with_limit_status_and_search(out):
    a = make(out, "A lighthouse in a storm", at(0), status=FAILED)
    b = make(out, "A city of traders", at(1), shots=2, done=2)
    c = make(out, "Lighthouse keepers'   reunion", at(2), status=ABANDONED)
    d = make(out, "Rain on a tin roof", at(3))
    assert _ids_in(invoke(out, "sessions", "list").output) == [d, c, b, a]
    r = invoke(out, "sessions", "list", "-n", "2")
    assert _ids_in(r.output) == [d, c] and "(2 of 4 shown, newest first)" in r.output
    assert _ids_in(invoke(out, "sessions", "list", "--status", "failed").output) == [a]
    r = invoke(out, "sessions", "list", "--status", "FAILED", "--status", "abandoned")
    assert _ids_in(r.output) == [c, a]
    r = invoke(out, "sessions", "list", "--status", "in-progress")  # b has done steps: IN_PROGRESS
    assert _ids_in(r.output) == [b]
    r = invoke(out, "sessions", "list", "--search", "LIGHTHOUSE")
    assert _ids_in(r.output) == [c, a]
    r = invoke(out, "sessions", "list", "--search", "keepers' reunion")  # spacing does not matter
    assert _ids_in(r.output) == [c]
    r = invoke(out, "sessions", "list", "--search", "lighthouse", "-n", "1")
    assert _ids_in(r.output) == [c]
    r = invoke(out, "sessions", "list", "--search", "submarine")
    assert r.exit_code == 0 and "No sessions match" in r.output and "(4 sessions in all)" in r.output
    r = invoke(out, "sessions", "list", "--status", "sleeping")
    assert r.exit_code == 2 and "'sleeping' is not a status" in r.output
    assert invoke(out, "sessions", "list", "-n", "0").exit_code == 2


def test_list_json_newest_first_with_counts_and_filters(out):
    a = make(out, "First", at(0), shots=3, done=1, status=FAILED)
    b = make(out, "Second", at(1))
    empty = out / "sessions" / "session_20200101_000000"  # left by a crash inside create()
    empty.mkdir()
    data = json.loads(invoke(out, "sessions", "list", "--json").output)
    assert [s["id"] for s in data] == [b, a, empty.name]
    assert [s["status"] for s in data] == ["NEW", "FAILED", "EMPTY"]
    first = data[1]
    assert first["idea"] == "First"
    assert first["counts"]["images"] == {"done": 1, "total": 3}
    assert first["counts"]["videos"] == {"done": 1, "total": 3}
    assert first["counts"]["shots"] == {"done": 1, "total": 1}
    assert first["counts"]["assemble"] == {"done": 0, "total": 1}
    data = json.loads(invoke(out, "sessions", "list", "--json", "--status", "empty").output)
    assert [s["id"] for s in data] == [empty.name]
    data = json.loads(invoke(out, "sessions", "list", "--json", "-n", "1").output)
    assert [s["id"] for s in data] == [b]


def test_view_json_is_the_meta_with_counts(out):
    sid = make(out, "An idea", at(), shots=12, done=9, status=FAILED)
    r = invoke(out, "sessions", "view", "latest", "--json")
    assert r.exit_code == 0
    data = json.loads(r.output)
    meta = SessionStore(out).load(sid).meta
    assert data["id"] == sid and data["idea"] == "An idea" and data["status"] == FAILED
    assert len(data["shots"]) == 12 and data["shots"][0]["image"]["state"] == DONE
    assert data["steps"] == meta.steps
    assert data["counts"]["images"] == {"done": 9, "total": 12}
    assert data["path"] == str(out / "sessions" / sid)


def _column_ends(output: str, header: str) -> set[int]:
    """Where the values in ``header``'s column end, on every session row."""
    lines = output.splitlines()
    head = next(line for line in lines if line.startswith("ID "))
    start = head.index(header)
    ends = set()
    for line in lines:
        if line.startswith("session_"):
            m = re.compile(r"\S+").search(line, start - 3)
            ends.add(m.end())
    return ends


@pytest.mark.parametrize("big", [12, 120])
def test_list_columns_align_past_shot_9(out, big):
    make(out, "Small", at(0), shots=3, done=3)
    make(out, "Big", at(1), shots=big, done=9)
    make(out, "Bigger", at(2), shots=big, done=big - 1)
    output = invoke(out, "sessions", "list").output
    for header in ("SHOTS", "IMAGES", "VIDEOS"):
        assert len(_column_ends(output, header)) == 1, output  # right-aligned: one right edge
    lines = output.splitlines()
    idea_at = next(line for line in lines if line.startswith("ID ")).index("IDEA")
    rows = [line for line in lines if line.startswith("session_")]
    assert [row[idea_at:].split()[0] for row in rows] == ["Bigger", "Big", "Small"]
    assert f"9/{big}" in output and f"{big - 1}/{big}" in output


def test_view_aligns_shot_numbers_past_9(out):
    make(out, "Big", at(), shots=120, done=9)
    lines = [line for line in invoke(out, "sessions", "view", "latest").output.splitlines()
             if re.match(r"  \[\w+\] +Shot ", line)]
    assert len(lines) == 120
    assert {line.index("Shot number") for line in lines} == {len("  [DONE]   Shot 120: ")}
    assert "  [DONE]   Shot   1: Shot number 1" in lines[0]


def test_sessions_help_names_every_command(out):
    r = CliRunner().invoke(cli, ["sessions", "help"])
    for command in ("list", "view ID", "abandon ID", "rm ID", "latest", "20261201_1530"):
        assert command in r.output
    r = CliRunner().invoke(cli, ["sessions", "rm", "--help"])
    assert "--yes" in r.output and "symbolic link" in r.output
