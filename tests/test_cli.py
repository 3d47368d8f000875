"""The CLI through click's CliRunner: run/resume prompts, sessions list/view, plugins, errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.errors import StageError
from reelforge.store.sessions import SessionStore

FAKE = ["--story-llm", "fake", "--image-gen", "fake", "--renderer", "fake"]


def invoke(out, *args, input=None):
    result = CliRunner().invoke(cli, [*args, "--output-dir", str(out)], input=input, catch_exceptions=False)
    return result


def test_run_new_makes_a_film(out, fakes):
    r = invoke(out, "run", "A lighthouse keeper", "--new", *FAKE)
    assert r.exit_code == 0, r.output
    sid = SessionStore(out).ids()[0]
    assert f"Session {sid} COMPLETE" in r.output
    assert (out / "sessions" / sid / "film.mp4").is_file()


def test_run_asks_to_continue_and_yes_resumes(out, fakes):
    fakes.video.fail(3, StageError("boom"))
    r = invoke(out, "run", "An idea", *FAKE)
    assert r.exit_code == 1
    assert "reelforge resume" in r.output
    r = invoke(out, "run", *FAKE, input="y\n")
    assert r.exit_code == 0, r.output
    assert "INCOMPLETE SESSION FOUND" in r.output
    assert "Continue? [Y/n]" in r.output
    assert "[FAILED] Shot 3" in r.output  # the session info shown before asking
    assert len(SessionStore(out).ids()) == 1


def test_run_answer_no_creates_new_session(out, fakes):
    # Only a session of the same idea is offered; n starts a new one of that idea.
    fakes.video.fail(1, StageError("boom"))
    invoke(out, "run", "First idea", *FAKE)
    r = invoke(out, "run", "First idea", *FAKE, input="n\n")
    assert r.exit_code == 0, r.output
    assert "Continue? [Y/n]: n" in r.output and "is left as it is" in r.output
    ids = SessionStore(out).ids()
    assert len(ids) == 2
    assert SessionStore(out).load(ids[0]).meta.status == "FAILED"
    assert SessionStore(out).load(ids[1]).meta.idea == "First idea"
    assert SessionStore(out).load(ids[1]).meta.status == "COMPLETE"


def test_run_without_idea_and_nothing_to_resume_is_usage_error(out, fakes):
    r = invoke(out, "run", *FAKE)
    assert r.exit_code == 2 and "give an IDEA" in r.output


def test_resume_named_session(out, fakes):
    fakes.image.fail(2, StageError("nope"))
    invoke(out, "run", "idea", *FAKE)
    sid = SessionStore(out).ids()[0]
    r = invoke(out, "resume", sid)
    assert r.exit_code == 0, r.output
    r = invoke(out, "resume", "../../etc")
    assert r.exit_code == 2 and "not a session id" in r.output  # a usage error (issue 18)


def test_unknown_backend_and_bad_option_are_usage_errors(out, fakes):
    r = invoke(out, "run", "idea", "--new", "--image-gen", "dalle")
    assert r.exit_code == 2
    assert "unknown image generator 'dalle'" in r.output and "storyboard" in r.output
    r = invoke(out, "run", "idea", "--new", *FAKE, "-o", "image.delay=later")
    assert r.exit_code == 2 and "delay" in r.output
    r = invoke(out, "run", "idea", "--new", *FAKE, "-o", "novalue")
    assert r.exit_code == 2 and "key=value" in r.output
    assert SessionStore(out).ids() == []  # nothing created for a bad command line


def test_sessions_list_and_view_show_each_state(out, fakes):
    # COMPLETE
    invoke(out, "run", "Complete one", "--new", *FAKE)
    # FAILED with a mix: shot 1 DONE, shot 2 IMG (video failed), shot 3 FAILED image
    fakes.video.fail(2, StageError("render broke"))
    fakes.image.fail(3, StageError("image broke"))
    invoke(out, "run", "Mixed one", "--new", *FAKE)
    # NEW: created, nothing done
    SessionStore(out).create("Fresh one").close()

    r = invoke(out, "sessions", "list")
    assert r.exit_code == 0, r.output
    for text in ("COMPLETE", "FAILED", "NEW", "Complete one", "Mixed one", "3/3", "1/3"):
        assert text in r.output
    listing = json.loads(invoke(out, "sessions", "list", "--json").output)
    assert [s["status"] for s in listing] == ["NEW", "FAILED", "COMPLETE"]  # newest first

    ids = SessionStore(out).ids()
    view = invoke(out, "sessions", "view", ids[1]).output
    assert "Status: FAILED" in view
    assert "Images   [" in view and "(2/3)" in view
    assert "[DONE]   Shot 1:" in view
    assert "[FAILED] Shot 2:" in view and "render broke" in view
    assert "[FAILED] Shot 3:" in view and "image broke" in view
    done = invoke(out, "sessions", "view", ids[0]).output
    assert "Status: COMPLETE" in done and "100%  ✓ (3/3)" in done and "Film:" in done
    new = invoke(out, "sessions", "view", ids[2]).output
    assert "Status: NEW" in new and "Story    [░░░░" in new


def test_sessions_view_after_images_only_shows_img(out, fakes):
    fakes.video.fail(1, StageError("x"))
    fakes.video.fail(2, StageError("x"))
    fakes.video.fail(3, StageError("x"))
    invoke(out, "run", "idea", "--new", *FAKE)
    sid = SessionStore(out).ids()[0]
    s = SessionStore(out).open(sid)
    s.reset_shot("videos", 1, "pretend never tried")  # a shot with image done, video todo
    s.close()
    view = invoke(out, "sessions", "view", sid).output
    assert "[IMG]    Shot 1:" in view


def test_sessions_view_unknown_and_corrupt(out, fakes):
    r = invoke(out, "sessions", "view", "session_20990101_000000")
    assert r.exit_code == 2 and "no session" in r.output  # a usage error (issue 18)
    invoke(out, "run", "idea", "--new", *FAKE)
    sid = SessionStore(out).ids()[0]
    meta = out / "sessions" / sid / f"{sid}_meta.json"
    meta.write_text("{")
    r = invoke(out, "sessions", "view", sid)
    assert r.exit_code == 1 and f"{sid}_meta.json is unreadable" in r.output
    assert meta.read_text() == "{"
    r = invoke(out, "sessions", "list")
    assert "UNREADABLE" in r.output


def test_sessions_help(out):
    r = CliRunner().invoke(cli, ["sessions", "help"])
    assert r.exit_code == 0 and "reelforge sessions list" in r.output and "view" in r.output


def test_plugins_lists_builtins_and_backends(fakes):
    r = CliRunner().invoke(cli, ["plugins"])
    assert r.exit_code == 0
    assert "story LLM: offline" in r.output
    assert "image generator: storyboard" in r.output
    assert "renderer: kenburns" in r.output
    data = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
    names = {p["name"] for p in data}
    assert {"story_offline", "image_storyboard", "kenburns"} <= names
