"""The creator's loop, as changes to a session made before it runs on: edit a shot,
redo one shot stage, bring a take back, open the review gate. Each is a ``prepare``
function the Runner calls with the session locked and the backends built."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from reelforge.engine import continuity, fingerprints
from reelforge.engine.shots import PROMPT_FIELD, SHOT_PIPELINE, prompt_of
from reelforge.errors import ConfigError, SessionError
from reelforge.records import Shot, ShotPlan
from reelforge.store.session import Session

if TYPE_CHECKING:
    Prepare = Callable[[Session, dict], None]

#: Fields of a shot that `reelforge shots edit` may change.
EDITABLE = {"description", "image_prompt", "motion_prompt", "negative_prompt", "narration",
            "duration_s", "seed", "characters", "look"}

_USER_STAGES = {"image": "images", "images": "images", "video": "videos", "videos": "videos",
                "clip": "videos", "narration": "narration", "voice": "narration"}


def stage_name(stage: str) -> str:
    """The stage folder a user's word names (image, video/clip, narration/voice)."""
    try:
        return _USER_STAGES[stage]
    except KeyError:
        raise ConfigError(f"unknown stage {stage!r}; use image, narration or video") from None


def saved_plan(session: Session) -> ShotPlan:
    plan = session.read_step_output("shots")
    if plan is None:
        raise SessionError(f"session {session.id} has no shot plan yet; run it first")
    return plan


def plan_shot(plan: ShotPlan, shot_id: int) -> Shot:
    for shot in plan.shots:
        if shot.id == shot_id:
            return shot
    ids = ", ".join(str(s.id) for s in plan.shots)
    raise ConfigError(f"no shot {shot_id} in this session (shots: {ids})")


def edit_shot(session: Session, plan: ShotPlan, shot_id: int, changes: dict[str, Any]) -> Shot:
    """Change one shot in shots.json (validated, written atomically). The runner then redoes
    only what the change reaches: a new image prompt its image, clip and the film; a new
    narration line its voice, clip timing and the film; a new motion prompt its clip."""
    from reelforge.records import structure, unstructure

    unknown = set(changes) - EDITABLE
    if unknown:
        raise ConfigError(f"cannot edit {', '.join(sorted(unknown))}; editable: {', '.join(sorted(EDITABLE))}")
    data = unstructure(plan)
    for entry in data["shots"]:
        if entry["id"] == shot_id:
            entry.update(changes)
            break
    else:
        plan_shot(plan, shot_id)  # raises, naming the shots there are
    try:
        new_plan = structure(data, ShotPlan, "shots.json")
    except ValueError as exc:
        raise ConfigError(f"shot {shot_id}: {exc}") from None
    session.save_step_output("shots", new_plan)
    return plan_shot(new_plan, shot_id)


def redo(shot_id: int, stage: str, seed: int | None, new_seed: bool) -> Prepare:
    """Make one shot's ``stage`` again: the current file becomes a rejected take (never
    brought back on its own), or, with a seed, the shot's seed changes in shots.json. With
    ``--continuity last-frame``, the clips that follow from it in its scene are made again
    too (reelforge.engine.continuity.redo_plan says which)."""
    name = stage_name(stage)

    def prepare(session: Session, backends: dict) -> None:
        plan = saved_plan(session)
        shot = plan_shot(plan, shot_id)
        continuity.mark_remade(session, plan, continuity.redo_plan(session, plan, shot_id, name).remade, shot_id)
        if seed is not None or new_seed:
            import secrets

            value = seed if seed is not None else secrets.randbelow(2**31)
            edit_shot(session, plan, shot_id, {"seed": value})
            return  # the new seed changes the inputs: the runner redoes what depends on it
        if name not in {s.name for s in SHOT_PIPELINE if s.kind in backends}:
            raise ConfigError(f"this session has no {stage} stage (its narrator is 'none')")
        session.keep_as_take(name, shot_id, "redo requested", prompt=prompt_of(name, shot), rejected=True)

    return prepare


def use_take(shot_id: int, stage: str, take: int) -> Prepare:
    """Make take ``take`` the artifact again, pinned (kept although the shot's inputs moved
    on); its seed and prompt go back into shots.json."""
    name = stage_name(stage)

    def prepare(session: Session, backends: dict) -> None:
        plan = saved_plan(session)
        shot = plan_shot(plan, shot_id)
        spec = next(s for s in SHOT_PIPELINE if s.name == name)
        if spec.kind not in backends:
            raise ConfigError(f"this session has no {stage} stage")
        chosen = next((t for t in session.shot_state(shot_id).artifact(name).takes if t["n"] == take), None)
        if chosen is not None:
            # Back to what made the take: its seed and prompt go back into shots.json, so
            # what was made from it (a clip from a chosen image) can come back too.
            changes: dict[str, Any] = {}
            if chosen.get("seed") is not None and chosen["seed"] != shot.seed:
                changes["seed"] = chosen["seed"]
            field = PROMPT_FIELD[name]
            if isinstance(chosen.get("prompt"), str) and chosen["prompt"] != getattr(shot, field):
                changes[field] = chosen["prompt"]
            if changes:
                shot = edit_shot(session, plan, shot_id, changes)
        session.use_take(name, shot_id, take, pinned=True, prompt=prompt_of(name, shot))
        # Pinned: recorded as made from the shot's current inputs, so the next check keeps it.
        active = {s.name for s in SHOT_PIPELINE if s.kind in backends}
        follows = (continuity.previous_in_scene(saved_plan(session)).get(shot_id)
                   if name == "videos" and continuity.mode_of(session.meta) == continuity.LAST_FRAME else None)
        fp = fingerprints.of_shot_stage(session, name, shot, backends[spec.kind], active, follows=follows)
        session.repin(name, shot_id, fp)

    return prepare


def approve(session: Session, backends: dict) -> None:
    """Open a session's review gate (``--review images``)."""
    if session.meta.review is None:
        raise SessionError(f"session {session.id} was not started with --review; nothing to approve")
    session.approve()
