"""What a shot's prompt is: the values written into the workflow template (seed, prompts,
size, frames, the uploaded still), the fingerprint of the workflow they make, and the
deterministic prompt id (uuid5 of session, stage, shot, attempt) under which it is submitted
and later found again.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from pathlib import Path
from typing import Any, Sequence

from reelforge.errors import StageError
from reelforge.looks import compose
from reelforge.plugins.comfy_render.outputs import safe_component
from reelforge.plugins.comfy_render.references import reference_values
from reelforge.plugins.comfy_render.workflow import Template
from reelforge.protocols import ShotJob
from reelforge.records import Shot

#: Namespace of the deterministic prompt ids (uuid5).
PROMPT_NAMESPACE = uuid.UUID("6c0b1d1e-3f0a-5c55-9a8e-7265656c666f")


class ShotPrompts:
    """The prompts of one backend's template and options, shot by shot."""

    def __init__(self, template: Template, options: Any, *, kind: str):
        self.template = template
        self.options = options
        self.kind = kind

    def values(self, shot: Shot, job: ShotJob, image_ref: str | None,
               references: Sequence[str] | None = None) -> dict[str, Any]:
        """What is written into the template. ``references``: the uploaded names of the
        shot's reference images (None: the names their digests give, for the fingerprint)."""
        t, o = self.template, self.options
        fps = o.fps or float(t.defaults.get("fps", 12))
        prefix = f"reelforge/{safe_component(job.session_id)}/{job.stage}_shot{shot.id:03d}"
        values: dict[str, Any] = {
            "seed": shot.seed,
            "negative": shot.negative_prompt or None,
            "width": o.width or t.defaults.get("width"),
            "height": o.height or t.defaults.get("height"),
            "filename_prefix": prefix,
        }
        # The subject and the film's look (shot.look, filled in by the runner) joined: a shot
        # planned before looks were kept apart holds the look already, and is sent as before.
        picture = compose(shot.image_prompt, shot.look)
        if self.kind == "video":
            values["image"] = image_ref
            values["prompt"] = ". ".join(p for p in (shot.motion_prompt, picture) if p)
            values["fps"] = fps
            values["frames"] = self.frames(shot, fps)
        else:
            values["prompt"] = picture
        if t.reference_slots:
            values.update(reference_values(t, tuple(getattr(job, "references", ())), references, shot.id))
        return values

    def frames(self, shot: Shot, fps: float) -> int:
        """The clip's frame count, refused (naming the shot) over max_frames."""
        limit = self.options.max_frames
        if not (math.isfinite(shot.duration_s) and shot.duration_s > 0):
            raise StageError(f"shot {shot.id}: a duration of {shot.duration_s!r}s cannot be rendered")
        raw = shot.duration_s * fps
        frames = self.template.frame_count(shot.duration_s, fps) if raw <= 2 * limit else None
        if frames is None or frames > limit:
            raise StageError(f"shot {shot.id}: {shot.duration_s:g}s at {fps:g} fps needs more than "
                             f"{limit} frames (the max_frames option); shorten the shot")
        return frames

    def fingerprint(self, shot: Shot, job: ShotJob, image: Path | None) -> str:
        """A hash of the workflow this shot would be submitted with (the still and the
        reference images by content): a recorded prompt made from another template, options,
        still or references is not adopted."""
        still = hashlib.sha256(image.read_bytes()).hexdigest() if image is not None else None
        wf = self.template.render(self.values(shot, job, still))
        key = json.dumps([wf, self.template.output], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def prompt_id_for(self, job: ShotJob, hop: int = 0) -> str:
        key = f"reelforge/{job.session_id}/{job.stage}/{job.shot.id}/{job.attempt}"
        return str(uuid.uuid5(PROMPT_NAMESPACE, key + (f"/{hop}" if hop else "")))

    def units(self, shot: Shot) -> float:
        """Work units of a shot: frames for a clip, one for a still."""
        if self.kind != "video":
            return 1.0
        fps = self.options.fps or float(self.template.defaults.get("fps", 12))
        return float(self.frames(shot, fps))
