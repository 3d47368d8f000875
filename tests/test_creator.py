"""Issue 11, the creator's loop: redo one shot, edit shots, keep and choose takes, the review
gate, the budget guard, and the backend calls each of them costs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.errors import ConfigError, SessionLockedError
from reelforge.engine.runner import Runner
from reelforge.engine.retry import RetryPolicy
from reelforge.store.meta import AWAITING_REVIEW, COMPLETE, IN_PROGRESS
from reelforge.store.safefs import sha256_file
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session

FAKE = ["--story-llm", "fake", "--image-gen", "fake", "--renderer", "fake", "--narrator", "none"]


def invoke(out, *args, input=None):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)], input=input)


def calls(fakes) -> dict[str, list[int]]:
    return {"images": sorted(c[0] for c in fakes.image.calls),
            "videos": sorted(c[0] for c in fakes.video.calls)}


def clear(fakes) -> None:
    fakes.image.calls.clear()
    fakes.video.calls.clear()


def test_editing_two_shots_remakes_their_images_clips_and_the_film_only(out, fakes):
    fakes.story.options = fakes.story.Options(shots=5)
    r = invoke(out, "run", "A lighthouse", "--new", *FAKE)
    assert r.exit_code == 0, r.output
    sid = SessionStore(out).ids()[0]
    path = out / "sessions" / sid
    film = sha256_file(path / "film.mp4")
    clear(fakes)
    for shot, prompt, seed in ((2, "the keeper climbs the stair", "202"), (4, "a gull on the rail", "404")):
        r = invoke(out, "shots", "edit", sid, str(shot), "--image-prompt", prompt, "--seed", seed)
        assert r.exit_code == 0, r.output
        assert f"reelforge resume {sid}" in r.output
    assert calls(fakes) == {"images": [], "videos": []}  # editing runs nothing
    plan = json.loads((path / "shots.json").read_text())["shots"]
    assert plan[1]["image_prompt"] == "the keeper climbs the stair" and plan[3]["seed"] == 404
    r = invoke(out, "resume", sid, *FAKE)
    assert r.exit_code == 0, r.output
    assert calls(fakes) == {"images": [2, 4], "videos": [2, 4]}
    assert sha256_file(path / "film.mp4") != film
    meta = SessionStore(out).load(sid).meta
    assert [t["n"] for t in meta.shot(2).image.takes] == [1] and meta.shot(1).image.takes == []
    assert (path / "images" / "takes" / "shot_002.1.png").is_file()


def test_a_bad_edit_is_refused_and_shots_json_is_untouched(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends)
    before = (result.path / "shots.json").read_bytes()
    r = invoke(out, "shots", "edit", result.session_id, "2", "--duration", "inf")
    assert r.exit_code != 0 and "duration_s" in r.output
    r = invoke(out, "shots", "edit", result.session_id, "9", "--narration", "x")
    assert r.exit_code != 0 and "no shot 9" in r.output and "shots: 1, 2, 3" in r.output
    assert (result.path / "shots.json").read_bytes() == before


def test_redo_with_a_new_seed_remakes_that_shot_and_keeps_the_old_as_a_take(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends)
    clear(fakes)
    again = Runner(out, backends=fakes.backends, retry=RetryPolicy(initial=0)).redo(
        result.session_id, 3, "image", new_seed=True)
    assert again.ok
    assert calls(fakes) == {"images": [3], "videos": [3]}
    meta = SessionStore(out).load(result.session_id).meta
    assert meta.shot(3).image.seed != 3 and meta.shot(3).image.takes[0]["seed"] == 3


def test_a_redo_of_a_backend_that_ignores_the_seed_is_refused_and_changes_nothing(out, fakes):
    # (issue 18: a redo used to make the same clip again and keep a duplicate take.) The fake
    # renderer says uses_seed = False: a redo could only give this clip again.
    result = run_session(out, "idea", backends=fakes.backends)
    plan = (result.path / "shots.json").read_bytes()
    clear(fakes)
    r = invoke(out, "redo", result.session_id, "--shot", "2", "--stage", "video", *FAKE)
    assert r.exit_code == 2 and "whatever its seed" in r.output and "--motion-prompt" in r.output
    assert calls(fakes) == {"images": [], "videos": []}
    meta = SessionStore(out).load(result.session_id).meta
    assert meta.shot(2).video.takes == [] and meta.status == COMPLETE and meta.edited == []
    assert (result.path / "shots.json").read_bytes() == plan


def test_takes_are_listed_and_a_chosen_one_comes_back_without_rendering(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends)
    image_v1 = sha256_file(result.path / "images" / "shot_002.png")
    clip_v1 = sha256_file(result.path / "videos" / "shot_002.mp4")
    Runner(out, backends=fakes.backends, retry=RetryPolicy(initial=0)).redo(
        result.session_id, 2, "image", seed=777)
    assert sha256_file(result.path / "images" / "shot_002.png") != image_v1
    r = invoke(out, "takes", result.session_id, "2")
    assert r.exit_code == 0 and "take 1: images/takes/shot_002.1.png" in r.output
    assert "take 1: videos/takes/shot_002.1.mp4" in r.output
    clear(fakes)
    r = invoke(out, "use", result.session_id, "2", "--take", "1", *FAKE)
    assert r.exit_code == 0, r.output
    # the image comes back, and so does the clip that was made from it: nothing rendered
    assert calls(fakes) == {"images": [], "videos": []}
    assert sha256_file(result.path / "images" / "shot_002.png") == image_v1
    assert sha256_file(result.path / "videos" / "shot_002.mp4") == clip_v1
    meta = SessionStore(out).load(result.session_id).meta
    assert meta.status == COMPLETE and meta.shot(2).image.pinned
    # its seed went back into shots.json; the chosen take is kept on the next resume
    assert json.loads((result.path / "shots.json").read_text())["shots"][1]["seed"] == 2
    again = run_session(out, "", backends=fakes.backends, resume=result.session_id)
    assert again.ok and calls(fakes) == {"images": [], "videos": []}
    # nothing was ever deleted: the seed-777 image and clip are takes now
    assert len(list((result.path / "images" / "takes").iterdir())) == 1
    assert len(list((result.path / "videos" / "takes").iterdir())) == 1
    r = invoke(out, "use", result.session_id, "2", "--take", "9", *FAKE)
    assert r.exit_code == 2 and "no image take 9" in r.output  # a usage error (issue 18)


def test_the_review_gate_stops_after_the_images_until_approved(out, fakes):
    r = invoke(out, "run", "idea", "--new", "--review", "images", *FAKE)
    assert r.exit_code == 0, r.output
    assert "AWAITING REVIEW" in r.output and "reelforge approve" in r.output
    sid = SessionStore(out).ids()[0]
    meta = SessionStore(out).load(sid).meta
    assert meta.status == AWAITING_REVIEW and calls(fakes) == {"images": [1, 2, 3], "videos": []}
    # a resume before approval spends nothing on clips
    r = invoke(out, "resume", sid, *FAKE)
    assert r.exit_code == 0 and calls(fakes)["videos"] == []
    r = invoke(out, "redo", sid, "--shot", "1", "--new-seed", *FAKE)  # fix one image first
    assert r.exit_code == 0 and calls(fakes) == {"images": [1, 1, 2, 3], "videos": []}
    r = invoke(out, "approve", sid, *FAKE)
    assert r.exit_code == 0, r.output
    assert calls(fakes)["videos"] == [1, 2, 3]
    assert SessionStore(out).load(sid).meta.status == COMPLETE


def test_a_running_session_refuses_redo_edit_and_use(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends)
    held = SessionStore(out).open(result.session_id)
    try:
        with pytest.raises(SessionLockedError):
            Runner(out, backends=fakes.backends).redo(result.session_id, 1)
        r = invoke(out, "shots", "edit", result.session_id, "1", "--narration", "x")
        assert r.exit_code == 1 and "being run by another" in r.output
        r = invoke(out, "use", result.session_id, "1", "--take", "1", *FAKE)
        assert r.exit_code == 1 and "being run by another" in r.output
    finally:
        held.close()


def test_the_budget_stops_before_work_the_averages_say_would_exceed_it(out, fakes):
    fakes.image.options = fakes.image.Options(delay=0.2)
    first = run_session(out, "idea", backends=fakes.backends)
    meta = SessionStore(out).load(first.session_id).meta
    assert all(s.image.backend_seconds and s.image.backend_seconds >= 0.2 for s in meta.shots)
    # new seeds for every shot: three images of the recorded average each, and a budget of one
    # and a half: however long the images took on this machine, one fits and a second does not
    average = sum(s.image.backend_seconds for s in meta.shots) / len(meta.shots)
    budget = round(1.5 * average, 3)
    for shot in (1, 2, 3):
        invoke(out, "shots", "edit", first.session_id, str(shot), "--seed", str(100 + shot))
    clear(fakes)
    stopped = run_session(out, "", backends=fakes.backends, resume=first.session_id, budget=budget)
    assert stopped.status == "BUDGET" and f"budget of {budget:g}" in stopped.failed[0]
    assert len(fakes.image.calls) == 1  # one fitted; the averages said a second would not
    assert SessionStore(out).load(first.session_id).meta.status == IN_PROGRESS
    done = run_session(out, "", backends=fakes.backends, resume=first.session_id)
    assert done.ok and len(fakes.image.calls) == 3


def test_bad_creator_arguments_are_clear(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends)
    with pytest.raises(ConfigError, match="unknown stage"):
        Runner(out, backends=fakes.backends).redo(result.session_id, 1, "sound")
    r = invoke(out, "redo", result.session_id, "--shot", "1", "--seed", "3", "--new-seed", *FAKE)
    assert r.exit_code == 2 and "not both" in r.output
    r = invoke(out, "approve", result.session_id, *FAKE)
    assert r.exit_code == 1 and "was not started with --review" in r.output


def test_takes_are_deleted_only_with_prune(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends)
    Runner(out, backends=fakes.backends, retry=RetryPolicy(initial=0)).redo(result.session_id, 1, seed=9)
    takes = result.path / "images" / "takes"
    assert len(list(takes.iterdir())) == 1
    r = invoke(out, "takes", result.session_id, "1", "--prune", input="n\n")
    assert "Nothing deleted" in r.output and len(list(takes.iterdir())) == 1
    r = invoke(out, "takes", result.session_id, "1", "--prune", "--yes")
    assert r.exit_code == 0 and "Deleted 2 take(s)" in r.output  # the image's and the clip's
    assert not list(takes.iterdir())
    meta = SessionStore(out).load(result.session_id).meta
    assert meta.shot(1).image.takes == [] and meta.shot(1).video.takes == []
