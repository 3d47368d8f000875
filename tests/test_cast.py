"""The cast step (a portrait per character after the story), shots that use their cast, the
storyboard's figures, `reelforge cast`, and sessions made before the cast existed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from reelforge.cli import cli
from reelforge.engine.calls import BackendCall, call_for, make_call
from reelforge.records import Character, Scene, SceneGraph, Shot, ShotPlan, Story
from reelforge.store.meta import DONE
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session
from support import wait_for_run
from test_crash_recovery import _calls, _env

CAST = (("Oskar", "a cartographer with a white beard"), ("Mira", "a young keeper in a yellow coat"),
        ("Tove", "a fisherwoman with a red scarf"))
#: Shot id -> the characters it names.
NAMES = {1: ("Oskar",), 2: ("Mira", "Tove"), 3: ("Oskar", "Mira"), 4: (), 5: ("Tove",)}


def _story() -> Story:
    return Story(title="The lighthouse", logline="Three people keep a light.", synopsis="They do.",
                 characters=tuple(Character(n, d) for n, d in CAST), style="ink and watercolour")


def _plan() -> ShotPlan:
    kinds = {1: "Wide shot", 2: "Medium shot", 3: "Medium shot", 4: "Wide shot", 5: "Wide shot"}
    return ShotPlan(shots=tuple(
        Shot(id=i, scene_id="s1", description=f"{kinds[i]} of the lighthouse {i}",
             image_prompt=f"{kinds[i]}, lighthouse on a cliff by the sea, frame {i}, ink and watercolour",
             motion_prompt="slow push in", duration_s=0.4, seed=i, characters=NAMES[i]) for i in NAMES))


def _enqueue(fakes) -> None:
    fakes.story.enqueue(_story(), SceneGraph(scenes=(Scene(id="s1", order=1, summary="x", setting="a cliff"),)),
                        _plan())


def invoke(out, *args, input=None):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)], input=input, catch_exceptions=False)


@pytest.fixture
def made(fakes, out):
    """A finished session of five shots and three characters, by an image fake that takes references."""
    fakes.image.takes_references = True
    _enqueue(fakes)
    result = run_session(out, "A lighthouse", backends=fakes.backends)
    assert result.ok
    return result


def test_cast_is_made_once_and_shots_get_their_portraits_in_order(fakes, out, made):
    assert sorted(n for n, _ in fakes.image.portraits) == ["Mira", "Oskar", "Tove"]
    session = SessionStore(out).load(made.session_id)
    for name, _ in CAST:
        art = session.portrait(name)
        assert art.state == DONE and session.check_portrait(name) is None
        assert session.portrait_file(name).parent == session.path / "cast"
    refs = fakes.image.references
    assert [r.name for r in refs[2]] == ["Mira", "Tove"] and [r.name for r in refs[3]] == ["Oskar", "Mira"]
    assert refs[4] == ()
    assert refs[2][0].sha256 == session.portrait("Mira").sha256 and refs[2][0].path.is_file()
    # Run again: nothing is made.
    fakes.image.portraits.clear()
    before = len(fakes.image.calls)
    assert run_session(out, "", backends=fakes.backends, resume=made.session_id).ok
    assert fakes.image.portraits == [] and len(fakes.image.calls) == before


def test_cast_set_remakes_exactly_the_shots_with_that_character(fakes, out, made, tmp_path):
    picture = tmp_path / "mira.jpg"
    Image.new("RGB", (64, 64), (200, 180, 20)).save(picture)
    r = invoke(out, "cast", "set", made.session_id, "Mira", str(picture))
    assert r.exit_code == 0, r.output
    assert "Shots using Mira: 2, 3" in r.output
    fakes.image.calls.clear(), fakes.video.calls.clear()
    film_before = SessionStore(out).load(made.session_id).meta.film.sha256
    assert run_session(out, "", backends=fakes.backends, resume=made.session_id).ok
    assert sorted(c[0] for c in fakes.image.calls) == [2, 3]
    assert sorted(c[0] for c in fakes.video.calls) == [2, 3]
    assert fakes.image.portraits[-3:] != [] and not any(n == "Mira" for n, _ in fakes.image.portraits[3:])
    session = SessionStore(out).load(made.session_id)
    assert session.portrait("Mira").backend == "user" and session.portrait("Mira").takes
    assert session.meta.film.sha256 != film_before
    assert [r.sha256 for r in fakes.image.references[2]][0] == session.portrait("Mira").sha256


def test_backends_without_references_get_none_and_keep_their_fingerprints(fakes, out):
    _enqueue(fakes)
    result = run_session(out, "A lighthouse", backends=fakes.backends)
    assert result.ok and all(refs == () for refs in fakes.image.references.values())
    picture = out.parent / "new.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(picture)
    assert invoke(out, "cast", "set", result.session_id, "Oskar", str(picture)).exit_code == 0
    fakes.image.calls.clear()
    assert run_session(out, "", backends=fakes.backends, resume=result.session_id).ok
    assert fakes.image.calls == []


def test_cast_cli_show_and_usage_errors(fakes, out, made, tmp_path):
    r = invoke(out, "cast", "show", made.session_id, "--json")
    assert r.exit_code == 0
    rows = {row["name"]: row for row in json.loads(r.output)["cast"]}
    assert rows["Oskar"]["shots"] == [1, 3] and rows["Tove"]["shots"] == [2, 5]
    assert rows["Mira"]["file"].startswith("cast/") and rows["Mira"]["description"] == CAST[1][1]
    text = invoke(out, "cast", "show", made.session_id).output
    assert "Oskar: a cartographer" in text and "shots: 1, 3" in text
    good = tmp_path / "p.png"
    Image.new("RGB", (32, 32)).save(good)
    r = invoke(out, "cast", "set", made.session_id, "Nobody", str(good))
    assert r.exit_code == 2 and "'Nobody' is not a character of the story" in r.output and "Oskar" in r.output
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    r = invoke(out, "cast", "set", made.session_id, "Mira", str(bad))
    assert r.exit_code == 2 and "not an image Pillow can read" in r.output
    r = invoke(out, "cast", "use", made.session_id, "Mira", "--take", "4")
    assert r.exit_code == 1 and "no take 4" in r.output
    session = SessionStore(out).load(made.session_id)
    assert session.portrait("Mira").backend == "fake"  # nothing changed by the refused commands


def test_cast_redo_and_use_take(fakes, out, made):
    session = SessionStore(out).load(made.session_id)
    first = session.portrait("Tove").sha256
    assert invoke(out, "cast", "redo", made.session_id, "Tove", "--seed", "7").exit_code == 0
    fakes.image.portraits.clear(), fakes.image.calls.clear()
    assert run_session(out, "", backends=fakes.backends, resume=made.session_id).ok
    assert [n for n, _ in fakes.image.portraits] == ["Tove"]
    assert sorted(c[0] for c in fakes.image.calls) == [2, 5]
    session = SessionStore(out).load(made.session_id)
    assert session.portrait("Tove").seed == 7 and session.portrait("Tove").sha256 != first
    assert invoke(out, "cast", "use", made.session_id, "Tove", "--take", "1").exit_code == 0
    fakes.image.portraits.clear(), fakes.image.calls.clear()
    assert run_session(out, "", backends=fakes.backends, resume=made.session_id).ok
    assert fakes.image.portraits == []  # the chosen take is kept
    session = SessionStore(out).load(made.session_id)
    assert session.portrait("Tove").sha256 == first and session.portrait("Tove").pinned
    # Shots 2 and 5 were drawn from that portrait before: their takes come back, nothing is drawn.
    assert fakes.image.calls == []


def test_a_session_made_before_the_cast_resumes_without_remaking_anything(fakes, out, monkeypatch):
    import reelforge.engine.cast as cast_step

    fakes.image.takes_references = True
    _enqueue(fakes)
    with monkeypatch.context() as m:  # the code before the cast step: no portraits
        m.setattr(cast_step, "make_cast", lambda *a, **k: None)
        result = run_session(out, "A lighthouse", backends=fakes.backends)
    assert result.ok
    session = SessionStore(out).load(result.session_id)
    data = json.loads(session.meta_path.read_text())
    del data["cast"]  # as an older reelforge wrote it
    session.meta_path.write_text(json.dumps(data))
    assert SessionStore(out).load(result.session_id).meta.cast is None
    fakes.image.calls.clear(), fakes.video.calls.clear()
    assert run_session(out, "", backends=fakes.backends, resume=result.session_id).ok
    assert fakes.image.portraits == [] and fakes.image.calls == [] and fakes.video.calls == []
    assert "made before the cast step" in invoke(out, "cast", "show", result.session_id).output


def test_backend_call_carries_references_to_another_process(fakes, out, made):
    session = SessionStore(out).load(made.session_id)
    shot = next(s for s in session.read_step_output("shots").shots if s.id == 3)
    from reelforge.engine.cast import references_for

    refs = references_for(session, shot)
    backend = type("B", (), {"name": "fake", "public_options": {}})()
    call = call_for(session, "images", "image", backend, shot, 1, None, refs)
    assert [r["path"] for r in call.references] == [r.path.relative_to(session.path).as_posix() for r in refs]
    again = BackendCall.from_dict(json.loads(json.dumps(call.to_dict())))
    fakes.image.takes_references = True
    make_call(again, fakes.image, cancelled=__import__("threading").Event(), save=lambda d: None)
    assert fakes.image.references[3] == refs


def test_cast_step_survives_sigkill_no_portrait_made_twice(tmp_path):
    out, log = tmp_path / "output", tmp_path / "calls.log"
    cmd = [sys.executable, "-m", "reelforge", "run", "--story-llm", "crashcast", "--image-gen", "crashtest",
           "--renderer", "crashtest", "--output-dir", str(out)]
    proc = subprocess.Popen([*cmd, "A lighthouse", "--new"], env={**_env(log), "REELFORGE_CRASH_HOLD": "portrait:2"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def portraits_done() -> set[str]:
        store = SessionStore(out)
        try:
            cast = store.load(store.ids()[-1]).meta.cast or {}
        except Exception:
            return set()
        return {name for name, art in cast.items() if art.state == DONE}

    wait_for_run(lambda: len(portraits_done()) >= 2, proc, "two portraits", 120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    before = portraits_done()
    assert len(before) == 2
    result = subprocess.run(cmd, env=_env(log), input="y\n", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = _calls(log)
    for name, _ in CAST:
        assert calls[("portrait", name)] == 1, f"{name}'s portrait was made {calls[('portrait', name)]} times"
    assert portraits_done() == {n for n, _ in CAST}


def _storyboard_frames(tmp_path):
    """Portrait cards of the three characters, then the five shots drawn with them."""
    import threading

    from reelforge.engine.cast import portrait_shot
    from reelforge.plugins.image_gen.storyboard import StoryboardGenerator, StoryboardOptions
    from reelforge.protocols import Reference, ShotJob
    from reelforge.store.safefs import sha256_file

    gen = StoryboardGenerator(StoryboardOptions(width=640, height=360))

    def job(stage, shot, refs=()):
        work = tmp_path / stage / str(shot.id)
        work.mkdir(parents=True, exist_ok=True)
        return ShotJob(session_id="s", stage=stage, shot=shot, attempt=1, work_dir=work, checkpoint={},
                       cancelled=threading.Event(), save=lambda d: None, references=tuple(refs))

    story = _story()
    refs = {}
    for i, character in enumerate(story.characters, start=1):
        shot = portrait_shot(story, character, i, 1000 + i)
        path = gen.generate(shot, job("cast", shot))
        refs[character.name] = Reference(character.name, path, sha256_file(path))
    frames = {}
    for shot in _plan().shots:
        path = gen.generate(shot, job("images", shot, [refs[n] for n in shot.characters]))
        frames[shot.id] = Image.open(path).convert("RGB")
    return refs, frames


def test_storyboard_draws_each_character_as_themselves(tmp_path):
    from reelforge.plugins.image_gen.storyboard.figures import identity_of

    refs, frames = _storyboard_frames(tmp_path)
    ids = {name: identity_of(ref.path, ref.sha256) for name, ref in refs.items()}
    assert len({i.colour for i in ids.values()}) == 3 and len({i.shape for i in ids.values()}) == 3

    def pixels_of(frame, colour):
        return sum(1 for p in frame.get_flattened_data() if max(abs(a - b) for a, b in zip(p, colour)) <= 2)

    for shot_id, names in NAMES.items():
        for name, identity in ids.items():
            count = pixels_of(frames[shot_id], identity.colour)
            if name in names:
                assert count > 50, f"{name} is not drawn in shot {shot_id}"
            else:
                assert count == 0, f"{name} is drawn in shot {shot_id}, which does not name them"

    def mask_shape(frame, colour):
        box = Image.new("L", frame.size)
        box.putdata([255 if max(abs(a - b) for a, b in zip(p, colour)) <= 2 else 0 for p in frame.get_flattened_data()])
        left, top, right, bottom = box.getbbox()
        return (right - left) / (bottom - top)

    # Mira (medium shots 2 and 3) keeps her silhouette; Tove is drawn with another one in shot 2.
    mira = ids["Mira"].colour
    assert abs(mask_shape(frames[2], mira) - mask_shape(frames[3], mira)) < 0.05
    assert abs(mask_shape(frames[2], mira) - mask_shape(frames[2], ids["Tove"].colour)) > 0.1


def test_the_bundle_carries_the_cast(fakes, out, made, tmp_path):
    r = invoke(out, "export", made.session_id, "--bundle", str(tmp_path / "b"))
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    cast = {row["name"]: row for row in manifest["cast"]}
    assert cast["Oskar"]["shots"] == [1, 3] and cast["Mira"]["shots"] == [2, 3]
    for row in cast.values():
        assert (tmp_path / "b" / row["portrait"]).is_file() and row["portrait"].startswith("cast/")
    timeline = (tmp_path / "b" / "timeline.otio").read_text()
    assert "cast/" not in timeline
