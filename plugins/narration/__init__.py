"""Narrators: speak each shot's narration line into a WAV.

``espeak`` (the default: eSpeak NG bundled in a wheel, offline, no model) and ``piper``
(a neural voice from a local model file). A narrator is a class with ``name``, an attrs
``Options``, ``concurrency`` and ``narrate(shot, job) -> Path`` (see
:class:`reelforge.protocols.Narrator`).
"""

from __future__ import annotations

from reelforge import hookimpl

from reelforge.plugins.narration.espeak import EspeakNarrator, EspeakOptions
from reelforge.plugins.narration.piper import PiperNarrator, PiperOptions

__all__ = ["EspeakNarrator", "EspeakOptions", "PiperNarrator", "PiperOptions"]


@hookimpl
def register_narrators(register):
    register(EspeakNarrator)
    register(PiperNarrator)
