"""Fingerprints: a digest of the inputs that made an artifact. A done artifact whose
recorded fingerprint differs from its inputs' fingerprint now is made again (and the old
file kept as a take); one made from exactly these inputs is kept."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import attrs

from reelforge import looks
from reelforge.media.film import NARRATION_PAD_S
from reelforge.records import Shot
from reelforge.store.session import Session


def fingerprint(**parts: Any) -> str:
    """A digest of a shot's inputs: a changed prompt, seed, backend or option changes it."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def film_look(session: Session) -> str:
    """The film's look: its story's style ("" before the story is written)."""
    return looks.film_look(session.read_step_output("story"))


def effective_shot(session: Session, stage: str, shot: Shot, active: set[str], film: str | None = None) -> Shot:
    """The shot as its ``stage`` backend sees it: with the look it is made with (its own,
    else ``film``, the film's look: read from the story when not given); a clip lasts at
    least as long as the shot's narration (plus a pad), the planned duration is a default, not a cut."""
    shot = looks.resolve(shot, film_look(session) if film is None else film)
    if stage == "videos" and "narration" in active:
        voice = session.shot_state(shot.id).narration.info.get("duration")
        if isinstance(voice, (int, float)) and voice + NARRATION_PAD_S > shot.duration_s:
            # Rounded up to a tenth: a voice made again a few samples longer or shorter
            # (eSpeak is not bit-exact) must not make the clip again.
            return attrs.evolve(shot, duration_s=min(600.0, math.ceil((voice + NARRATION_PAD_S) * 10) / 10))
    return shot


def _base(stage: str, shot: Shot, backend, image_sha: str | None) -> str:
    if stage == "images":
        # What the backend is asked to draw: subject and look. A shot planned before looks were
        # kept apart holds the look in its prompt, so its fingerprint is what it always was.
        return fingerprint(stage=stage, prompt=looks.compose(shot.image_prompt, shot.look),
                           negative=shot.negative_prompt,
                           seed=shot.seed, backend=backend.name, options=backend.fingerprint_options)
    if stage == "narration":
        return fingerprint(stage=stage, text=shot.narration, backend=backend.name,
                           options=backend.fingerprint_options)
    return fingerprint(stage=stage, motion=shot.motion_prompt, negative=shot.negative_prompt,
                       duration=shot.duration_s, seed=shot.seed, image=image_sha,
                       backend=backend.name, options=backend.fingerprint_options)


def of_inputs(stage: str, shot: Shot, backend, image_sha: str | None) -> str:
    """The fingerprint of ``shot``'s inputs to ``stage`` on ``backend``."""
    # A backend that draws more of the shot than its prompts (the storyboard draws the
    # description) names those fields in ``fingerprint_fields``: changing them redoes it.
    extra = {f: getattr(shot, f, None) for f in getattr(backend.instance, "fingerprint_fields", ())}
    if extra:
        return fingerprint(stage=stage, shot_fields=extra, inner=_base(stage, shot, backend, image_sha))
    return _base(stage, shot, backend, image_sha)


def of_shot_stage(session: Session, stage: str, shot: Shot, backend, active: set[str],
                  film: str | None = None, follows: int | None = None) -> str:
    """The fingerprint of what ``stage`` would make of ``shot`` now (a clip's covers its
    image); ``film`` is the film's look, read from the story when not given. ``follows``:
    the shot whose clip's last frame this clip starts from (``--continuity last-frame``),
    whose clip's digest it then covers instead of the image's."""
    effective = effective_shot(session, stage, shot, active, film)
    if stage == "videos" and follows is not None:
        before = session.shot_state(follows).video.sha256
        return fingerprint(stage=stage, start="last-frame", after=before,
                           inner=of_inputs(stage, effective, backend, None))
    image_sha = session.shot_state(shot.id).image.sha256 if stage == "videos" else None
    return of_inputs(stage, effective, backend, image_sha)
