"""The hooks reelforge calls. Registration hooks add backends and commands; lifecycle
hooks let observers follow a run (progress bars, ledgers, notifications).

Hooks register or observe; they never do slow work. Lifecycle hooks get the live
:class:`reelforge.store.session.Session`; the runner never calls two of them at once.
``shot_started`` and ``shot_progress`` are called from the worker thread that runs the
shot, the others from the thread that called the Runner. An exception in an observer is reported as a warning and
does not stop the run.
"""

from __future__ import annotations

from pluggy import HookspecMarker

hookspec = HookspecMarker("reelforge")


# -- registration -------------------------------------------------------------------

@hookspec
def register_story_llms(register):
    """Register story writers: call ``register(BackendClass)`` for each.

    A story writer turns an idea into a Story, a Story into a SceneGraph and both into a
    ShotPlan (see :class:`reelforge.protocols.StoryWriter`)."""


@hookspec
def register_image_generators(register):
    """Register image generators: call ``register(BackendClass)`` for each
    (see :class:`reelforge.protocols.ImageGenerator`)."""


@hookspec
def register_renderers(register):
    """Register video renderers: call ``register(BackendClass)`` for each
    (see :class:`reelforge.protocols.Renderer`)."""


@hookspec
def register_narrators(register):
    """Register narrators (text to speech): call ``register(BackendClass)`` for each
    (see :class:`reelforge.protocols.Narrator`)."""


@hookspec
def register_engines(register):
    """Register engines: call ``register(EngineClass)`` for each. An engine schedules a
    run's per-shot units of work (see :class:`reelforge.engine.base.Engine`); users pick one
    with ``--engine NAME``, ``REELFORGE_ENGINE`` or ``engine = "NAME"`` in reelforge.toml."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``reelforge`` command group ``cli``."""


# -- lifecycle ----------------------------------------------------------------------

@hookspec
def session_started(session):
    """A run has opened ``session`` (new or resumed) and holds its lock."""


@hookspec
def session_completed(session):
    """Every step of ``session`` is done and film.mp4 exists."""


@hookspec
def stage_started(session, stage):
    """``stage`` (story, scene_graph, shots, images, videos, assemble) is about to run."""


@hookspec
def stage_progress(session, stage, fraction, message):
    """A story writer reported progress within ``stage`` (``fraction`` 0.0 to 1.0 and a
    short ``message``, e.g. "shots 13-24 of 40")."""


@hookspec
def stage_finished(session, stage):
    """``stage`` finished: its output is saved and the step is marked done."""


@hookspec
def stage_failed(session, stage, error):
    """``stage`` gave up with ``error`` (for images/videos: one or more shots failed)."""


@hookspec
def shot_started(session, stage, shot, attempt):
    """Work on ``shot`` for ``stage`` (images or videos) starts; ``attempt`` counts from 1
    across runs."""


@hookspec
def shot_progress(session, stage, shot, fraction, message):
    """A backend reported progress within ``shot`` (``fraction`` from 0.0 to 1.0, and a short
    ``message`` such as "sampling 12/30"). Called from the worker thread running the shot."""


@hookspec
def shot_completed(session, stage, shot, artifact):
    """``shot``'s ``artifact`` (a :class:`reelforge.store.meta.ArtifactState`) is on disk and
    marked done."""


@hookspec
def shot_skipped(session, stage, shot, reason):
    """``shot`` needs no work for ``stage``: ``reason`` is "done" (already rendered) or
    "adopted" (its file was found complete after a crash)."""


@hookspec
def shot_failed(session, stage, shot, error):
    """``shot`` failed for good in this run (retries exhausted or a permanent error)."""
