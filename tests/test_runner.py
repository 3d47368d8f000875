"""The runner: order, skipping, retries, failures, verification, adoption, pipelining."""

from __future__ import annotations

import threading

import pytest

from reelforge.errors import ConfigError, SessionCorruptError, StageError, TransientError
from reelforge.engine.runner import Runner
from reelforge.store.meta import FAILED
from reelforge.store.sessions import SessionStore
from reelforge.testing import FakeImageGenerator, FakeRenderer, run_session
from support import Recorder


def test_full_run_then_resume_does_nothing_again(out, fakes):
    rec = Recorder()
    result = run_session(out, "A lighthouse", backends=fakes.backends, plugins=(rec,))
    assert result.ok and result.film.is_file()
    assert [c[0] for c in fakes.story.calls] == ["write_story", "build_scene_graph", "plan_shots"]
    assert sorted(c[0] for c in fakes.image.calls) == [1, 2, 3]
    stages = [e[1] for e in rec.events if e[0] == "stage_finished"]
    assert stages == ["story", "scene_graph", "shots", "images", "videos", "assemble"]
    assert rec.events[0] == ("session_started",) and rec.events[-1] == ("session_completed",)
    assert ("shot_progress", "images", 1, 0.5, "drawing") in rec.events
    assert fakes.story.closed and fakes.image.closed and fakes.video.closed

    rec2 = Recorder()
    again = run_session(out, "", backends=fakes.backends, plugins=(rec2,), resume=result.session_id)
    assert again.ok
    assert len(fakes.story.calls) == 3 and len(fakes.image.calls) == 3 and len(fakes.video.calls) == 3
    assert ("shot_skipped", "videos", 2, "done") in rec2.events


def test_transient_errors_are_retried_and_attempts_counted(out, fakes):
    fakes.image.fail(2, TransientError("flaky"), TransientError("flaky again"))
    result = run_session(out, "idea", backends=fakes.backends)
    assert result.ok
    meta = SessionStore(out).load(result.session_id).meta
    assert meta.shot(2).image.attempts == 3
    assert meta.shot(1).image.attempts == 1


def test_permanent_failure_marks_shot_failed_others_go_on_and_resume_retries_it(out, fakes):
    fakes.video.fail(2, StageError("model exploded"))
    rec = Recorder()
    result = run_session(out, "idea", backends=fakes.backends, plugins=(rec,))
    assert result.status == FAILED
    assert any("shot 2 (videos): model exploded" in line for line in result.failed)
    view = SessionStore(out).load(result.session_id)
    assert view.meta.status == FAILED
    assert [s.indicator for s in view.meta.shots] == ["DONE", "FAILED", "DONE"]
    assert view.meta.shot(2).video.last_error == "model exploded"
    assert len([c for c in fakes.video.calls if c[0] == 2]) == 1  # permanent: not retried
    assert ("stage_failed", "videos") in rec.events
    assert not (view.path / "film.mp4").exists()

    again = run_session(out, "", backends=fakes.backends, resume=result.session_id)
    assert again.ok
    assert sorted(c[0] for c in fakes.video.calls) == [1, 2, 2, 3]  # only shot 2 redone
    assert len(fakes.image.calls) == 3


def test_missing_or_damaged_artifacts_are_redone_unvouched_files_set_aside(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends)
    store = SessionStore(out)
    path = result.path
    (path / "images" / "shot_001.png").unlink()               # missing
    (path / "videos" / "shot_002.mp4").write_bytes(b"\x00" * 50)  # damaged
    # shot 3's video: a valid file, but no done record vouches for it (nothing proves which
    # inputs made it): it is kept aside and made again, never adopted
    s = store.open(result.session_id)
    s.reset_shot("videos", 3, "simulated")
    s.close()
    rec = Recorder()
    again = run_session(out, "", backends=fakes.backends, resume=result.session_id, plugins=(rec,))
    assert again.ok
    assert sorted(c[0] for c in fakes.image.calls) == [1, 1, 2, 3]
    # shot 1's image was made again, byte-identical (deterministic fake), so its video's
    # inputs are unchanged and it is kept; 2 was damaged and 3 unvouched: both redone
    assert sorted(c[0] for c in fakes.video.calls) == [1, 2, 2, 3, 3]
    kept = sorted(p.name for p in (path / "videos" / ".replaced").iterdir())
    assert [n[:8] for n in kept] == ["shot_002", "shot_003"]  # both kept aside, not deleted


