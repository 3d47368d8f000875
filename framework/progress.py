"""Live progress bars for `reelforge run`: a lifecycle-hook observer drawn with rich."""

from __future__ import annotations

import sys

from . import hookimpl
from .redact import for_terminal

_LABELS = {"story": "Story", "scene_graph": "Scenes", "shots": "Shots", "images": "Images",
           "narration": "Voice", "videos": "Videos", "assemble": "Film"}
_PER_SHOT = ("images", "narration", "videos")


def _short(text: str, width: int = 60) -> str:
    import textwrap

    return textwrap.shorten(for_terminal(" ".join(str(text).split()), newlines=False), width,
                            placeholder="...")


def _markup_safe(text: str) -> str:
    """A backend's progress message for a rich column: no markup, no control characters."""
    from rich.markup import escape

    return escape(_short(text, 40))


class RichProgress:
    """One bar per stage; per-shot status lines as shots start, finish, skip or fail."""

    def __init__(self, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<8}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=self.console, transient=False, disable=not self.console.is_terminal,
        )
        self.tasks: dict[str, int] = {}
        self._started = False

    def _task(self, session, stage: str) -> int:
        if not self._started:
            self.progress.start()
            self._started = True
        if stage not in self.tasks:
            total = len(session.meta.shots) if stage in _PER_SHOT else 1
            done = session.meta.counts(stage)[0] if stage in _PER_SHOT else 0
            self.tasks[stage] = self.progress.add_task(_LABELS.get(stage, stage), total=total,
                                                       completed=done, status="")
        return self.tasks[stage]

    def _say(self, text: str) -> None:
        if self.console.is_terminal:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._started:
            self.progress.stop()

    @hookimpl
    def session_started(self, session):
        self._say(f"Session {session.id} ({session.meta.status.replace('_', ' ')}): "
                  f"{for_terminal(session.meta.idea, newlines=False)}")

    @hookimpl
    def stage_started(self, session, stage):
        self._task(session, stage)
        if stage not in _PER_SHOT:
            self.progress.update(self.tasks[stage], status="working")
        self._say(f"→ {_LABELS.get(stage, stage)}")

    @hookimpl
    def stage_progress(self, session, stage, fraction, message):
        task = self._task(session, stage)
        self.progress.update(task, completed=fraction * self.progress.tasks[task].total,
                             status=_markup_safe(message) if message else f"{fraction:.0%}")

    @hookimpl
    def stage_finished(self, session, stage):
        task = self._task(session, stage)
        self.progress.update(task, completed=self.progress.tasks[task].total, status="✓")

    @hookimpl
    def stage_failed(self, session, stage, error):
        self.progress.update(self._task(session, stage), status="✗ failed")
        self._say(f"✗ {_LABELS.get(stage, stage)} failed: {for_terminal(error)}")

    @hookimpl
    def shot_started(self, session, stage, shot, attempt):
        note = f" (attempt {attempt})" if attempt > 1 else ""
        self.progress.update(self._task(session, stage), status=f"shot {shot.id}{note}")

    @hookimpl
    def shot_progress(self, session, stage, shot, fraction, message):
        detail = f" {_markup_safe(message)}" if message else ""
        self.progress.update(self._task(session, stage), status=f"shot {shot.id} {fraction:4.0%}{detail}")

    @hookimpl
    def shot_completed(self, session, stage, shot, artifact):
        self.progress.advance(self._task(session, stage))
        tag, what = {"images": ("[IMG] ", "image"), "narration": ("[VOICE]", "voice")}.get(stage, ("[DONE]", "clip "))
        self._say(f"  {tag} Shot {shot.id} {what} {artifact.seconds or 0:5.1f}s  {_short(shot.description)}")

    @hookimpl
    def shot_skipped(self, session, stage, shot, reason):
        self._task(session, stage)
        what = {"images": "image", "narration": "voice"}.get(stage, "clip ")
        note = "already exists" if reason == "done" else "found complete on disk, adopted"
        self._say(f"  [SKIP] Shot {shot.id} {what} ({note})")

    @hookimpl
    def shot_failed(self, session, stage, shot, error):
        what = "image" if stage == "images" else "clip"
        self._say(f"  [FAILED] Shot {shot.id} {what}: {for_terminal(error)}")
