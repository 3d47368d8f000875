"""Following a film made elsewhere (reelforge.engine.follow): read from the session's files,
the hooks hear what the run itself told them. The watch here reads the session at each of
the run's own hook calls, so it sees every state the files pass through, in order, and the
test does not depend on when a poll happens to land."""

from __future__ import annotations

import collections

import reelforge
from reelforge.engine.follow import SessionWatch, follow
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session

_SAID = ("stage_started", "stage_finished", "stage_failed", "shot_started", "shot_completed", "shot_skipped",
         "shot_failed")


class Heard:
    """The lifecycle calls made, as (hook, stage, shot id)."""

    def __init__(self):
        self.calls: list[tuple[str, str | None, int | None]] = []

    def __call__(self, name, **kw):
        if name in _SAID:
            self.calls.append((name, kw.get("stage"), getattr(kw.get("shot"), "id", None)))

    def of(self, name: str) -> collections.Counter:
        return collections.Counter((stage, shot) for n, stage, shot in self.calls if n == name)


class WatchAtEveryHook:
    """A plugin: records the run's own hook calls, and at each one reads the session's files
    through a SessionWatch, whose calls go to ``watched``."""

    def __init__(self, out):
        self.out, self.run, self.watched, self.watch = out, Heard(), Heard(), None

    def _see(self, name, **kw):
        self.run(name, **kw)
        self.watch.poll()

    @reelforge.hookimpl
    def session_started(self, session):
        self.watch = SessionWatch(SessionStore(self.out), session.id, self.watched)
        self.watch.poll()

    @reelforge.hookimpl
    def stage_started(self, session, stage):
        self._see("stage_started", stage=stage)

    @reelforge.hookimpl
    def stage_finished(self, session, stage):
        self._see("stage_finished", stage=stage)

    @reelforge.hookimpl
    def stage_failed(self, session, stage, error):
        self._see("stage_failed", stage=stage)

    @reelforge.hookimpl
    def shot_started(self, session, stage, shot, attempt):
        self._see("shot_started", stage=stage, shot=shot)

    @reelforge.hookimpl
    def shot_completed(self, session, stage, shot, artifact):
        self._see("shot_completed", stage=stage, shot=shot)

    @reelforge.hookimpl
    def shot_skipped(self, session, stage, shot, reason):
        self._see("shot_skipped", stage=stage, shot=shot)

    @reelforge.hookimpl
    def shot_failed(self, session, stage, shot, error):
        self._see("shot_failed", stage=stage, shot=shot)


def _started_before_done(heard: Heard) -> bool:
    started = set()
    for name, stage, shot in heard.calls:
        if name == "shot_started":
            started.add((stage, shot))
        if name == "shot_completed" and (stage, shot) not in started:
            return False
    return True


def test_a_followed_run_tells_the_hooks_what_the_run_told_them(out, fakes):
    seen = WatchAtEveryHook(out)
    result = run_session(out, "A lighthouse keeper befriends a storm", backends=fakes.backends,
                         options={"shots": 3}, plugins=(seen,))
    assert result.ok
    seen.watch.poll()  # after the run: the film's record is in
    run, watched = seen.run, seen.watched
    made = {(stage, i) for stage in ("images", "videos") for i in (1, 2, 3)}
    assert made <= set(watched.of("shot_completed")) and set(watched.of("shot_completed").values()) == {1}
    assert watched.of("shot_completed") == run.of("shot_completed")
    assert watched.of("stage_finished") == run.of("stage_finished")
    assert {"story", "scene_graph", "shots", "assemble"} <= {s for s, _ in watched.of("stage_started")}
    assert _started_before_done(watched)
    assert not watched.of("shot_skipped") and not watched.of("shot_failed")


def test_a_followed_resume_says_what_was_done_then_what_is_made(out, fakes):
    fakes.video.fail(2, reelforge.StageError("model exploded"))
    first = run_session(out, "idea", backends=fakes.backends, options={"shots": 3})
    assert not first.ok
    seen = WatchAtEveryHook(out)
    again = run_session(out, "", backends=fakes.backends, resume=first.session_id, plugins=(seen,))
    assert again.ok
    seen.watch.poll()
    run, watched = seen.run, seen.watched
    assert watched.of("shot_skipped") == run.of("shot_skipped")  # 8 units done before: said once each
    assert sum(watched.of("shot_skipped").values()) >= 5  # the images and the other clips
    assert watched.of("shot_completed") == collections.Counter({("videos", 2): 1})
    assert ("assemble", None) in watched.of("stage_finished")


def test_a_failed_shot_is_told_once_and_follow_returns_how_the_workers_ended(out, fakes):
    fakes.video.fail(3, reelforge.StageError("model exploded"))
    seen = WatchAtEveryHook(out)
    result = run_session(out, "idea", backends=fakes.backends, options={"shots": 3}, plugins=(seen,))
    assert not result.ok
    seen.watch.poll()
    assert seen.watched.of("shot_failed") == collections.Counter({("videos", 3): 1})

    class Ended:
        def running(self):
            return False

        def failure(self):
            return "its worker was lost"

        def close(self):
            pass

    heard = Heard()
    assert follow(Ended(), SessionStore(out), result.session_id, heard) == "its worker was lost"
    assert heard.of("shot_skipped")  # what was done, said once on the first read
