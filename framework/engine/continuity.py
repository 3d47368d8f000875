"""Continuity between the clips of a scene (``reelforge run --continuity last-frame``): in
each scene (the shots with the same ``scene_id``, in plan order) the clip of every shot
but the first starts from the last frame of the clip before it, instead of from the shot's
own still. A session records its choice (``Meta.continuity``); a resume keeps it.

What follows from it, each where it belongs: the scheduler starts such a clip once the one
before it is settled in this run (reelforge.engine.shots); its fingerprint covers the
digest of the clip before (reelforge.engine.fingerprints), so a remade clip remakes the
ones after it in its scene and nothing else; a redo says which clips follow (redo_plan)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from reelforge.errors import ConfigError, SessionError

if TYPE_CHECKING:
    import threading

    from reelforge.records import ShotPlan
    from reelforge.store.session import Session

NONE = "none"
LAST_FRAME = "last-frame"
#: The values of ``--continuity``.
MODES = (NONE, LAST_FRAME)


def check_mode(value: Any) -> str:
    """``value`` as a continuity mode, or a ConfigError naming the valid ones."""
    if value not in MODES:
        raise ConfigError(f"unknown continuity {value!r}; use {' or '.join(MODES)}")
    return value


def recorded(mode: str | None) -> str | None:
    """How a session records a mode: None for none, as in sessions made before continuity."""
    return None if mode in (None, NONE) else mode


def mode_of(meta) -> str:
    """The continuity a session records (``none`` for sessions made before it existed)."""
    value = getattr(meta, "continuity", None)
    if value is None:
        return NONE
    if value not in MODES:
        raise SessionError(f"session {meta.id} records an unknown continuity {value!r} "
                           f"(valid: {', '.join(MODES)}); run it with --continuity none or last-frame")
    return value


def check_renderer(mode: str, video) -> None:
    """Refuse last-frame continuity for a renderer that does not start a clip from an image
    (``starts_from_image = True`` on the backend class says it does)."""
    if mode != LAST_FRAME or video is None:
        return
    if not getattr(video.instance, "starts_from_image", False):
        raise ConfigError(f"--continuity last-frame needs a renderer that starts each clip from an image; "
                          f"{video.name!r} does not say it does (starts_from_image). Use an "
                          f"image-to-video renderer (kenburns, comfyui) or --continuity none")


def previous_in_scene(plan: ShotPlan) -> dict[int, int]:
    """Shot id -> the shot before it in its scene (plan order), for every shot but the
    first of each scene: whose last frame its clip starts from."""
    last: dict[str, int] = {}
    before: dict[int, int] = {}
    for shot in plan.shots:
        if shot.scene_id in last:
            before[shot.id] = last[shot.scene_id]
        last[shot.scene_id] = shot.id
    return before


def followers(plan: ShotPlan, shot_id: int) -> list[int]:
    """The shots whose clips follow, frame by frame, from ``shot_id``'s clip: the later
    shots of its scene, in order."""
    after = {prev: nxt for nxt, prev in previous_in_scene(plan).items()}
    chain: list[int] = []
    while shot_id in after:
        shot_id = after[shot_id]
        chain.append(shot_id)
    return chain


def start_frame(session: Session, previous: int, shot_id: int,
                cancelled: threading.Event | None = None) -> Path:
    """The last frame of shot ``previous``'s clip, extracted into shot ``shot_id``'s clip
    scratch folder (made again each time: the same clip gives the same bytes)."""
    from reelforge.media.ffmpeg import last_frame

    clip = session.path / session.shot_state(previous).video.path
    out = session.work_dir("videos", shot_id) / f"start_from_shot_{previous:03d}.png"
    return last_frame(clip, out, cancelled=cancelled)


def _ids(ids: list[int]) -> str:
    words = [str(i) for i in ids]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


@attrs.frozen
class RedoPlan:
    """What a redo of one shot remakes because clips follow from each other."""

    remade: tuple[int, ...] = ()
    "Shots whose clips are made again besides what the redo itself remakes."
    message: str | None = None
    "Said before the redo starts; None when continuity changes nothing."


def redo_plan(session: Session, plan: ShotPlan, shot_id: int, stage: str, mode: str | None = None) -> RedoPlan:
    """Which clips a redo of ``shot_id``'s ``stage`` (images, narration or videos) remakes
    under ``mode`` (default: the session's continuity), and how to say so."""
    if (mode or mode_of(session.meta)) != LAST_FRAME or stage not in ("images", "videos"):
        return RedoPlan()
    later = followers(plan, shot_id)
    before = previous_in_scene(plan).get(shot_id)
    if stage == "images" and before is not None:
        return RedoPlan((), f"Continuity: shot {shot_id}'s clip starts from shot {before}'s last frame, "
                            f"not from its image: the new image does not change its clip.")
    if not later:
        return RedoPlan()
    verb = "follows" if len(later) == 1 else "follow"
    shots = f"shot{'s' if len(later) > 1 else ''} {_ids(later)}"
    if stage == "images":  # the first shot of its scene: its clip starts from this image
        return RedoPlan((shot_id, *later),
                        f"Continuity: shot {shot_id}'s clip starts from its image, and {shots} {verb} from "
                        f"shot {shot_id}'s last frame: the clips of shots {_ids([shot_id, *later])} "
                        f"will be made again.")
    return RedoPlan(tuple(later), f"Continuity: {shots} {verb} from shot {shot_id}'s last frame and will "
                                  f"be made again.")


def mark_remade(session: Session, plan: ShotPlan, shot_ids: tuple[int, ...], shot_id: int) -> None:
    """Set the clips of ``shot_ids`` to be made again (each kept as a take, marked so it is
    not brought back on its own), so they are remade even if the clip they follow comes out
    the same."""
    for sid in shot_ids:  # each take keeps the inputs its record holds
        session.keep_as_take("videos", sid, f"redo of shot {shot_id}: follows from its last frame", rejected=True)
