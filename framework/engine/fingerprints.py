"""Fingerprints: a digest of the inputs that made an artifact. A done artifact whose
recorded fingerprint differs from its inputs' fingerprint now is made again (and the old
file kept as a take); one made from exactly these inputs is kept."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import attrs

from reelforge.media.film import NARRATION_PAD_S
from reelforge.records import Shot
from reelforge.store.session import Session


def fingerprint(**parts: Any) -> str:
    """A digest of a shot's inputs: a changed prompt, seed, backend or option changes it."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def effective_shot(session: Session, stage: str, shot: Shot, active: set[str]) -> Shot:
    """The shot as its ``stage`` backend sees it: a clip lasts at least as long as the
    shot's narration (plus a pad); the planned duration is a default, not a cut."""
    if stage == "videos" and "narration" in active:
        voice = session.shot_state(shot.id).narration.info.get("duration")
        if isinstance(voice, (int, float)) and voice + NARRATION_PAD_S > shot.duration_s:
            # Rounded up to a tenth: a voice made again a few samples longer or shorter
            # (eSpeak is not bit-exact) must not make the clip again.
            return attrs.evolve(shot, duration_s=min(600.0, math.ceil((voice + NARRATION_PAD_S) * 10) / 10))
    return shot


#: Per shot stage, the shot fields its fingerprint covers, under their fingerprint keys.
STAGE_FIELDS: dict[str, dict[str, str]] = {
    "images": {"prompt": "image_prompt", "negative": "negative_prompt", "seed": "seed"},
    "narration": {"text": "narration"},
    "videos": {"motion": "motion_prompt", "negative": "negative_prompt", "duration": "duration_s", "seed": "seed"},
}


def _base(stage: str, shot: Shot, backend, image_sha: str | None) -> str:
    parts = {key: getattr(shot, field) for key, field in STAGE_FIELDS[stage].items()}
    if stage == "videos":
        parts["image"] = image_sha
    return fingerprint(stage=stage, **parts, backend=backend.name, options=backend.fingerprint_options)


def inputs_of(stage: str, shot: Shot, backend) -> dict[str, Any]:
    """The shot's fields that make its ``stage`` (as shots.json holds them: the planned
    duration, not the stretched one) and the backend's options: what a take records, and
    what `reelforge use` puts back."""
    fields = [*STAGE_FIELDS[stage].values(), *getattr(backend.instance, "fingerprint_fields", ())]
    inputs: dict[str, Any] = {f: getattr(shot, f) for f in dict.fromkeys(fields) if hasattr(shot, f)}
    inputs = json.loads(json.dumps(inputs, default=str))  # plain JSON: tuples become lists
    inputs["options"] = json.loads(json.dumps(backend.fingerprint_options, default=str))
    return inputs


def of_inputs(stage: str, shot: Shot, backend, image_sha: str | None) -> str:
    """The fingerprint of ``shot``'s inputs to ``stage`` on ``backend``."""
    # A backend that draws more of the shot than its prompts (the storyboard draws the
    # description) names those fields in ``fingerprint_fields``: changing them redoes it.
    extra = {f: getattr(shot, f, None) for f in getattr(backend.instance, "fingerprint_fields", ())}
    if extra:
        return fingerprint(stage=stage, shot_fields=extra, inner=_base(stage, shot, backend, image_sha))
    return _base(stage, shot, backend, image_sha)


def of_shot_stage(session: Session, stage: str, shot: Shot, backend, active: set[str]) -> str:
    """The fingerprint of what ``stage`` would make of ``shot`` now (a clip's covers its image)."""
    image_sha = session.shot_state(shot.id).image.sha256 if stage == "videos" else None
    return of_inputs(stage, effective_shot(session, stage, shot, active), backend, image_sha)
