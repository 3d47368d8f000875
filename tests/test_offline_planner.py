"""The offline template planner: deterministic, idea-dependent, well-formed plans."""

from __future__ import annotations

import pytest

from framework.records import ShotPlan, Story, SceneGraph, structure, unstructure
from plugins.kenburns import MOVES
from plugins.story_llm.offline import OfflinePlanner, OfflinePlannerOptions, _subject

IDEA = "The rise and fall of an ancient trading city"


def plan(idea: str, **options):
    writer = OfflinePlanner(OfflinePlannerOptions(**options))
    story = writer.write_story(idea)
    scenes = writer.build_scene_graph(story)
    return story, scenes, writer.plan_shots(story, scenes)


def test_same_idea_gives_identical_output():
    assert plan(IDEA) == plan(IDEA)
    # A fresh planner (no shared state) agrees too, and so does the JSON round trip.
    story, scenes, shots = plan(IDEA)
    assert structure(unstructure(shots), ShotPlan) == shots
    assert structure(unstructure(story), Story) == story
    assert structure(unstructure(scenes), SceneGraph) == scenes


def test_different_ideas_give_different_output():
    a = plan(IDEA)
    b = plan("A lighthouse keeper finds a message in a bottle")
    assert a[0] != b[0]
    assert [s.image_prompt for s in a[2].shots] != [s.image_prompt for s in b[2].shots]
    assert {s.seed for s in a[2].shots}.isdisjoint({s.seed for s in b[2].shots})


@pytest.mark.parametrize("idea", [
    IDEA, "A lighthouse keeper finds a message in a bottle", "a robot learns to paint on Mars",
    "cats", "Two sisters open a bakery in Lisbon",
])
def test_story_shape(idea):
    story, scenes, shots = plan(idea)
    assert story.title and story.logline and story.style
    assert len(story.synopsis.split("\n\n")) >= 3
    assert 2 <= len(story.characters) <= 3
    assert len({c.name for c in story.characters}) == len(story.characters)
    assert all(len(c.description) > 20 for c in story.characters)
    assert 3 <= len(scenes.scenes) <= 5
    assert [s.order for s in scenes.scenes] == list(range(1, len(scenes.scenes) + 1))
    assert len({s.id for s in scenes.scenes}) == len(scenes.scenes)
    names = {c.name for c in story.characters}
    assert all(set(s.characters) <= names for s in scenes.scenes)


def test_shots_are_complete_and_carry_style_and_looks():
    story, scenes, plan_ = plan(IDEA)
    shots = plan_.shots
    assert [s.id for s in shots] == list(range(1, 8))
    scene_ids = [s.id for s in scenes.scenes]
    assert {s.scene_id for s in shots} == set(scene_ids), "every scene gets a shot"
    # Shots follow scene order.
    assert [scene_ids.index(s.scene_id) for s in shots] == sorted(scene_ids.index(s.scene_id) for s in shots)
    looks = {c.name: c.description for c in story.characters}
    for shot in shots:
        assert "\n" not in shot.description and 10 < len(shot.description) < 140
        assert story.style in shot.image_prompt
        for name in shot.characters:
            assert looks[name] in shot.image_prompt
        assert any(move in shot.motion_prompt for move in MOVES)
        assert shot.negative_prompt
        assert shot.duration_s == 3.0
        assert 0 <= shot.seed < 2**31
    assert shots[0].description.startswith("Sweeping aerial view of")
    assert len({s.seed for s in shots}) == len(shots)
    assert any(s.characters for s in shots)


def test_options_change_count_and_length():
    _, scenes, shots = plan(IDEA, shots=12, shot_seconds=1.5)
    assert len(shots.shots) == 12
    assert all(s.duration_s == 1.5 for s in shots.shots)
    _, scenes, shots = plan(IDEA, shots=2)
    assert len(shots.shots) == 2
    assert len(scenes.scenes) == 2


def test_subject_reads_well():
    assert _subject(IDEA) == "the ancient trading city"
    assert _subject("A lighthouse keeper finds a message in a bottle") == "the message in a bottle"
    story, _, _ = plan(IDEA)
    assert story.title == "The Rise and Fall of an Ancient Trading City"
    assert "the ancient trading city" in story.synopsis


def test_registered_under_its_name():
    import plugins.story_llm.offline as module

    seen = []
    module.register_story_llms(seen.append)
    assert seen == [OfflinePlanner] and OfflinePlanner.name == "offline"
    assert "not an LLM" in (OfflinePlanner.__doc__ or "") or "no LLM" in OfflinePlanner.description
