"""The offline planner's shot plan: shots spread over the scenes, each with a shot type,
camera move, cast, prompts, seed and a line of narration."""

from __future__ import annotations

import random

from reelforge.plugins.story_llm import offline_action_shots
from reelforge.plugins.story_llm.offline_action import idea_of, telling
from reelforge.plugins.story_llm.offline_idea import _lower_place, _seed_of, _setting, _story_subject, _upper_first
from reelforge.plugins.story_llm.offline_words import _LINES, _NEGATIVE, _ON_PLACES, _SHOT_TYPES, CAMERA_MOVES
from reelforge.records import Scene, SceneGraph, Shot, ShotPlan, Story


def plan_shots(story: Story, scenes: SceneGraph, rng: random.Random, n_shots: int, shot_seconds: float) -> ShotPlan:
    """``n_shots`` shots of ``shot_seconds`` each, spread over the scenes so that everyone in
    the story is seen."""
    theme = _setting(story.title.lower())
    told = telling(idea_of(story))
    details = told.details if told is not None else theme["details"]
    looks = {c.name: c.description for c in story.characters}
    subject = _story_subject(story)
    lead = story.characters[0].name if story.characters else "someone"
    all_scenes = list(scenes.scenes) or [Scene(id="s1", order=1, summary=story.logline)]
    # Spread shots over scenes: one each, the rest to the middle scenes first.
    counts = [1] * len(all_scenes)
    if n_shots < len(all_scenes):
        counts = [1 if i < n_shots else 0 for i in range(len(all_scenes))]
    order = sorted(range(len(all_scenes)), key=lambda i: abs(i - (len(all_scenes) - 1) / 2))
    k = 0
    while sum(counts) < n_shots:
        counts[order[k % len(order)]] += 1
        k += 1
    person_kinds = ("close-up", "medium shot", "low-angle shot", "silhouette shot")
    seen: dict[str, int] = {}
    specs: list[dict] = []
    last_move = ""
    for scene, count in zip(all_scenes, counts):
        for j in range(count):
            shot_id = len(specs) + 1
            if shot_id == 1:
                type_index = 0
            elif shot_id == n_shots and n_shots > 1:
                type_index = 5
            else:  # any type but the one just used
                previous = specs[-1]["type_index"] if specs else -1
                type_index = rng.choice([t for t in range(1, len(_SHOT_TYPES)) if t != previous])
            unseen = [n for n in scene.characters if n in looks and n not in seen]
            if unseen and shot_id != 1 and _SHOT_TYPES[type_index][1] not in person_kinds:
                type_index = 2  # a medium shot, so everyone in the story is seen
            move = rng.choice([m for m in CAMERA_MOVES if m != last_move])
            last_move = move
            ranked = sorted(scene.characters, key=lambda n: (seen.get(n, 0), scene.characters.index(n)))
            cast = ranked[:1]
            if _SHOT_TYPES[type_index][1] in person_kinds:
                for name in cast:
                    seen[name] = seen.get(name, 0) + 1
            specs.append(dict(shot_id=shot_id, scene=scene, type_index=type_index, move=move, cast=cast,
                              first_in_scene=j == 0, detail=rng.choice(details),
                              pace=rng.choice(("slow", "steady", "gentle")), line=rng.random()))
    # Anyone still unseen joins a shot of a scene they are in (never the aerial opening):
    # beside the people already in frame, or as the subject of a shot that had none.
    for name in [c.name for c in story.characters if c.name not in seen]:
        candidates = [sp for sp in specs[1:] if name in sp["scene"].characters] or specs[1:]
        with_people = [sp for sp in candidates if _SHOT_TYPES[sp["type_index"]][1] in person_kinds
                       and len(sp["cast"]) < 3]
        if with_people:
            with_people[-1]["cast"].append(name)
        elif candidates:
            spec = candidates[-1]
            spec.update(cast=[name], type_index=2 if spec["shot_id"] != n_shots else 5)
        else:
            continue
        seen[name] = 1
    said: set[str] = set()
    shots = [_shot(story, spec, looks, subject, lead, n_shots, shot_seconds, told, said) for spec in specs]
    return ShotPlan(shots=tuple(shots))


