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
from reelforge.media.film import NARRATION_PAD_S, FilmSettings
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


def film_overlap(session: Session) -> float:
    """How many seconds the session's film lays each clip over the next (its crossfade, as
    recorded in the film settings; 0 for cuts): what a renderer drawing text over a clip
    needs (see ShotJob.film_overlap_s)."""
    recorded = session.meta.film_settings or {}
    if recorded.get("transition") != "crossfade":
        return 0.0
    seconds = recorded.get("crossfade_s", FilmSettings().crossfade_s)
    return float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else 0.0


#: Per shot stage, the shot fields its fingerprint covers, under their fingerprint keys.
STAGE_FIELDS: dict[str, dict[str, str]] = {
    "images": {"prompt": "image_prompt", "negative": "negative_prompt", "seed": "seed"},
    "narration": {"text": "narration"},
    "videos": {"motion": "motion_prompt", "negative": "negative_prompt", "duration": "duration_s", "seed": "seed"},
}


def _base(stage: str, shot: Shot, backend, image_sha: str | None) -> str:
    parts = {key: getattr(shot, field) for key, field in STAGE_FIELDS[stage].items()}
    if stage == "images":
        # What the backend is asked to draw: subject and look. A shot planned before looks were
        # kept apart holds the look in its prompt, so its fingerprint is what it always was.
        parts["prompt"] = looks.compose(shot.image_prompt, shot.look)
    if stage == "videos":
        parts["image"] = image_sha
    return fingerprint(stage=stage, **parts, backend=backend.name, options=backend.fingerprint_options)


def inputs_of(stage: str, shot: Shot, backend) -> dict[str, Any]:
    """The shot's fields that make its ``stage`` (as shots.json holds them: the planned
    duration, not the stretched one) and the backend's options: what a take records, and
    what `reelforge use` puts back."""
    fields = [*STAGE_FIELDS[stage].values(), *(("look",) if stage == "images" else ()),
              *getattr(backend.instance, "fingerprint_fields", ())]
    inputs: dict[str, Any] = {f: getattr(shot, f) for f in dict.fromkeys(fields) if hasattr(shot, f)}
    inputs = json.loads(json.dumps(inputs, default=str))  # plain JSON: tuples become lists
    inputs["options"] = json.loads(json.dumps(backend.fingerprint_options, default=str))
    return inputs


def of_inputs(stage: str, shot: Shot, backend, image_sha: str | None, overlap_s: float = 0.0) -> str:
    """The fingerprint of ``shot``'s inputs to ``stage`` on ``backend`` (``overlap_s``: the
    film's crossfade, an input only to a renderer that says it uses it)."""
    if stage == "videos" and overlap_s > 0 and getattr(backend.instance, "uses_film_overlap", False):
        # Only when there is an overlap: a film of cuts keeps the fingerprints it had.
        return fingerprint(stage=stage, film_overlap_s=round(overlap_s, 3),
                           inner=of_inputs(stage, shot, backend, image_sha))
    # A backend that draws more of the shot than its prompts (the storyboard draws the
    # description) names those fields in ``fingerprint_fields``: changing them redoes it.
    extra = {f: getattr(shot, f, None) for f in getattr(backend.instance, "fingerprint_fields", ())}
    if extra:
        return fingerprint(stage=stage, shot_fields=extra, inner=_base(stage, shot, backend, image_sha))
    return _base(stage, shot, backend, image_sha)


def of_shot_stage(session: Session, stage: str, shot: Shot, backend, active: set[str],
                  film: str | None = None, follows: int | None = None) -> str:
    """The fingerprint of what ``stage`` would make of ``shot`` now (a clip's covers its
    image; an image's covers the portraits it is given, for a backend that takes
    references); ``film`` is the film's look, read from the story when not given. ``follows``:
    the shot whose clip's last frame this clip starts from (``--continuity last-frame``),
    whose clip's digest it then covers instead of the image's."""
    effective = effective_shot(session, stage, shot, active, film)
    overlap = film_overlap(session) if stage == "videos" else 0.0
    if stage == "videos" and follows is not None:
        before = session.shot_state(follows).video.sha256
        return fingerprint(stage=stage, start="last-frame", after=before,
                           inner=of_inputs(stage, effective, backend, None, overlap))
    image_sha = session.shot_state(shot.id).image.sha256 if stage == "videos" else None
    fp = of_inputs(stage, effective, backend, image_sha, overlap)
    if stage == "images":
        from reelforge.engine.cast import references_for_backend

        refs = references_for_backend(session, shot, backend)
        if refs:  # none: the fingerprint is what it was before the cast existed
            fp = fingerprint(stage=stage, inner=fp, references=[[r.name, r.kind, r.sha256] for r in refs])
    return fp
