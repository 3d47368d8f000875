"""The offline template planner: deterministic, idea-dependent, well-formed plans."""

from __future__ import annotations

import pytest

from reelforge.records import ShotPlan, Story, SceneGraph, structure, unstructure
from reelforge.plugins.kenburns import MOVES
from reelforge.plugins.story_llm.offline import OfflinePlanner, OfflinePlannerOptions, _subject

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
        assert story.style not in shot.image_prompt and shot.look == ""  # the film's look: story.style
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
    import reelforge.plugins.story_llm.offline as module

    seen = []
    module.register_story_llms(seen.append)
    assert seen == [OfflinePlanner] and OfflinePlanner.name == "offline"
    assert "not an LLM" in (OfflinePlanner.__doc__ or "") or "no LLM" in OfflinePlanner.description


# -- the idea's own protagonist, place and cast; narration ------------------------------------

@pytest.mark.parametrize("idea, role, place", [
    ("A lighthouse keeper befriends a storm", "lighthouse keeper", "lighthouse"),
    ("A lighthouse keeper finds a message in a bottle", "lighthouse keeper", "lighthouse"),
    ("Two sisters open a bakery in Lisbon", "sister", "bakery"),
    ("a robot learns to paint on Mars", "robot", "Mars"),
    ("A young fisher rescues a whale off the coast of Norway", "young fisher", "coast"),
    ("The rise and fall of an ancient trading city", None, "ancient trading city"),
])
def test_the_idea_keeps_its_protagonist_and_place(idea, role, place):
    story, scenes, shots = plan(idea)
    if role:
        assert role in story.characters[0].description.lower(), story.characters[0]
        assert role in story.logline.lower()
    if idea.startswith("Two "):
        assert all("sister" in c.description.lower() for c in story.characters[:2])
    assert place in scenes.scenes[0].setting and place in scenes.scenes[-1].setting
    assert place in shots.shots[0].description, "the opening shot shows the idea's place"
    assert sum(place in s.description for s in shots.shots) >= 2
    # The idea's nouns are in the plan.
    nouns = [w for w in idea.lower().replace(",", "").split() if len(w) > 3 and w not in {
        "befriends", "finds", "open", "learns", "rescues", "rise", "fall", "sisters", "paint", "young", "ancient"}]
    text = " ".join([story.logline, story.synopsis] + [s.description + " " + s.narration for s in shots.shots]).lower()
    for noun in nouns:
        assert noun in text, noun


@pytest.mark.parametrize("idea", [
    IDEA, "A lighthouse keeper befriends a storm", "Two sisters open a bakery in Lisbon",
    "a robot learns to paint on Mars", "cats", "A wolf crosses the frozen mountain pass",
])
@pytest.mark.parametrize("n", [3, 5, 7, 12])
def test_every_character_of_the_synopsis_is_in_some_shot(idea, n):
    story, scenes, shots = plan(idea, shots=n)
    named = {c.name for c in story.characters if c.name in story.synopsis}
    assert named == {c.name for c in story.characters}
    in_shots = {name for s in shots.shots for name in s.characters}
    assert named <= in_shots, (named - in_shots, [s.description for s in shots.shots])


@pytest.mark.parametrize("idea", [IDEA, "A lighthouse keeper befriends a storm", "cats"])
def test_every_shot_has_a_narration_line(idea):
    story, scenes, shots = plan(idea)
    summaries = {s.id: s.summary.split(". ", 1)[1].split("; ")[0].rstrip(".") + "." for s in scenes.scenes}
    seen_scene = set()
    for shot in shots.shots:
        words = shot.narration.split()
        assert 3 <= len(words) <= 30 and shot.narration[0].isupper() and shot.narration.endswith((".", "!", "?"))
        assert "{" not in shot.narration
        if shot.scene_id not in seen_scene and shot.id != len(shots.shots):
            assert shot.narration == summaries[shot.scene_id], "a scene opens on its own sentence"
        assert len(words) <= 18, "a line is said in a few seconds"
        seen_scene.add(shot.scene_id)
    assert len({s.narration for s in shots.shots}) == len(shots.shots), "no line is said twice"
    assert shots.shots[-1].narration.startswith("In the end")
    # Old shot plans (no narration key) still load.
    data = unstructure(shots)
    for shot in data["shots"]:
        del shot["narration"]
    assert all(s.narration == "" for s in structure(data, ShotPlan).shots)
