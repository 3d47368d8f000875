"""An image generator for the reference tests of a real `reelforge run`: the ComfyUI one,
handing every shot the reference images named in REELFORGE_TEST_REFS (``name=path,...``),
as the runner does for a generator that takes references. Loaded via REELFORGE_PLUGINS."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reelforge import hookimpl
from reelforge.plugins.image_gen.comfyui import ComfyImageGenerator
from reelforge.protocols import Reference


def references() -> tuple[Reference, ...]:
    refs = []
    for item in filter(None, os.environ.get("REELFORGE_TEST_REFS", "").split(",")):
        name, _, path = item.partition("=")
        data = Path(path).read_bytes()
        refs.append(Reference(name=name, path=Path(path), sha256=hashlib.sha256(data).hexdigest()))
    return tuple(refs)


class ComfyWithReferences(ComfyImageGenerator):
    name = "comfyui-refs"

    def generate(self, shot, job):
        job.references = references()
        return super().generate(shot, job)


@hookimpl
def register_image_generators(register):
    register(ComfyWithReferences)
