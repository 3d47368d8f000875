"""Issue 20 item 5: --continuity last-frame. In each scene a clip starts from the last frame
of the clip before it; the scheduler orders those clips and still runs scenes side by side;
a redo remakes the clips that follow in its scene (and says so first); old sessions resume
as they were; a killed run resumes the chain from the recorded clip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner
from PIL import Image

from reelforge.cli.core import cli
from reelforge.engine import continuity
from reelforge.engine.retry import RetryPolicy
from reelforge.engine.runner import Runner
from reelforge.errors import ConfigError
from reelforge.media.ffmpeg import ffmpeg_exe, last_frame
from reelforge.records import Scene, SceneGraph, Shot, ShotPlan
from reelforge.store.meta import DONE
from reelforge.store.sessions import SessionStore
from reelforge.testing import FakeRenderer, registered, run_session
from support import wait_for_run

ROOT = Path(__file__).resolve().parent.parent
FAKE = ["--story-llm", "fake", "--image-gen", "fake", "--renderer", "fake", "--narrator", "none"]
#: Two scenes: s1 is shots 1, 2, 3; s2 is shots 4, 5.
SCENE_OF = {1: "s1", 2: "s1", 3: "s1", 4: "s2", 5: "s2"}


def two_scenes(fakes) -> None:
    """The next session's plan: shots 1-3 in scene s1, 4-5 in s2; a renderer whose clip
    follows the seed (a redo asks for a new one, issue 18)."""
    fakes.video.options = attrs.evolve(fakes.video.options, seeded=True)
    fakes.story.enqueue(
        SceneGraph(scenes=(Scene(id="s1", order=1, summary="The harbour"),
                           Scene(id="s2", order=2, summary="The lighthouse"))),
        ShotPlan(shots=tuple(Shot(id=i, scene_id=SCENE_OF[i], description=f"Shot {i}",
                                  image_prompt=f"frame {i}", motion_prompt="slow push in",
                                  duration_s=0.4, seed=i) for i in SCENE_OF)))


def invoke(out, *args):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)])


def video_calls(fakes) -> list[int]:
    return [c[0] for c in fakes.video.calls]


def start(out, fakes, mode: str | None = "last-frame", **kw):
    return run_session(out, "A harbour at night", backends=fakes.backends, continuity=mode, **kw)


# -- the last frame --------------------------------------------------------------------

def _clip_red_then_blue(path: Path) -> None:
    graph = "color=c=red:s=64x36:d=1:r=10,drawbox=c=blue:t=fill:enable='gte(t,0.5)',format=yuv420p"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", graph, "-c:v", "libx264",
                    "-preset", "ultrafast", str(path)], check=True)


def test_the_last_frame_is_the_clips_end_and_the_same_bytes_every_time(tmp_path):
    clip = tmp_path / "clip.mp4"
    _clip_red_then_blue(clip)
    first = last_frame(clip, tmp_path / "a.png").read_bytes()
    again = last_frame(clip, tmp_path / "b.png").read_bytes()
    assert first == again
    red, green, blue = Image.open(tmp_path / "a.png").convert("RGB").getpixel((32, 18))
    assert blue > 200 and red < 60, (red, green, blue)  # the blue end, not the red start
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "clip.mp4"]  # no partial left


def test_previous_in_scene_and_followers_follow_plan_order_within_each_scene():
    plan = ShotPlan(shots=tuple(Shot(id=i, scene_id=s, description="d", image_prompt="p", motion_prompt="m",
                                     duration_s=1, seed=i)
                                for i, s in [(1, "a"), (2, "b"), (3, "a"), (4, "a"), (5, "b")]))
    assert continuity.previous_in_scene(plan) == {3: 1, 4: 3, 5: 2}
    assert continuity.followers(plan, 1) == [3, 4]
    assert continuity.followers(plan, 3) == [4]
    assert continuity.followers(plan, 4) == []
    assert continuity.followers(plan, 2) == [5]


# -- scheduling ------------------------------------------------------------------------

class OrderedClips(FakeRenderer):
    """Records when each clip starts and ends, and what picture it got; shot 3's clip (the
    last of scene 1) waits until shot 4's (the first of scene 2) has started."""

    def __init__(self, name: str):
        super().__init__(name, concurrency=2)
        self.events: list[tuple[str, int]] = []
        self.pictures: dict[int, Path] = {}
        self.scene2_started = threading.Event()
        self.released_by_scene2: bool | None = None

    def render(self, shot, image, job):
        with self._lock:
            self.events.append(("start", shot.id))
            self.pictures[shot.id] = Path(image)
        if shot.id == 4:
            self.scene2_started.set()
        if shot.id == 3:
            self.released_by_scene2 = self.scene2_started.wait(120)
        try:
            return super().render(shot, image, job)
        finally:
            with self._lock:
                self.events.append(("end", shot.id))