def test_a_commit_cut_short_between_journal_and_rename_is_finished(out, fakes, monkeypatch):
    """The done record is journalled before the rename: a crash between the two leaves the
    file in scratch, and the next run finishes the rename instead of rendering again."""
    import os
    import shutil

    import os as session_os  # patched process-wide, as the store calls it

    result = run_session(out, "idea", backends=fakes.backends)
    store = SessionStore(out)
    s = store.open(result.session_id)
    clip = result.path / "videos" / "shot_003.mp4"
    produced = s.work_dir("videos", 3) / "made.mp4"
    shutil.copy(clip, produced)
    s.reset_shot("videos", 3, "simulated")
    os.unlink(clip)

    class Crash(Exception):
        pass

    def crash(src, dst):
        raise Crash

    monkeypatch.setattr(session_os, "replace", crash)
    with pytest.raises(Crash):
        s.mark_shot_done("videos", 3, produced, backend="fake", seed=0, seconds=1.0,
                         fingerprint=s.shot_state(3).video.fingerprint or "x")
    monkeypatch.undo()
    s.close()
    assert not clip.exists() and produced.exists()

    rec = Recorder()
    fp_before = len(fakes.video.calls)
    again = run_session(out, "", backends=fakes.backends, resume=result.session_id, plugins=(rec,))
    assert again.ok
    assert ("shot_skipped", "videos", 3, "adopted") in rec.events
    assert len(fakes.video.calls) == fp_before  # not rendered again
    assert clip.is_file() and not produced.exists()


def test_changed_option_changes_fingerprint_and_redoes_shots(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends)
    # delay is marked fingerprint=False: changing it redoes nothing
    again = run_session(out, "", backends=fakes.backends, resume=result.session_id,
                        options=["image.delay=0.01"])
    assert again.ok and len(fakes.image.calls) == 3
    # tint changes the pictures: every image is redone, and so is every clip made from one
    third = run_session(out, "", backends=fakes.backends, resume=result.session_id,
                        options=["image.tint=40"])
    assert third.ok
    assert len(fakes.image.calls) == 6 and len(fakes.video.calls) == 6
    # the old images are kept as takes, with what made them
    assert sorted(p.name for p in (result.path / "images" / "takes").iterdir()) == [
        "shot_001.1.png", "shot_002.1.png", "shot_003.1.png"]
    meta = SessionStore(out).load(result.session_id).meta
    assert [t["n"] for t in meta.shot(1).image.takes] == [1] and meta.shot(1).image.takes[0]["seed"] == 1


def test_videos_start_before_all_images_are_done(out):
    """Pipelining: with a slow image generator, shot 1's clip is rendered while later
    images are still being generated."""
    order = []
    lock = threading.Lock()
    first_clip = threading.Event()

    class SlowImages(FakeImageGenerator):
        def generate(self, shot, job):
            if shot.id == 4:  # the last image waits for the first clip (at most a minute, when
                first_clip.wait(60)  # clips wait for every image: then the order shows it)
            with lock:
                order.append(("image", shot.id))
            return super().generate(shot, job)

    class LoggingRenderer(FakeRenderer):
        def render(self, shot, image, job):
            with lock:
                order.append(("video", shot.id))
            if shot.id == 1:
                first_clip.set()
            return super().render(shot, image, job)

    from reelforge.testing import FakePlugin, Fakes, FakeStoryWriter

    fakes = Fakes(FakeStoryWriter("p", shots=4), SlowImages("p"), LoggingRenderer("p"))
    result = run_session(out, "idea", backends=fakes.backends, plugins=(FakePlugin(fakes),))
    assert result.ok
    assert order.index(("video", 1)) < order.index(("image", 4))


