"""The creator's loop, as changes to a session made before it runs on: edit a shot,
redo one shot stage, bring a take back, open the review gate. Each is a ``prepare``
function the Runner calls with the session locked and the backends built."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from reelforge.engine import continuity, fingerprints
from reelforge.engine.shots import SHOT_PIPELINE
from reelforge.errors import ConfigError, SessionError
from reelforge.records import Shot, ShotPlan
from reelforge.store.meta import DONE
from reelforge.store.session import Session

if TYPE_CHECKING:
    Prepare = Callable[[Session, dict], "list[str] | None"]

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
    session.mark_edited(shot_id)  # first: a crash before the next line still shows work pending
    session.save_step_output("shots", new_plan)
    return plan_shot(new_plan, shot_id)


#: What each stage makes, in messages.
LABEL = {"images": "image", "narration": "voice", "videos": "clip"}

#: The `shots edit` option that changes what each stage is made from.
_EDIT_FLAG = {"images": "--image-prompt", "narration": "--narration", "videos": "--motion-prompt"}


def uses_seed(backend) -> bool:
    """Whether ``backend`` makes something else from another seed (its class's ``uses_seed``,
    True unless it says otherwise; see docs/plugin_hooks.md)."""
    return bool(getattr(backend.instance, "uses_seed", True))


def _stage_backend(backends: dict, name: str, stage: str):
    spec = next(s for s in SHOT_PIPELINE if s.name == name)
    if spec.kind not in backends:
        raise ConfigError(f"this session has no {stage} stage (its {spec.kind} backend is 'none')")
    return backends[spec.kind], {s.name for s in SHOT_PIPELINE if s.kind in backends}


def known_inputs(session: Session, stage: str, shot: Shot, backend, active: set[str]) -> dict | None:
    """The inputs of the shot's current ``stage`` artifact when its record lacks them (made
    by an older version) but its fingerprint shows it was made from the shot as it is."""
    art = session.shot_state(shot.id).artifact(stage)
    if art.inputs or art.state != DONE:
        return None
    if art.fingerprint == fingerprints.of_shot_stage(session, stage, shot, backend, active):
        return fingerprints.inputs_of(stage, shot, backend)
    return None


def _fresh_seed(taken: set) -> int:
    import secrets

    while True:
        value = secrets.randbelow(2**31)
        if value not in taken:
            return value


def _mark_followers(session: Session, plan: ShotPlan, shot_id: int, stage: str) -> None:
    """With --continuity last-frame: the clips that start from this shot's in its scene are
    marked to be made again (before anything else changes, so a crash keeps the mark)."""
    continuity.mark_remade(session, plan, continuity.redo_plan(session, plan, shot_id, stage).remade, shot_id)


def redo(shot_id: int, stage: str, seed: int | None, new_seed: bool) -> Prepare:
    """Make one shot's ``stage`` again, asking for something new: a new seed (``seed``, else
    a random one no take of the shot has used). The current file becomes a rejected take
    (never brought back on its own). A redo of a clip keeps the shot's image (pinned to the
    new seed). A backend whose output does not depend on the seed (``uses_seed = False``)
    is refused with what to change instead: a redo would only make the same file again.
    With ``--continuity last-frame``, the clips that follow from it in its scene are made
    again too (reelforge.engine.continuity.redo_plan says which)."""
    name = stage_name(stage)

    def prepare(session: Session, backends: dict) -> list[str]:
        plan = saved_plan(session)
        shot = plan_shot(plan, shot_id)
        backend, active = _stage_backend(backends, name, stage)
        label = LABEL[name]
        art = session.shot_state(shot_id).artifact(name)
        if not uses_seed(backend):
            raise ConfigError(
                f"{backend.name} makes the same {label} of a shot whatever its seed, so a redo would only "
                f"make this one again; change what it is made from instead, e.g. "
                f"reelforge shots edit {session.id} {shot_id} {_EDIT_FLAG[name]} \"...\"")
        if name == "narration":  # a voice is not made from the seed: made again as it is
            if seed is not None or new_seed:
                raise ConfigError("a voice does not depend on the shot's seed; redo it without --seed/--new-seed")
            _mark_followers(session, plan, shot_id, name)
            session.mark_edited(shot_id)
            session.keep_as_take(name, shot_id, "redo requested", rejected=True,
                                 inputs=known_inputs(session, name, shot, backend, active))
            return [f"Shot {shot_id}: the voice is made again ({backend.name} varies from one take to the next)."]
        if art.state != DONE and seed is None and not new_seed:
            session.mark_edited(shot_id)
            return [f"Shot {shot_id}: its {label} is not made yet; it is made now (seed {shot.seed})."]
        value = seed if seed is not None else _fresh_seed(
            {shot.seed, *(t.get("seed") for st in ("images", "videos")
                          for t in session.shot_state(shot_id).artifact(st).takes)})
        if value == shot.seed and art.state == DONE:
            raise ConfigError(f"shot {shot_id} already has seed {value}, so its {label} would be the same; "
                              f"give another --seed, or none for a new one")
        inputs = known_inputs(session, name, shot, backend, active)
        image_art = session.shot_state(shot_id).image
        keep_image = (name == "videos" and "images" in active and image_art.state == DONE
                      and image_art.fingerprint == fingerprints.of_shot_stage(
                          session, "images", shot, backends["image"], active))
        # With --continuity last-frame a later clip of a scene starts from the clip before, not
        # from this image: a new picture (and seed) leaves that clip as it is.
        after = (continuity.previous_in_scene(plan).get(shot_id)
                 if name == "images" and "videos" in active
                 and continuity.mode_of(session.meta) == continuity.LAST_FRAME else None)
        clip_art = session.shot_state(shot_id).video
        keep_clip = (after is not None and clip_art.state == DONE and clip_art.fingerprint
                     == fingerprints.of_shot_stage(session, "videos", shot, backends["video"], active, follows=after))
        # The seed first: a crash after it is a redo all the same (the next check keeps the
        # old file as a take and makes a new one), and never makes the same file again.
        _mark_followers(session, plan, shot_id, name)
        new_shot = edit_shot(session, plan, shot_id, {"seed": value})
        session.keep_as_take(name, shot_id, "redo requested", rejected=True, inputs=inputs)
        if keep_image:  # the clip is redone, not the picture it is made from
            session.repin("images", shot_id, fingerprints.of_shot_stage(
                session, "images", new_shot, backends["image"], active))
        if keep_clip:  # the picture is redone, not the clip that starts from another's last frame
            session.repin("videos", shot_id, fingerprints.of_shot_stage(
                session, "videos", new_shot, backends["video"], active, follows=after))
        follows = " (and its clip)" if name == "images" and "videos" in active and not keep_clip else ""
        return [f"Shot {shot_id}: new seed {value} (was {shot.seed}); its {label}{follows} is made again."]

    return prepare


def use_take(shot_id: int, stage: str, take: int) -> Prepare:
    """Make take ``take`` the artifact again, pinned (kept although the shot's inputs moved
    on); the inputs it records (prompts, narration, seed, duration) go back into shots.json,
    so what the session shows matches the picture and what was made from it (a clip from a
    chosen image) can come back too. A take an older version kept, without its inputs,
    brings back its seed only, and says so."""
    name = stage_name(stage)

    def prepare(session: Session, backends: dict) -> list[str]:
        from reelforge.records import unstructure

        plan = saved_plan(session)
        shot = plan_shot(plan, shot_id)
        backend, active = _stage_backend(backends, name, stage)
        label = LABEL[name]
        displaced = known_inputs(session, name, shot, backend, active)
        chosen, _ = session.find_take(name, shot_id, take)  # refused before anything changes
        notes: list[str] = []
        changes: dict[str, Any] = {}
        recorded = chosen.get("inputs")
        current = unstructure(shot)
        if recorded:
            changes = {k: v for k, v in recorded.items()
                       if k in EDITABLE and k in current and current[k] != v}
            options = recorded.get("options")
            now = json.loads(json.dumps(backend.fingerprint_options, default=str))
            if options is not None and options != now:
                notes.append(f"Take {take} was made with {chosen.get('backend') or backend.name} options "
                             f"{options}; the session keeps its own ({now}).")
        else:
            if chosen.get("seed") is not None and chosen["seed"] != shot.seed:
                changes["seed"] = chosen["seed"]
            notes.append(f"Take {take}'s inputs were not recorded (kept by an older version): only its "
                         f"seed goes back; shots.json keeps the shot's current prompts.")
        session.mark_edited(shot_id)
        if changes:
            shot = edit_shot(session, plan, shot_id, changes)
        session.use_take(name, shot_id, take, pinned=True, inputs=displaced)
        # Pinned: recorded as made from the shot's current inputs, so the next check keeps it.
        follows = (continuity.previous_in_scene(saved_plan(session)).get(shot_id)
                   if name == "videos" and continuity.mode_of(session.meta) == continuity.LAST_FRAME else None)
        session.repin(name, shot_id, fingerprints.of_shot_stage(session, name, shot, backend, active, follows=follows))
        back = f", with its {', '.join(sorted(changes))} back in shots.json" if changes else ""
        return [f"Shot {shot_id}: {label} take {take} brought back{back}.", *notes]

    return prepare


def approve(session: Session, backends: dict) -> None:
    """Open a session's review gate (``--review images``)."""
    if session.meta.review is None:
        raise SessionError(f"session {session.id} was not started with --review; nothing to approve")
    session.approve()
