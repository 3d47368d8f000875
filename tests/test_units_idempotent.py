"""Every unit of work commits through the store idempotently (issue 16, item 3): running a unit
twice against the same session records it once, and so does running it again after a crash.

The units, as the code names them: the LLM steps ``story``, ``scene_graph`` and ``shots``
(reelforge.engine.steps), one shot stage for one shot (``images``, ``narration``, ``videos``;
reelforge.engine.shots.ShotRun), and the film (reelforge.engine.film_unit.assemble). They run
here one at a time against one open session, with the offline backends wrapped by a small
plugin that counts every backend call; every journal record the store appends is seen too.

A crash is a :class:`Killed` raised at the exact point a SIGKILL would stop the process,
followed by :func:`crash`: the journal is left as appended (not folded into the meta), the
lock is released (the OS does that for a killed process), and the session is opened again
the way the next run opens it. The windows a crash can leave (see reelforge.store.shots and
reelforge.store.session): a shot's file made in scratch with no done record; a done record
journalled with the rename into place not done; a step's file written with the meta not
updated; the film in place with its record not written."""

from __future__ import annotations

import collections
import hashlib
import shutil
from pathlib import Path

import attrs
import pytest
from support import Recorder

import reelforge
from reelforge.engine import film_unit, steps
from reelforge.engine.backends import build_backends, choices, close_backends
from reelforge.engine.base import Unit
from reelforge.engine.retry import RetryPolicy
from reelforge.engine.runner import Runner
from reelforge.engine.shots import ShotRun, commit_shot
from reelforge.media import film
from reelforge.plugins.image_gen.storyboard import StoryboardGenerator
from reelforge.plugins.kenburns import KenBurnsRenderer
from reelforge.plugins.story_llm.offline import OfflinePlanner
from reelforge.store import session as session_module
from reelforge.store import shots as store_shots
from reelforge.store.meta import COMPLETE, DONE
from reelforge.store.session import Session
from reelforge.testing import FakeNarrator, registered, run_session

IDEA = "A clockmaker repairs the town's last tower clock"
STEPS = ("story", "scene_graph", "shots")
SHOT_STAGES = ("images", "narration", "videos")

#: Backend calls, by (method, shot id or None), and the attempt number each call was given.
CALLS: collections.Counter = collections.Counter()
ATTEMPTS: dict[tuple[str, int], list[int]] = collections.defaultdict(list)


def _count(method: str, shot=None, job=None) -> None:
    CALLS[(method, getattr(shot, "id", None))] += 1
    if job is not None:
        ATTEMPTS[(method, shot.id)].append(job.attempt)


class CountedPlanner(OfflinePlanner):
    name = "counted"

    def write_story(self, idea):
        _count("write_story")
        return super().write_story(idea)

    def build_scene_graph(self, story):
        _count("build_scene_graph")
        return super().build_scene_graph(story)

    def plan_shots(self, story, scenes):
        _count("plan_shots")
        return super().plan_shots(story, scenes)


class CountedStoryboard(StoryboardGenerator):
    name = "counted"

    def generate(self, shot, job):
        _count("portrait" if job.stage == "cast" else "generate", shot, job)
        return super().generate(shot, job)


class CountedKenBurns(KenBurnsRenderer):
    name = "counted"

    def render(self, shot, image, job):
        _count("render", shot, job)
        return super().render(shot, image, job)


class CountedVoice(FakeNarrator):
    """The fake narrator (deterministic, unlike eSpeak), counted."""

    name = "counted"

    def narrate(self, shot, job):
        _count("narrate", shot, job)
        return super().narrate(shot, job)


class CountingPlugin:
    @reelforge.hookimpl
    def register_story_llms(self, register):
        register(CountedPlanner)

    @reelforge.hookimpl
    def register_image_generators(self, register):
        register(CountedStoryboard)

    @reelforge.hookimpl
    def register_renderers(self, register):
        register(CountedKenBurns)

    @reelforge.hookimpl
    def register_narrators(self, register):
        register(CountedVoice())  # a fake stands in for its class: the runner gets this instance back


COUNTED = {"story": "counted", "image": "counted", "video": "counted", "narration": "counted"}
OPTIONS = {"shots": 2, "shot_seconds": 0.5, "width": 128, "height": 72, "fps": 10, "preset": "ultrafast"}
METHOD = {"images": "generate", "narration": "narrate", "videos": "render"}
WRITER = {"story": "write_story", "scene_graph": "build_scene_graph", "shots": "plan_shots"}


class Killed(BaseException):
    """The process died here (a SIGKILL): nothing after this point ran."""


