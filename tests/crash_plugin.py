"""Backends for the crash-recovery tests, loaded into a subprocess via REELFORGE_PLUGINS.
Every call is logged to REELFORGE_FAKE_LOG, so the test can count them across processes.

REELFORGE_CRASH_HOLD=KIND:N (e.g. ``image:3``) lets the first N calls of KIND (image, video,
narration, or portrait: the cast step's) through and makes every later one wait until the run is cancelled (Ctrl-C) or
killed: a crash point the test reaches for certain, with N shots of that stage done and the
rest not, however loaded the machine is (a delay only makes that likely). Counted by calls,
not shot ids: which shots come first depends on the scheduling (a clip waits for its image
and its voice), and a held shot must never keep an earlier one from its turn.

REELFORGE_CRASH_COMMIT=STAGE:N:WHERE (e.g. ``videos:2:after``) holds the process inside the
Nth commit of STAGE, whatever backend made it: ``before`` its done record is journalled (the
file is fsynced in scratch, nothing says so), ``after`` it (the record is durable, the file
not yet renamed into place). The commit's thread holds the session there until the process
is killed; REELFORGE_CRASH_MARK names a file written when it gets there, for the test to
wait on before the SIGKILL."""

from __future__ import annotations

import collections
import os
import threading

from reelforge import hookimpl
from reelforge.testing import FakeImageGenerator, FakeNarrator, FakeRenderer, FakeStoryWriter

HOLD_ENV = "REELFORGE_CRASH_HOLD"
HOLD_LIMIT_S = 600.0
"A held call goes on after this, so a forgotten process cannot wait for ever."


COMMIT_ENV = "REELFORGE_CRASH_COMMIT"
MARK_ENV = "REELFORGE_CRASH_MARK"

_calls: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()


def _hold(kind: str, job) -> None:
    held, _, through = os.environ.get(HOLD_ENV, "").partition(":")
    if held != kind or not through:
        return
    with _lock:
        _calls[kind] += 1
        n = _calls[kind]
    if n > int(through):
        job.cancelled.wait(HOLD_LIMIT_S)


class HeldImages(FakeImageGenerator):
    takes_references = True  # the cast step makes portraits for it
    def generate(self, shot, job):
        _hold("portrait" if job.stage == "cast" else "image", job)
        return super().generate(shot, job)


class HeldClips(FakeRenderer):
    def render(self, shot, image, job):
        _hold("video", job)
        return super().render(shot, image, job)


class HeldVoices(FakeNarrator):
    def narrate(self, shot, job):
        _hold("narration", job)
        return super().narrate(shot, job)


def _hold_commits() -> None:
    """Wrap the journal's append so the Nth done record of a stage stops the process there."""
    stage, _, rest = os.environ.get(COMMIT_ENV, "").partition(":")
    nth, _, where = rest.partition(":")
    if not stage:
        return
    if where not in ("before", "after") or not nth.isdigit():
        raise ValueError(f"{COMMIT_ENV}={os.environ[COMMIT_ENV]!r}: want STAGE:N:before or STAGE:N:after")
    from reelforge.store.journal import SessionJournal

    journal_append = SessionJournal._log
    seen = collections.Counter()

    def held_log(self, event, **kw):
        done = (event.get("op") == "shot" and event.get("stage") == stage
                and event.get("set", {}).get("state") == "done")
        if done:
            with _lock:
                seen[stage] += 1
                hold = seen[stage] == int(nth)
        if done and hold and where == "before":
            _stop_here(event)
        journal_append(self, event, **kw)
        if done and hold and where == "after":
            _stop_here(event)

    SessionJournal._log = held_log


def _stop_here(event) -> None:
    mark = os.environ.get(MARK_ENV)
    if mark:
        with open(mark, "w") as f:
            f.write(f"{event['stage']} {event['shot']}\n")
    threading.Event().wait(HOLD_LIMIT_S)
    os._exit(70)  # never go on with a commit the test meant to cut


_hold_commits()


#: The cast of the ``crashcast`` story writer: each shot names one or two of them.
CAST = (("Oskar", "a cartographer with a white beard"), ("Mira", "a young keeper in a yellow coat"),
         ("Tove", "a fisherwoman with a red scarf"))


class CastStoryWriter(FakeStoryWriter):
    """A story of three characters; shot i names CAST[i % 3] (and CAST[(i+1) % 3] when i is even)."""

    def write_story(self, idea):
        from reelforge.records import Character, Story

        self._record("write_story", "write_story")
        return Story(title=idea[:60], logline=f"A film about {idea}.", synopsis=idea, style="ink and watercolour",
                     characters=tuple(Character(n, d) for n, d in CAST))

    def plan_shots(self, story, scenes, job=None):
        import attrs

        plan = super().plan_shots(story, scenes)
        names = [n for n, _ in CAST]
        return attrs.evolve(plan, shots=tuple(
            attrs.evolve(s, characters=(names[s.id % 3],) + ((names[(s.id + 1) % 3],) if s.id % 2 == 0 else ()))
            for s in plan.shots))


@hookimpl
def register_story_llms(register):
    register(FakeStoryWriter("crashtest", shots=7), name="crashtest")
    register(CastStoryWriter("crashcast", shots=4), name="crashcast")


@hookimpl
def register_image_generators(register):
    register(HeldImages("crashtest"), name="crashtest")


@hookimpl
def register_renderers(register):
    register(HeldClips("crashtest"), name="crashtest")


@hookimpl
def register_narrators(register):
    register(HeldVoices("crashtest"), name="crashtest")
