"""reelforge: idea -> story -> scene graph -> shot plan -> images -> clips -> film.

This package is the public API plugin authors and scripts import::

    import reelforge

    @reelforge.hookimpl
    def register_image_generators(register): ...

    result = reelforge.Runner("output").start("A lighthouse keeper befriends a storm")

Its parts: ``reelforge.store`` (the session store), ``reelforge.engine`` (the Runner, the
units of work, engines), ``reelforge.media`` (ffmpeg, soundtrack, film), ``reelforge.cli``
and ``reelforge.web``; the built-in plugins are ``reelforge.plugins``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from reelforge.errors import (
    ConfigError,
    ReelforgeError,
    RetryableServiceError,
    ServiceError,
    SessionCorruptError,
    SessionError,
    SessionLockedError,
    SessionNotFoundError,
    StageError,
    TransientError,
)

if TYPE_CHECKING:
    from pluggy import HookimplMarker

    from reelforge.protocols import ImageGenerator, Narrator, NoOptions, Renderer, ShotJob, StageJob, StoryWriter
    from reelforge.records import Character, Scene, SceneGraph, Shot, ShotPlan, Story
    from reelforge.engine.base import Engine, ShotWork, Unit
    from reelforge.engine.runner import Interrupted, RunResult, Runner
    from reelforge import testing

    hookimpl: HookimplMarker

__version__ = "0.1.0"

# The records, protocols and pluggy load on first use (PEP 562), so that `reelforge --help`,
# which imports this package, does not pay for attrs, cattrs and pluggy.
_LAZY = {
    **dict.fromkeys(("ImageGenerator", "Narrator", "NoOptions", "Renderer", "ShotJob", "StageJob", "StoryWriter"),
                    ".protocols"),
    **dict.fromkeys(("Character", "Scene", "SceneGraph", "Shot", "ShotPlan", "Story"), ".records"),
    **dict.fromkeys(("Engine", "ShotWork", "Unit"), ".engine.base"),
    **dict.fromkeys(("Interrupted", "RunResult", "Runner"), ".engine.runner"),
}


def __getattr__(name: str) -> Any:
    if name == "testing":
        value: Any = importlib.import_module(".testing", __name__)
    elif name == "hookimpl":
        from pluggy import HookimplMarker

        value = HookimplMarker("reelforge")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "hookimpl", "Runner", "RunResult", "Interrupted", "Engine", "ShotWork", "Unit", "testing", "Character", "Scene", "SceneGraph", "Shot", "ShotPlan", "Story",
    "ImageGenerator", "Narrator", "NoOptions", "Renderer", "ShotJob", "StageJob", "StoryWriter",
    "ConfigError", "ReelforgeError", "RetryableServiceError", "ServiceError",
    "SessionCorruptError", "SessionError", "SessionLockedError", "SessionNotFoundError",
    "StageError", "TransientError",
]