def test_clips_of_a_scene_wait_for_each_other_and_scenes_run_side_by_side(out, fakes):
    renderer = OrderedClips("fake")
    fakes.video = renderer
    two_scenes(fakes)
    result = start(out, fakes)
    assert result.ok, result.failed
    at = {event: i for i, event in enumerate(renderer.events)}
    for before, after in [(1, 2), (2, 3), (4, 5)]:  # each follows the clip before it in its scene
        assert at[("end", before)] < at[("start", after)], renderer.events
    assert renderer.released_by_scene2 is True  # shot 3 was let go by shot 4 starting ...
    assert at[("start", 4)] < at[("end", 3)], renderer.events  # ... so scene 2 began before scene 1 ended
    # The first clip of a scene starts from its still, the others from the clip before.
    for shot in (1, 4):
        assert renderer.pictures[shot] == result.path / "images" / f"shot_{shot:03d}.png"
    for shot, before in [(2, 1), (3, 2), (5, 4)]:
        assert renderer.pictures[shot].name == f"start_from_shot_{before:03d}.png"
        assert renderer.pictures[shot].parent == result.path / ".work" / "videos" / f"shot_{shot:03d}"
    assert SessionStore(out).load(result.session_id).meta.continuity == "last-frame"
    r = invoke(out, "sessions", "view", result.session_id)
    assert r.exit_code == 0 and "Continuity: last-frame" in r.output, r.output


def test_a_dependent_clip_shows_the_last_frame_of_the_one_before(out, fakes, tmp_path):
    two_scenes(fakes)
    result = start(out, fakes)
    assert result.ok, result.failed
    clips = result.path / "videos"
    # Fake clips show their picture: clip 2's first frame is clip 1's last, not still 2.
    end_of_1 = last_frame(clips / "shot_001.mp4", tmp_path / "end1.png")
    still_2 = Image.open(result.path / "images" / "shot_002.png").convert("RGB").getpixel((32, 18))
    first_of_2 = tmp_path / "first2.png"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(clips / "shot_002.mp4"),
                    "-frames:v", "1", str(first_of_2)], check=True)
    pixel = Image.open(first_of_2).convert("RGB").getpixel((32, 18))
    expected = Image.open(end_of_1).convert("RGB").getpixel((32, 18))
    assert max(abs(a - b) for a, b in zip(pixel, expected)) < 12, (pixel, expected)
    assert max(abs(a - b) for a, b in zip(pixel, still_2)) > 40, (pixel, still_2)


# -- fingerprints ----------------------------------------------------------------------

def test_a_remade_clip_remakes_the_later_clips_of_its_scene_only(out, fakes):
    two_scenes(fakes)
    result = start(out, fakes)
    fakes.video.calls.clear()
    fakes.image.calls.clear()
    r = invoke(out, "shots", "edit", result.session_id, "2", "--duration", "0.2")  # a different clip 2
    assert r.exit_code == 0, r.output
    again = run_session(out, "", backends=fakes.backends, resume=result.session_id)
    assert again.ok, again.failed
    assert video_calls(fakes) == [2, 3]  # not 1, nor scene 2's
    assert fakes.image.calls == []


