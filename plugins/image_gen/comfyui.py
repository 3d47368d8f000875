"""The ComfyUI image generator (``--image-gen comfyui``): each shot's still from a
text-to-image workflow template, on the same client as the ComfyUI renderer. Its positive
prompt is the shot's image prompt joined with the film's look (``shot.look``, see
reelforge.looks), as ``ShotJob.prompt`` gives it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from reelforge import Shot, ShotJob, hookimpl
from reelforge.plugins.comfy_render.options import ImageOptions


class ComfyImageGenerator:
    """Generates a shot's still with a ComfyUI text-to-image workflow template (which may take
    the shot's reference images: see comfy_render/references.py)."""

    name: ClassVar[str] = "comfyui"
    Options: ClassVar[type] = ImageOptions
    remote: ClassVar[bool] = True
    "Its work runs on GPU servers that every worker shares (reelforge.protocols)."
    takes_references: bool = False
    """Whether the runner hands each shot its characters' reference images: true exactly when
    the workflow template declares reference slots (reference_1, ...)."""

    def __init__(self, options: ImageOptions | None = None):
        from reelforge.plugins.comfy_render.backend import ComfyBackend

        self.options = options if options is not None else ImageOptions()
        self.backend = ComfyBackend(self.options, kind="image")
        self.takes_references = self.backend.template.reference_slots > 0
        self.concurrency = self.backend.concurrency

    def generate(self, shot: Shot, job: ShotJob) -> Path:
        return self.backend.run(shot, job, None)

    def preflight(self) -> None:
        """Before a run: every server answers as ComfyUI and has the template's nodes (a
        wrong URL or missing nodes stop the run; it starts if at least one server answers)."""
        self.backend.preflight()

    def close(self) -> None:
        self.backend.close()


@hookimpl
def register_image_generators(register):
    register(ComfyImageGenerator)
