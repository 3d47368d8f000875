"""reelforge: idea -> story -> scene graph -> shot plan -> images -> clips -> film.

This package is the public API plugin authors import::

    from reelforge import hookimpl, Shot, ShotJob, RetryableServiceError
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

    hookimpl: HookimplMarker

__version__ = "0.1.0"

# The records, protocols and pluggy load on first use (PEP 562), so that `reelforge --help`,
# which imports this package, does not pay for attrs, cattrs and pluggy.
_LAZY = {
    **dict.fromkeys(("ImageGenerator", "Narrator", "NoOptions", "Renderer", "ShotJob", "StageJob", "StoryWriter"),
                    ".protocols"),
    **dict.fromkeys(("Character", "Scene", "SceneGraph", "Shot", "ShotPlan", "Story"), ".records"),
}


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        from pluggy import HookimplMarker

        value: Any = HookimplMarker("reelforge")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "hookimpl", "Character", "Scene", "SceneGraph", "Shot", "ShotPlan", "Story",
    "ImageGenerator", "Narrator", "NoOptions", "Renderer", "ShotJob", "StageJob", "StoryWriter",
    "ConfigError", "ReelforgeError", "RetryableServiceError", "ServiceError",
    "SessionCorruptError", "SessionError", "SessionLockedError", "SessionNotFoundError",
    "StageError", "TransientError",
]