def test_without_continuity_the_fingerprints_are_what_they_were(out, fakes):
    """A session made before continuity (no key in its meta) resumes with nothing remade: its
    clips' fingerprints are the image-based ones, computed as before."""
    from reelforge.engine import fingerprints
    from reelforge.engine.shots import SHOT_PIPELINE

    two_scenes(fakes)
    result = start(out, fakes, mode=None)
    meta_path = SessionStore(out).load(result.session_id).meta_path
    data = json.loads(meta_path.read_text())
    assert data.get("continuity") is None
    data.pop("continuity", None)  # as a meta written before the key existed
    meta_path.write_text(json.dumps(data))
    session = SessionStore(out).load(result.session_id)
    plan = session.read_step_output("shots")
    backends = Runner(out, backends=fakes.backends)._resolve_backends(session)
    active = {s.name for s in SHOT_PIPELINE if s.kind in backends}
    for shot in plan.shots:
        effective = fingerprints.effective_shot(session, "videos", shot, active)
        expected = fingerprints.of_inputs("videos", effective, backends["video"],
                                          session.shot_state(shot.id).image.sha256)
        assert session.shot_state(shot.id).video.fingerprint == expected
    fakes.video.calls.clear()
    fakes.image.calls.clear()
    again = run_session(out, "", backends=fakes.backends, resume=result.session_id)
    assert again.ok and video_calls(fakes) == [] and fakes.image.calls == []


def test_a_resume_keeps_the_sessions_continuity_and_remakes_nothing(out, fakes):
    two_scenes(fakes)
    result = start(out, fakes)
    fakes.video.calls.clear()
    again = run_session(out, "", backends=fakes.backends, resume=result.session_id)  # no continuity given
    assert again.ok and video_calls(fakes) == []
    assert SessionStore(out).load(result.session_id).meta.continuity == "last-frame"


def test_switching_continuity_off_on_resume_remakes_the_clips_that_followed(out, fakes):
    two_scenes(fakes)
    result = start(out, fakes)
    fakes.video.calls.clear()
    again = run_session(out, "", backends=fakes.backends, resume=result.session_id, continuity="none")
    assert again.ok
    assert sorted(video_calls(fakes)) == [2, 3, 5]  # now from their own stills
    assert SessionStore(out).load(result.session_id).meta.continuity is None


# -- redo --------------------------------------------------------------------------------

def redone(out, fakes, shot: int, stage: str):
    """A finished two-scene session, then `redo --shot SHOT --stage STAGE` on it (the fakes'
    calls are counted from the redo)."""
    two_scenes(fakes)
    result = start(out, fakes)
    fakes.video.calls.clear()
    fakes.image.calls.clear()
    r = invoke(out, "redo", result.session_id, "--shot", str(shot), "--stage", stage, *FAKE)
    assert r.exit_code == 0, r.output
    return result, r

def test_redo_of_a_clip_says_which_clips_follow_and_remakes_exactly_those(out, fakes):
    result, r = redone(out, fakes, 1, "video")
    said = "Continuity: shots 2 and 3 follow from shot 1's last frame and will be made again."
    assert said in r.output
    assert r.output.index(said) < r.output.index("COMPLETE")  # said before it starts
    assert video_calls(fakes) == [1, 2, 3] and fakes.image.calls == []
    meta = SessionStore(out).load(result.session_id).meta
    assert all(meta.shot(i).video.state == DONE for i in SCENE_OF)
    # Clip 1 is new (its seed); clips 2 and 3 were made again from its last frame, which is
    # the same picture here, so they came out byte for byte as before: kept once, never as
    # a second take (issue 18).
    assert [len(meta.shot(i).video.takes) for i in SCENE_OF] == [1, 0, 0, 0, 0]


def test_redo_of_the_first_image_of_a_scene_remakes_its_clip_and_those_after(out, fakes):
    _, r = redone(out, fakes, 4, "image")
    assert ("shot 4's clip starts from its image, and shot 5 follows from shot 4's last frame: "
            "the clips of shots 4 and 5 will be made again.") in " ".join(r.output.split())
    assert [c[0] for c in fakes.image.calls] == [4]
    assert video_calls(fakes) == [4, 5]


def test_redo_of_a_later_image_says_its_clip_does_not_start_from_it(out, fakes):
    _, r = redone(out, fakes, 2, "image")
    assert "shot 2's clip starts from shot 1's last frame, not from its image" in " ".join(r.output.split())
    assert [c[0] for c in fakes.image.calls] == [2]
    assert video_calls(fakes) == []


def test_redo_of_the_last_clip_of_a_scene_says_nothing_more(out, fakes):
    _, r = redone(out, fakes, 3, "video")
    assert "Continuity" not in r.output
    assert video_calls(fakes) == [3]


# -- refusals and settings ----------------------------------------------------------------

class TextToVideo(FakeRenderer):
    starts_from_image = False


