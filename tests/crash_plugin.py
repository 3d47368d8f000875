"""Backends for the crash-recovery tests, loaded into a subprocess via REELFORGE_PLUGINS.
Every call is logged to REELFORGE_FAKE_LOG, so the test can count them across processes.

REELFORGE_CRASH_HOLD=KIND:N (e.g. ``image:4``) makes KIND calls (story is not held; image,
video, narration) for shot N and later wait until the run is cancelled (Ctrl-C) or killed:
a crash point the test reaches for certain, with the earlier shots done and the later ones
not, however loaded the machine is (a delay only makes that likely)."""

from __future__ import annotations

import os

from framework import hookimpl
from framework.testing import FakeImageGenerator, FakeNarrator, FakeRenderer, FakeStoryWriter

HOLD_ENV = "REELFORGE_CRASH_HOLD"
HOLD_LIMIT_S = 600.0
"A held call goes on after this, so a forgotten process cannot wait for ever."


def _hold(kind: str, shot_id: int, job) -> None:
    held, _, first = os.environ.get(HOLD_ENV, "").partition(":")
    if held == kind and first and shot_id >= int(first):
        job.cancelled.wait(HOLD_LIMIT_S)


class HeldImages(FakeImageGenerator):
    def generate(self, shot, job):
        _hold("image", shot.id, job)
        return super().generate(shot, job)


class HeldClips(FakeRenderer):
    def render(self, shot, image, job):
        _hold("video", shot.id, job)
        return super().render(shot, image, job)


class HeldVoices(FakeNarrator):
    def narrate(self, shot, job):
        _hold("narration", shot.id, job)
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