@attrs.define
class Env:
    runner: Runner
    session: Session
    backends: dict
    events: list = attrs.Factory(list)
    "Every journal record the store appended, across crashes."
    step_records: collections.Counter = attrs.Factory(collections.Counter)
    "Per step: saves that completed, and adoptions that changed the meta."
    films_made: list = attrs.Factory(list)
    films_recorded: list = attrs.Factory(list)
    hooks: Recorder = attrs.Factory(Recorder)
    "The lifecycle hooks called."

    def said(self, *event) -> int:
        return self.hooks.events.count(event)

    def done_records(self, stage: str, shot_id: int) -> int:
        return sum(1 for e in self.events if e.get("op") == "shot" and e["stage"] == stage
                   and e["shot"] == shot_id and e["set"].get("state") == DONE)

    @property
    def plan(self):
        return self.session.read_step_output("shots")

    def write_all(self, saved: dict | None = None):
        """The three LLM steps, given what the session held before (``saved``; None: nothing)."""
        saved = saved if saved is not None else dict.fromkeys(STEPS)
        return steps.write_all(self.runner, self.session, self.backends["story"].instance, saved)

    def shot_unit(self, stage: str, shot_id: int) -> None:
        """One shot stage for one shot, as an engine runs it (a run of its own each time)."""
        work = ShotRun(self.runner, self.session, self.plan, self.backends)
        unit = Unit(stage, shot_id)
        task = work.begin(unit)
        if task is not None:
            work.finish(unit, result=task())
        assert not work.outcome.failures, work.outcome.failures

    def all_shot_units(self) -> None:
        for shot in self.plan.shots:
            for stage in SHOT_STAGES:
                self.shot_unit(stage, shot.id)

    def film_unit(self) -> None:
        story = self.session.read_step_output("story")
        chosen = film_unit.settings(self.runner, self.session)
        film_unit.assemble(self.runner, self.session, self.plan, story, chosen, self.backends)

    def crash(self) -> None:
        """What a SIGKILL leaves, then the next run's open: the journal as appended (not folded
        into the meta), the lock released by the OS."""
        s = self.session
        if s._journal is not None:
            s._journal.close()
            s._journal = None
        s._lock_file.release()
        s._lock_file = None
        self.session = self.runner.store.open(s.id)

    def scratch_files(self) -> list[Path]:
        return [p for p in (self.session.path / ".work").rglob("*") if p.is_file()]

    def set_aside(self) -> list[Path]:
        return [p for p in self.session.path.rglob("*") if p.is_file() and ".replaced" in p.parts]


@pytest.fixture
def env(tmp_path, monkeypatch):
    CALLS.clear()
    ATTEMPTS.clear()
    recorded: list = []
    log, save, adopt = Session._log, Session.save_step_output, Session.adopt_step_output
    mark_film_done, make = Session.mark_film_done, film.make

    def spy_log(self, event, **kw):
        recorded.append(event)
        return log(self, event, **kw)

    def spy_save(self, step, value):
        save(self, step, value)
        box.step_records[step] += 1

    def spy_adopt(self, step, value):
        changed = adopt(self, step, value)
        box.step_records[step] += changed
        return changed

    def spy_film_done(self, *args, **kw):
        mark_film_done(self, *args, **kw)
        box.films_recorded.append(self.meta.film.sha256)

    def spy_make(*args, **kw):
        box.films_made.append(args[1])
        return make(*args, **kw)

    monkeypatch.setattr(Session, "_log", spy_log)
    monkeypatch.setattr(Session, "save_step_output", spy_save)
    monkeypatch.setattr(Session, "adopt_step_output", spy_adopt)
    monkeypatch.setattr(Session, "mark_film_done", spy_film_done)
    monkeypatch.setattr(film, "make", spy_make)
    hooks = Recorder()
    with registered(CountingPlugin(), hooks):
        runner = Runner(tmp_path / "out", backends=COUNTED, options=OPTIONS, retry=RetryPolicy(initial=0))
        backends = build_backends(runner.pm, runner.requested, runner.raw_options, None)
        session = runner.store.create(IDEA, backends=choices(backends))
        box = Env(runner, session, backends, recorded, hooks=hooks)
        try:
            yield box
        finally:
            box.session.close()
            close_backends(backends)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the LLM steps -------------------------------------------------------------------------


@pytest.mark.parametrize("fresh", [True, False], ids=["saved-read-again", "saved-read-before-the-first-run"])
def test_each_llm_step_run_twice_is_written_and_recorded_once(env, fresh):
    first = env.write_all()
    for step in STEPS:
        assert env.session.meta.steps[step] == DONE
    files = {step: (env.session.path / steps.STEP_FILES[step][0]).read_bytes() for step in STEPS}
    # Again: with what the store holds now (a resume), or with the inputs of the first run
    # (read before it, when nothing was saved): either way the writer is not asked again.
    saved = {step: env.session.read_step_output(step) for step in STEPS} if fresh else None
    again = env.write_all(saved)
    assert again == first
    for step in STEPS:
        assert CALLS[(WRITER[step], None)] == 1, step
        assert env.step_records[step] == 1, step
        assert (env.session.path / steps.STEP_FILES[step][0]).read_bytes() == files[step]
    assert [s.id for s in env.session.meta.shots] == [1, 2]


