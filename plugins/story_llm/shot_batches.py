"""Shot planning in batches for the chat story writers: the shots spread over the scenes,
cut into requests of at most ``batch_shots`` shots, each part checkpointed as it arrives (a
resumed run asks only for the parts still missing), and a part cut off at the output limit
asked for again in halves."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from reelforge.errors import StageError
from reelforge.plugins.story_llm import prompts
from reelforge.plugins.story_llm.asking import Truncated, ask, cap_words
from reelforge.plugins.story_llm.prompts import ShotBatch
from reelforge.plugins.story_llm.schemas import ShotDraft, check_shot_batch, finish_plan
from reelforge.records import SceneGraph, ShotPlan, Story, converter, structure

if TYPE_CHECKING:
    from reelforge.plugins.story_llm.chat import ChatStoryWriter

log = logging.getLogger("reelforge.story_llm")


def allocate(graph: SceneGraph, shots: int) -> list[tuple[str, int]]:
    """Spread ``shots`` evenly over the scenes in order (earlier scenes get the remainder)."""
    base, extra = divmod(shots, len(graph.scenes))
    parts = [(scene.id, base + (1 if i < extra else 0)) for i, scene in enumerate(graph.scenes)]
    return [(sid, n) for sid, n in parts if n]


def make_batches(parts: list[tuple[str, int]], size: int) -> list[ShotBatch]:
    """Cut the per-scene allocation into requests of at most ``size`` shots, in film order."""
    batches: list[ShotBatch] = []
    current: list[tuple[str, int]] = []
    filled = 0
    first_id = 1
    for scene_id, n in parts:
        while n:
            take = min(n, size - filled)
            current.append((scene_id, take))
            filled += take
            n -= take
            if filled == size:
                batches.append(ShotBatch(first_id, tuple(current)))
                first_id += filled
                current, filled = [], 0
    if current:
        batches.append(ShotBatch(first_id, tuple(current)))
    return batches


def plan_shots(writer: ChatStoryWriter, story: Story, scenes: SceneGraph, job: Any = None) -> ShotPlan:
    """Plan the shots, in parts when the plan is long. With a ``job`` (a
    reelforge.StageJob), each part is checkpointed as it arrives, so after a failure a
    resumed run asks only for the parts still missing."""
    if not scenes.scenes:
        raise StageError("the scene graph has no scenes; rerun the scene_graph stage")
    total = writer.options.shots
    parts = allocate(scenes, total)
    if len(parts) < len(scenes.scenes):
        log.warning("%d shots for %d scenes: scene(s) %s get no shot", total, len(scenes.scenes),
                    ", ".join(s.id for s in scenes.scenes[len(parts):]))
    size = writer.options.batch_shots
    batches = [ShotBatch(1, tuple(parts))] if total <= size else make_batches(parts, size)
    if len(batches) > 1:
        log.info("asking for %d shots in %d parts", total, len(batches))
    # Saved parts count only for the same story, scenes and options.
    plan_key = hashlib.sha256(json.dumps(
        [converter.unstructure(story), converter.unstructure(scenes),
         converter.unstructure(writer.options)], sort_keys=True, default=str).encode()).hexdigest()[:16]
    saved: dict[str, Any] = {}
    if job is not None and job.checkpoint.get("plan_key") == plan_key:
        saved = dict(job.checkpoint.get("parts") or {})
    drafts: list[ShotDraft] = []
    for n, batch in enumerate(batches, start=1):
        key = str(batch.first_id)
        if key in saved:
            part = [structure(d, ShotDraft, f"checkpoint part {key}") for d in saved[key]]
            log.info("shots %d-%d: reusing the part saved by an earlier run", batch.first_id, batch.last_id)
        else:
            part = _plan_batch(writer, story, scenes, batch, total, drafts,
                               job=job, fraction=(n - 1) / len(batches))
            if job is not None:
                saved[key] = converter.unstructure(part)
                job.save_checkpoint(plan_key=plan_key, parts=saved)
        drafts += part
        if job is not None:
            job.progress(n / len(batches), f"shots {batch.first_id}-{batch.last_id} of {total}")
    if len(drafts) != total:  # guards the batching arithmetic, never the model
        raise StageError(f"planned {len(drafts)} shots instead of {total}")
    return finish_plan(drafts, story, base_seed=writer.options.seed,
                       target_seconds=writer.options.target_seconds)


def _plan_batch(writer: ChatStoryWriter, story: Story, graph: SceneGraph, batch: ShotBatch, total: int,
                before: list[ShotDraft], *, job: Any = None, fraction: float = 0.0) -> list[ShotDraft]:
    """One request's shots (``batch``), the last few shots planned before it shown for
    continuity; a cut-off answer is asked for again in two halves, never kept."""
    previous = [f"{n}. [{d.scene_id}] {d.description}" for n, d in enumerate(before, 1)][-3:]
    messages = prompts.shot_messages(story, graph, batch, total_shots=total,
                                     target_seconds=writer.options.target_seconds,
                                     previous=previous)
    cap = writer.output_cap("shot_plan", batch.count)
    try:
        return ask(writer, messages, "shot_plan", lambda data: check_shot_batch(
            data, count=batch.count, scene_ids=batch.scene_ids), cap=cap, job=job, fraction=fraction)
    except Truncated:
        if batch.count == 1:
            raise StageError(
                f"{writer._who()} cut off its answer for shot {batch.first_id} at its output "
                f"limit{cap_words(cap)}; {writer._raise_hint()}") from None
        # Never keep a cut-off list: ask for the two halves separately instead.
        first, second = batch.halves()
        log.info("the answer for shots %d-%d was cut off at the output limit; asking for "
                 "%d-%d and %d-%d separately", batch.first_id, batch.last_id,
                 first.first_id, first.last_id, second.first_id, second.last_id)
        head = _plan_batch(writer, story, graph, first, total, before, job=job, fraction=fraction)
        return head + _plan_batch(writer, story, graph, second, total, before + head,
                                  job=job, fraction=fraction)
