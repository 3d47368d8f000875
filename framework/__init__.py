"""reelforge: idea -> story -> scene graph -> shot plan -> images -> clips -> film.

This package is the public API plugin authors import::

    from framework import hookimpl, Shot, ShotJob, RetryableServiceError
"""

from __future__ import annotations

from pluggy import HookimplMarker

from .errors import (
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
from .protocols import ImageGenerator, NoOptions, Renderer, ShotJob, StageJob, StoryWriter
from .records import Character, Scene, SceneGraph, Shot, ShotPlan, Story

hookimpl = HookimplMarker("reelforge")

__version__ = "0.1.0"

__all__ = [
    "hookimpl", "Character", "Scene", "SceneGraph", "Shot", "ShotPlan", "Story",
    "ImageGenerator", "NoOptions", "Renderer", "ShotJob", "StageJob", "StoryWriter",
    "ConfigError", "ReelforgeError", "RetryableServiceError", "ServiceError",
    "SessionCorruptError", "SessionError", "SessionLockedError", "SessionNotFoundError",
    "StageError", "TransientError",
]