@pytest.mark.parametrize("step", STEPS)
def test_an_llm_step_whose_file_was_written_but_not_recorded_is_adopted_not_asked_again(env, monkeypatch, step):
    name = steps.STEP_FILES[step][0]
    write = session_module.atomic_write_text

    def killed_after_the_file(path, text):
        write(path, text)
        if Path(path).name == name:
            raise Killed  # story.json (or scenes.json, shots.json) is on disk; the meta is not written

    monkeypatch.setattr(session_module, "atomic_write_text", killed_after_the_file)
    with pytest.raises(Killed):
        env.write_all()
    monkeypatch.setattr(session_module, "atomic_write_text", write)
    written = (env.session.path / name).read_bytes()
    env.crash()
    assert env.session.meta.steps.get(step) != DONE  # the crash left the file unrecorded

    saved = {s: env.session.read_step_output(s) for s in STEPS}  # as the next run reads them
    env.write_all(saved)
    env.write_all({s: env.session.read_step_output(s) for s in STEPS})  # and once more: a no-op
    for s in STEPS:
        assert CALLS[(WRITER[s], None)] == 1, s
        assert env.step_records[s] == 1, s
        assert env.session.meta.steps[s] == DONE
    assert (env.session.path / name).read_bytes() == written
    assert [s.id for s in env.session.meta.shots] == [1, 2]


# -- one shot stage for one shot ---------------------------------------------------------------


@pytest.mark.parametrize("stage", SHOT_STAGES)
def test_a_shot_stage_run_twice_calls_its_backend_once_and_records_it_once(env, stage):
    env.write_all()
    for before in SHOT_STAGES[:SHOT_STAGES.index(stage)]:
        env.shot_unit(before, 1)  # a clip needs its image and voice
    env.shot_unit(stage, 1)
    art = env.session.shot_state(1).artifact(stage)
    path, digest = env.session.path / art.path, art.sha256
    env.shot_unit(stage, 1)
    assert CALLS[(METHOD[stage], 1)] == 1
    assert env.done_records(stage, 1) == 1
    assert env.said("shot_completed", stage, 1) == 1 and env.said("shot_skipped", stage, 1, "done") == 1
    art = env.session.shot_state(1).artifact(stage)
    assert art.state == DONE and art.sha256 == digest == sha(path) and art.attempts == 1
    assert art.takes == []
    assert [p.name for p in path.parent.iterdir() if p.is_file()] == [path.name]
    assert env.set_aside() == []


@pytest.mark.parametrize("stage", SHOT_STAGES)
def test_a_shot_stage_killed_between_its_record_and_its_rename_is_finished_not_made_again(env, monkeypatch, stage):
    env.write_all()
    for before in SHOT_STAGES[:SHOT_STAGES.index(stage)]:
        env.shot_unit(before, 1)
    replace = store_shots.os.replace

    def killed_at_the_rename(src, dst):
        if Path(dst).parent == env.session.path / stage and ".work" in Path(src).parts:
            raise Killed  # the done record is journalled and fsynced; the file is still in scratch
        return replace(src, dst)

    monkeypatch.setattr(store_shots.os, "replace", killed_at_the_rename)
    with pytest.raises(Killed):
        env.shot_unit(stage, 1)
    monkeypatch.setattr(store_shots.os, "replace", replace)
    env.crash()
    art = env.session.shot_state(1).artifact(stage)
    assert art.state == DONE and art.pending and not (env.session.path / art.path).exists()

    env.shot_unit(stage, 1)  # finishes the commit: the file verifies against its record
    env.shot_unit(stage, 1)  # and once more: a no-op
    assert CALLS[(METHOD[stage], 1)] == 1
    assert env.done_records(stage, 1) == 1
    assert env.said("shot_skipped", stage, 1, "adopted") == 1 and env.said("shot_skipped", stage, 1, "done") == 1
    art = env.session.shot_state(1).artifact(stage)
    assert art.state == DONE and art.pending is None and art.takes == []
    assert sha(env.session.path / art.path) == art.sha256
    assert env.set_aside() == []
    assert not [p for p in env.scratch_files() if p.name == Path(art.path).name or p.suffix == Path(art.path).suffix]