def test_a_renderer_that_does_not_start_from_an_image_is_refused(out, fakes):
    t2v = TextToVideo("t2v")

    class Plugin:
        from reelforge import hookimpl

        @hookimpl
        def register_renderers(self, register):
            register(t2v, name="t2v")

    with registered(Plugin()):
        r = invoke(out, "run", "An idea", "--new", "--continuity", "last-frame",
                   *FAKE[:4], "--renderer", "t2v", "--narrator", "none")
        assert r.exit_code == 2, r.output
        assert "--continuity last-frame needs a renderer that starts each clip from an image" in r.output
        assert "'t2v'" in r.output
        assert not (out / "sessions").exists() or SessionStore(out).ids() == []
        with pytest.raises(ConfigError, match="starts_from_image"):
            Runner(out, backends={**fakes.backends, "video": "t2v"}, continuity="last-frame").start("An idea")
        assert SessionStore(out).ids() == []
        # without continuity the same renderer runs as before
        assert run_session(out, "An idea", backends={**fakes.backends, "video": "t2v"}).ok


def test_an_unknown_continuity_is_refused():
    with pytest.raises(ConfigError, match="use none or last-frame"):
        Runner("unused", continuity="first-frame")


def test_reelforge_toml_sets_the_continuity_of_new_sessions_only(out, fakes, tmp_path):
    old = run_session(out, "An older film", backends=fakes.backends)
    config = tmp_path / "reelforge.toml"
    config.write_text('continuity = "last-frame"\n')
    two_scenes(fakes)
    r = invoke(out, "run", "A harbour", "--new", "--config", str(config), *FAKE)
    assert r.exit_code == 0, r.output
    store = SessionStore(out)
    new = [sid for sid in store.ids() if sid != old.session_id]
    assert store.load(new[0]).meta.continuity == "last-frame"
    fakes.video.calls.clear()
    r = invoke(out, "resume", old.session_id, "--config", str(config), *FAKE)
    assert r.exit_code == 0, r.output
    assert store.load(old.session_id).meta.continuity is None and video_calls(fakes) == []
    config.write_text('continuity = "sideways"\n')
    r = invoke(out, "run", "A harbour", "--new", "--config", str(config), *FAKE)
    assert r.exit_code == 2 and "continuity must be one of none, last-frame" in r.output


# -- crash safety ----------------------------------------------------------------------------

def _env(log: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(REELFORGE_PLUGINS="crash_plugin", REELFORGE_FAKE_LOG=str(log), REELFORGE_LOAD_PLUGINS="",
               REELFORGE_RETRY_BACKOFF="0",
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _reelforge(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reelforge", *args, "--story-llm", "crashtest", "--image-gen", "crashtest",
            "--renderer", "crashtest", "--narrator", "none", "--output-dir", str(out)]


def test_a_run_killed_mid_chain_resumes_from_the_recorded_clip(tmp_path):
    """The crash plugin's seven shots are one scene: clip 1 is let through, clip 2 (started
    from clip 1's last frame) is held; SIGKILL; the resume renders 2..7 in order, never 1."""
    out, log = tmp_path / "output", tmp_path / "calls.log"
    proc = subprocess.Popen(_reelforge(out, "run", "A city of traders", "--new", "--continuity", "last-frame"),
                            env={**_env(log), "REELFORGE_CRASH_HOLD": "video:1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def held_in_clip_2() -> bool:
        ids = SessionStore(out).ids()
        if not ids:
            return False
        start = out / "sessions" / ids[-1] / ".work" / "videos" / "shot_002" / "start_from_shot_001.png"
        return start.is_file()  # extracted by clip 2's task, just before its (held) render

    wait_for_run(held_in_clip_2, proc, "clip 2 starting from clip 1's last frame")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    sid = SessionStore(out).ids()[-1]
    meta = SessionStore(out).load(sid).meta
    assert meta.continuity == "last-frame"
    assert {s.id for s in meta.shots if s.video.state == DONE} == {1}

    result = subprocess.run(_reelforge(out, "resume", sid), env=_env(log), capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    clips = [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("video ")]
    assert clips == [1, 2, 3, 4, 5, 6, 7]  # clip 1 once, then the chain from it, in order
    meta = SessionStore(out).load(sid).meta
    assert all(s.video.state == DONE for s in meta.shots) and meta.continuity == "last-frame"
