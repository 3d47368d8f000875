"""Backends for the crash-recovery tests, loaded into a subprocess via REELFORGE_PLUGINS.
Every call is logged to REELFORGE_FAKE_LOG, so the test can count them across processes.

REELFORGE_CRASH_HOLD=KIND:N (e.g. ``image:3``) lets the first N calls of KIND (image, video
or narration) through and makes every later one wait until the run is cancelled (Ctrl-C) or
killed: a crash point the test reaches for certain, with N shots of that stage done and the
rest not, however loaded the machine is (a delay only makes that likely). Counted by calls,
not shot ids: which shots come first depends on the scheduling (a clip waits for its image
and its voice), and a held shot must never keep an earlier one from its turn."""

from __future__ import annotations

import collections
import os
import threading

from reelforge import hookimpl
from reelforge.testing import FakeImageGenerator, FakeNarrator, FakeRenderer, FakeStoryWriter

HOLD_ENV = "REELFORGE_CRASH_HOLD"
HOLD_LIMIT_S = 600.0
"A held call goes on after this, so a forgotten process cannot wait for ever."


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
    def generate(self, shot, job):
        _hold("image", job)
        return super().generate(shot, job)


class HeldClips(FakeRenderer):
    def render(self, shot, image, job):
        _hold("video", job)
        return super().render(shot, image, job)


class HeldVoices(FakeNarrator):
    def narrate(self, shot, job):
        _hold("narration", job)
        return super().narrate(shot, job)


@hookimpl
def register_story_llms(register):
    register(FakeStoryWriter("crashtest", shots=7), name="crashtest")


@hookimpl
def register_image_generators(register):
    register(HeldImages("crashtest"), name="crashtest")


@hookimpl
def register_renderers(register):
    register(HeldClips("crashtest"), name="crashtest")


@hookimpl
def register_narrators(register):
    register(HeldVoices("crashtest"), name="crashtest")