@pytest.mark.parametrize("stage", SHOT_STAGES)
def test_a_shot_stage_killed_before_its_record_is_made_again_once_with_the_next_attempt(env, monkeypatch, stage):
    """The backend's file in scratch, no record: nothing vouches for it (the store never
    trusts a file no record vouches for), so the unit runs again, and is recorded once. Its
    attempt number comes from the store's record of the attempts (what a ComfyUI prompt id
    is made from), not from this run."""
    env.write_all()
    for before in SHOT_STAGES[:SHOT_STAGES.index(stage)]:
        env.shot_unit(before, 1)
    log = Session._log

    def killed_before_the_record(self, event, **kw):
        if event.get("op") == "shot" and event["set"].get("state") == DONE and event["stage"] == stage:
            raise Killed
        return log(self, event, **kw)

    monkeypatch.setattr(Session, "_log", killed_before_the_record)
    with pytest.raises(Killed):
        env.shot_unit(stage, 1)
    monkeypatch.setattr(Session, "_log", log)
    env.crash()
    assert env.session.shot_state(1).artifact(stage).state != DONE
    assert env.session.shot_state(1).artifact(stage).attempts == 1

    env.shot_unit(stage, 1)
    env.shot_unit(stage, 1)
    assert CALLS[(METHOD[stage], 1)] == 2
    assert ATTEMPTS[(METHOD[stage], 1)] == [1, 2]
    assert env.done_records(stage, 1) == 1
    art = env.session.shot_state(1).artifact(stage)
    assert art.state == DONE and art.attempts == 2 and art.takes == []
    assert sha(env.session.path / art.path) == art.sha256
    assert [p.name for p in (env.session.path / stage).iterdir() if p.is_file()] == [Path(art.path).name]


def test_committing_the_same_file_twice_records_it_once(env):
    """The store's commit is keyed by stage and shot: the same bytes from the same inputs,
    committed again (a unit's result salvaged twice, say), leave the one record and file."""
    env.write_all()
    env.shot_unit("images", 1)
    art = env.session.shot_state(1).artifact("images")
    path = env.session.path / art.path
    mtime = path.stat().st_mtime_ns
    again = env.session.work_dir("images", 1) / "again.png"
    shutil.copyfile(path, again)
    shot = env.plan.shots[0]
    commit_shot(env.session, "images", shot, env.backends["image"], again, 0.1, art.fingerprint)
    assert env.done_records("images", 1) == 1
    assert env.session.shot_state(1).artifact("images").sha256 == art.sha256 == sha(path)
    assert path.stat().st_mtime_ns == mtime  # not replaced
    assert env.set_aside() == []


# -- the film --------------------------------------------------------------------------------------


def test_the_film_run_twice_is_assembled_once_and_recorded_once(env):
    env.write_all()
    env.all_shot_units()
    env.film_unit()
    made = sha(env.session.film_path)
    env.film_unit()
    assert len(env.films_made) == 1
    assert env.films_recorded == [made]
    assert env.session.meta.film.sha256 == sha(env.session.film_path) == made
    assert env.set_aside() == []


def test_the_film_placed_but_not_recorded_is_made_again_byte_identical_and_recorded_once(env, monkeypatch):
    env.write_all()
    env.all_shot_units()
    record = Session.mark_film_done

    def killed_before_the_record(self, *args, **kw):
        raise Killed  # film.mp4 is in place; no record vouches for it

    monkeypatch.setattr(Session, "mark_film_done", killed_before_the_record)
    with pytest.raises(Killed):
        env.film_unit()
    monkeypatch.setattr(Session, "mark_film_done", record)
    unrecorded = env.session.film_path.read_bytes()
    env.crash()
    assert env.session.meta.film.state != DONE

    env.film_unit()
    env.film_unit()
    # Nothing vouched for the film on disk, so it was made again (kept aside, never trusted),
    # byte for byte the same, and recorded once.
    assert len(env.films_made) == 2
    assert env.films_recorded == [hashlib.sha256(unrecorded).hexdigest()]
    assert env.session.film_path.read_bytes() == unrecorded
    assert env.session.meta.film.sha256 == sha(env.session.film_path)
    assert env.session.meta.status == COMPLETE


# -- the whole run ---------------------------------------------------------------------------------


def test_a_finished_session_resumed_runs_no_unit_again(tmp_path, env):
    # The whole run, through the runner and the local engine (the fixture's plugin counts).
    first = run_session(tmp_path / "run", IDEA, backends=COUNTED, options=OPTIONS)
    assert first.ok
    calls, records, film_bytes = dict(CALLS), len(env.events), first.film.read_bytes()
    again = run_session(tmp_path / "run", "", backends=COUNTED, options=OPTIONS, resume=first.session_id)
    assert again.ok
    assert dict(CALLS) == calls and len([k for k in calls if k[0] != "portrait"]) == 3 + 3 * 2
    assert all(n == 1 for n in calls.values())
    assert len(env.events) == records  # not one journal record more
    assert len(env.films_made) == len(env.films_recorded) == 1
    assert again.film.read_bytes() == film_bytes
