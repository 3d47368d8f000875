"""Backends for the crash-recovery tests, loaded into a subprocess via REELFORGE_PLUGINS.
Every call is logged to REELFORGE_FAKE_LOG, so the test can count them across processes."""

from framework import hookimpl
from framework.testing import FakeImageGenerator, FakeNarrator, FakeRenderer, FakeStoryWriter


@hookimpl
def register_story_llms(register):
    register(FakeStoryWriter("crashtest", shots=7), name="crashtest")


@hookimpl
def register_image_generators(register):
    register(FakeImageGenerator("crashtest"), name="crashtest")


@hookimpl
def register_renderers(register):
    register(FakeRenderer("crashtest"), name="crashtest")


@hookimpl
def register_narrators(register):
    register(FakeNarrator("crashtest"), name="crashtest")