@pytest.mark.parametrize("name", ["story.json", "scenes.json", "shots.json"])
def test_corrupt_step_file_stops_run_and_overwrites_nothing(out, fakes, name):
    fakes.video.fail(3, StageError("leave the session incomplete"))
    result = run_session(out, "idea", backends=fakes.backends)
    shots = result.path / name
    shots.write_text(shots.read_text()[:40])  # truncated
    def files():  # a rewrite shows in the bytes, the inode (replaced) or the mtime (written)
        return {p: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
                for p in result.path.rglob("*") if p.is_file() and ".lock" not in p.name}

    before = files()
    with pytest.raises(SessionCorruptError, match=name):
        run_session(out, "", backends=fakes.backends, resume=result.session_id)
    assert files() == before


def test_story_failure_leaves_session_resumable_at_that_stage(out, fakes):
    fakes.story.enqueue(StageError("LLM said no"))
    with pytest.raises(StageError, match="LLM said no"):
        run_session(out, "idea", backends=fakes.backends)
    sid = SessionStore(out).ids()[0]
    meta = SessionStore(out).load(sid).meta
    assert meta.status == FAILED and meta.steps["story"] == "failed"
    assert run_session(out, "", backends=fakes.backends, resume=sid).ok


def test_unknown_backend_lists_installed(out):
    with pytest.raises(ConfigError, match=r"unknown image generator 'nope'; installed: .*storyboard"):
        Runner(out, backends={"image": "nope"}).validate()


def test_bad_option_names_the_option(out, fakes):
    with pytest.raises(ConfigError, match=r"no option 'colour'"):
        Runner(out, backends=fakes.backends, options=["image.colour=red"]).validate()
    with pytest.raises(ConfigError, match=r"delay"):
        Runner(out, backends=fakes.backends, options=["image.delay=soon"]).validate()
    with pytest.raises(ConfigError, match="no selected backend takes"):
        Runner(out, backends=fakes.backends, options=["bogus=1"]).validate()


def test_backend_choice_and_options_are_recorded_for_resume(out, fakes):
    result = run_session(out, "idea", backends=fakes.backends, options=["story.shots=2"])
    meta = SessionStore(out).load(result.session_id).meta
    assert meta.backends["story"].name == "fake"
    assert meta.backends["story"].options == {"shots": 2, "delay": 0.0}
    assert len(meta.shots) == 2
    assert all(s.video.backend == "fake" and s.video.fingerprint for s in meta.shots)


def test_pytest_fixtures_for_plugin_authors(reelforge_fakes, reelforge_run):
    result = reelforge_run("Fixture idea", backends=reelforge_fakes.backends)
    assert result.ok
    assert [c[0] for c in reelforge_fakes.story.calls][0] == "write_story"


def test_crossfade_transition(out, fakes):
    from reelforge.media.ffmpeg import probe

    cut = run_session(out, "idea", backends=fakes.backends)
    fade = run_session(out, "idea", backends=fakes.backends, transition="crossfade")
    assert fade.ok
    # each crossfade overlaps two clips, so the film is shorter than the cut version
    assert probe(fade.film)["duration"] < probe(cut.film)["duration"] - 0.2


def test_a_broken_observer_warns_but_does_not_stop_the_run(out, fakes):
    from reelforge import hookimpl

    class Broken:
        @hookimpl
        def shot_completed(self, session, stage, shot, artifact):
            raise RuntimeError("observer bug")

    with pytest.warns(RuntimeWarning, match="shot_completed hook failed: RuntimeError: observer bug"):
        result = run_session(out, "idea", backends=fakes.backends, plugins=(Broken(),))
    assert result.ok


def test_story_writer_partial_work_survives_a_failed_stage(out, fakes):
    fakes.story.fail("plan_shots", StageError("part 3 of the plan failed"))
    with pytest.raises(StageError):
        run_session(out, "idea", backends=fakes.backends)
    sid = SessionStore(out).ids()[0]
    assert SessionStore(out).load(sid).meta.step_checkpoints == {"shots": {"tries": 1}}
    rec = Recorder()
    assert run_session(out, "", backends=fakes.backends, resume=sid, plugins=(rec,)).ok
    assert fakes.story.seen_checkpoints == [{}, {"tries": 1}]  # the resumed call saw its parts
    assert ("stage_progress", "shots", 0.5, "planning") in rec.events
    assert SessionStore(out).load(sid).meta.step_checkpoints == {}  # cleared once saved