def _shot(story: Story, spec: dict, looks: dict[str, str], subject: str, lead: str,
          n_shots: int, shot_seconds: float, told: offline_action_shots.Telling | None = None,
          said: set[str] | None = None) -> Shot:
    scene, shot_id, cast_names = spec["scene"], spec["shot_id"], tuple(spec["cast"])
    who = cast_names[0] if cast_names else ""
    together = ", ".join(cast_names[:-1]) + f" and {cast_names[-1]}" if len(cast_names) > 1 else who
    prefix, kind = _SHOT_TYPES[spec["type_index"]]
    place = scene.setting.split(",")[0] or "the place"
    detail = spec["detail"]
    # at the pier, in Lisbon, on Mars
    at = "on" if place.lower() in _ON_PLACES else "at" if _lower_place(place) != place or place[:1].islower() else "in"
    if told is not None:  # a sentence idea: its protagonists doing its action, where and when it says
        subject_text, in_frame = offline_action_shots.framing(told, story, kind, place, detail, cast_names, prefix)
    elif kind in ("close-up", "medium shot", "low-angle shot", "silhouette shot") and who:
        subject_text = f"{together} {at} {_lower_place(place)}, {detail}"
        in_frame: tuple[str, ...] = cast_names
    elif kind == "macro detail shot":
        subject_text = f"{detail} {at} {_lower_place(place)}"
        in_frame = ()
    else:
        subject_text = f"{_lower_place(place)}, {detail}"
        in_frame = ()
    description = f"{prefix} {subject_text}"
    cast = "; ".join(f"{n}: {looks[n]}" for n in in_frame if n in looks)
    # What is in the picture only: the film's look (story.style) is applied by the backend.
    image_prompt = ", ".join(p for p in (
        f"{kind} of {subject_text}",
        scene.summary.split(". ", 1)[-1].rstrip("."),
        cast,
        "highly detailed, cinematic composition",
    ) if p)
    motion_prompt = f"{spec['move']}, {spec['pace']} camera, {kind}"
    seed = _seed_of(f"{story.title}\x1f{shot_id}\x1f{description}") % (2**31)
    if told is not None:
        narration = offline_action_shots.narration(told, story, spec, kind, who, _lower_place(place), detail,
                                                   shot_id == n_shots > 1, said if said is not None else set())
    else:
        narration = _narration(spec, kind, who, _lower_place(place), detail, subject, lead, shot_id == n_shots > 1)
    return Shot(
        id=shot_id, scene_id=scene.id, description=description,
        image_prompt=image_prompt, motion_prompt=motion_prompt,
        negative_prompt=_NEGATIVE, duration_s=float(shot_seconds),
        characters=in_frame, seed=seed, narration=narration,
    )


def _narration(spec: dict, kind: str, who: str, place: str, detail: str, subject: str, lead: str,
               last: bool) -> str:
    """One line of voice-over for the shot, in English: the scene's own sentence (its
    first clause) on its first shot, then a line about what the shot shows; the film's last shot closes it."""
    if last:
        return f"In the end, {who or lead} looks back at {subject} one last time."
    if spec["first_in_scene"]:
        # The scene's own sentence, up to its semicolon: a line is spoken in a few seconds.
        sentence = spec["scene"].summary.split(". ", 1)[-1].strip()
        return sentence.split("; ", 1)[0].rstrip(".") + "."
    group = "person" if who and kind in ("close-up", "medium shot", "low-angle shot", "silhouette shot") else \
        "detail" if kind == "macro detail shot" else "place"
    options = _LINES[group]
    line = options[int(spec["line"] * len(options)) % len(options)]
    return _upper_first(line.format(who=who, detail=detail, Detail=_upper_first(detail), place=place,
                                    Place=_upper_first(place), subject=subject))
