"""The ComfyUI renderer (``--renderer comfyui``): each shot's still goes through an
image-to-video workflow on one of several ComfyUI servers. See docs/comfyui.md."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from reelforge import Shot, ShotJob, hookimpl
from reelforge.plugins.comfy_render.options import ImageOptions, VideoOptions


class ComfyRenderer:
    """Renders a shot's clip with a ComfyUI image-to-video workflow template."""

    name: ClassVar[str] = "comfyui"
    Options: ClassVar[type] = VideoOptions
    remote: ClassVar[bool] = True
    "Its work runs on GPU servers that every worker shares (reelforge.protocols)."
    starts_from_image: ClassVar[bool] = True
    "Every video template has an image input (--continuity last-frame gives it the clip before's last frame)."

    def __init__(self, options: VideoOptions | None = None):
        from reelforge.plugins.comfy_render.backend import ComfyBackend  # httpx and friends only when actually used

        self.options = options if options is not None else VideoOptions()
        self.backend = ComfyBackend(self.options, kind="video")
        self.concurrency = self.backend.concurrency

    def render(self, shot: Shot, image: Path, job: ShotJob) -> Path:
        return self.backend.run(shot, job, image)

    def preflight(self) -> None:
        """Before a run: every server answers as ComfyUI and has the template's nodes (a
        wrong URL or missing nodes stop the run; it starts if at least one server answers)."""
        self.backend.preflight()

    def close(self) -> None:
        self.backend.close()


@hookimpl
def register_renderers(register):
    register(ComfyRenderer)


@hookimpl
def register_commands(cli):
    from reelforge.plugins.comfy_render.commands import add_commands

    add_commands(cli)


__all__ = ["ComfyRenderer", "ImageOptions", "VideoOptions"]
