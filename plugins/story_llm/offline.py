"""The ``offline`` story writer: a deterministic template planner, not an LLM.

It fills hand-written templates with words drawn from the idea and a random generator
seeded by a hash of the idea, so it needs no server or network and the same idea always
gives the same story, scenes and shots.
"""

from __future__ import annotations

import random
from typing import ClassVar

import attrs

from reelforge import hookimpl
from reelforge.plugins.story_llm import offline_shots, offline_story
from reelforge.plugins.story_llm.offline_idea import _seed_of, _subject  # noqa: F401  (_subject: for tests)
from reelforge.records import SceneGraph, ShotPlan, Story


@attrs.frozen
class OfflinePlannerOptions:
    shots: int = attrs.field(default=7, validator=attrs.validators.in_(range(1, 1000)))
    "How many shots to plan (spread over 3-5 scenes)."
    shot_seconds: float = attrs.field(default=3.0, validator=attrs.validators.gt(0))
    "Length of each shot in seconds."


class OfflinePlanner:
    """A deterministic template planner (not an LLM): fills story, scene and shot templates
    from the idea, seeded by its hash. Works offline; the same idea gives the same plan."""

    name: ClassVar[str] = "offline"
    Options: ClassVar[type] = OfflinePlannerOptions
    description: ClassVar[str] = "Deterministic template planner (no LLM, works offline)"
    concurrency: int = 1

    def __init__(self, options: OfflinePlannerOptions | None = None):
        self.options = options if options is not None else OfflinePlannerOptions()

    # Each method reseeds from its own inputs so that it can be called alone on resume.
    def _rng(self, *parts: str) -> random.Random:
        return random.Random(_seed_of("\x1f".join(("reelforge-offline", *parts))))

    def write_story(self, idea: str) -> Story:
        return offline_story.write_story(idea, self._rng("story", idea))

    def build_scene_graph(self, story: Story) -> SceneGraph:
        rng = self._rng("scenes", story.title, story.logline)
        return offline_story.build_scene_graph(story, rng, self.options.shots)

    def plan_shots(self, story: Story, scenes: SceneGraph) -> ShotPlan:
        rng = self._rng("shots", story.title, *(s.summary for s in scenes.scenes))
        return offline_shots.plan_shots(story, scenes, rng, self.options.shots, self.options.shot_seconds)


@hookimpl
def register_story_llms(register):
    register(OfflinePlanner)
