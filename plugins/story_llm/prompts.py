"""The messages sent to the LLM for each stage, shared by the OpenAI-compatible and Ollama
backends. Every prompt carries its JSON schema, so servers without structured output
(and ``json_object`` mode, which needs the word JSON in the messages) still know the shape.
"""

from __future__ import annotations

import json

import attrs

from reelforge.records import SceneGraph, Story, unstructure

from reelforge.plugins.story_llm.schemas import SCHEMAS, schema_text

SYSTEM = (
    "You are a screenwriter and director planning a short film that will be made shot by shot: "
    "an image model draws one still per shot, then an image-to-video model animates it. "
    "Write concrete, visual, filmable material; no dialogue-only beats, no text on screen. "
    "Answer with exactly one JSON object and nothing else: no prose, no markdown fences. "
    "The object must match this JSON schema:\n{schema}"
)


@attrs.frozen
class ShotBatch:
    """One request's worth of shots: ids ``first_id`` onwards, ``parts`` = (scene id, count)."""

    first_id: int
    parts: tuple[tuple[str, int], ...]

    @property
    def count(self) -> int:
        return sum(n for _, n in self.parts)

    @property
    def last_id(self) -> int:
        return self.first_id + self.count - 1

    @property
    def scene_ids(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.parts))

    def halves(self) -> tuple["ShotBatch", "ShotBatch"]:
        """Split in two by shot count (a scene may straddle the cut)."""
        cut = self.count // 2
        first: list[tuple[str, int]] = []
        second: list[tuple[str, int]] = []
        taken = 0
        for scene_id, n in self.parts:
            here = min(n, max(0, cut - taken))
            if here:
                first.append((scene_id, here))
            if n - here:
                second.append((scene_id, n - here))
            taken += n
        return ShotBatch(self.first_id, tuple(first)), ShotBatch(self.first_id + cut, tuple(second))


def system_message(stage: str) -> dict[str, str]:
    return {"role": "system", "content": SYSTEM.format(schema=schema_text(SCHEMAS[stage]))}


def story_messages(idea: str, *, shots: int, target_seconds: float) -> list[dict[str, str]]:
    user = (
        f"Idea: {idea.strip()}\n\n"
        f"Write the story of a short film of about {target_seconds:g} seconds, told in {shots} shots. "
        "Give a title; a logline of one sentence; a synopsis of a few short paragraphs separated "
        "by blank lines; the main characters (at most four), each with a concrete visual "
        "description (age, build, face, hair, clothing, colours) precise enough that every shot "
        "draws the same person; and the visual style bible (medium, palette, lighting, lens, "
        "era, mood) in one or two sentences."
    )
    return [system_message("story"), {"role": "user", "content": user}]


def _story_json(story: Story) -> str:
    return json.dumps(unstructure(story), ensure_ascii=False, indent=1)


def scene_graph_messages(story: Story, *, scenes: int, shots: int) -> list[dict[str, str]]:
    user = (
        f"The story:\n{_story_json(story)}\n\n"
        f"Break it into {scenes} scene{'s' if scenes != 1 else ''} (never more than {shots}), "
        "in film order. Give each a unique id (s1, s2, ...), its order (1, 2, ...), a summary of "
        "what happens, the setting described visually, and the names of the characters present, "
        "spelled as in the story."
    )
    return [system_message("scene_graph"), {"role": "user", "content": user}]


def shot_messages(story: Story, graph: SceneGraph, batch: ShotBatch, *, total_shots: int,
                  target_seconds: float, previous: list[str]) -> list[dict[str, str]]:
    per_shot = target_seconds / max(1, total_shots)
    scenes = {s.id: s for s in graph.scenes}
    if batch.count == total_shots:
        head = (f"Plan the whole film in exactly {total_shots} shots, ids 1 to {total_shots}, "
                "covering every scene in order, each scene at least one shot. Suggested shots per scene: ")
    else:
        head = (f"The film has {total_shots} shots, planned in parts. Plan only shots "
                f"{batch.first_id} to {batch.last_id} (exactly {batch.count} shots), for these scenes: ")
    head += ", ".join(f"{sid} ({n} shot{'s' if n != 1 else ''})" for sid, n in batch.parts) + "."
    lines = [
        f"The story:\n{_story_json(story)}",
        "The scenes:\n" + json.dumps(
            [unstructure(scenes[sid]) for sid in batch.scene_ids if sid in scenes]
            if batch.count != total_shots else unstructure(graph)["scenes"],
            ensure_ascii=False, indent=1),
        head,
        (f"The film should last about {target_seconds:g} seconds, so a shot lasts about "
         f"{per_shot:.1f} seconds (between 2 and 8). For each shot give: id, scene_id, a one-line "
         "description, an image_prompt that stands on its own (subject, action, framing, setting, "
         "light; name the characters in frame; leave out the story's style, which is added to "
         "every shot), a motion_prompt (camera move and motion), a "
         "negative_prompt, duration_s, the names of the characters in frame, and a narration: "
         "one sentence of voice-over spoken over the shot, about 8 to 20 words (about as long to "
         "say as the shot lasts), telling the story rather than describing the picture. Write the "
         "narration in the language the idea is written in; if that is unclear, in English."),
    ]
    if previous:
        lines.append("For continuity, the shots just before these:\n" + "\n".join(previous))
    return [system_message("shot_plan"), {"role": "user", "content": "\n\n".join(lines)}]


def repair_message(error: str) -> dict[str, str]:
    return {"role": "user", "content": (
        f"That reply cannot be used: {error}\n"
        "Reply again with the complete corrected JSON object only, matching the schema."
    )}
