"""Live progress for `reelforge run`: a lifecycle-hook observer that draws one rich bar per
stage and prints a line per shot.

What the lines promise: each shot line is printed under the header of its own stage (images
and clips are pipelined, so a header is printed again whenever the stage of the next line
changes); shots skipped because they are done are summed up in one line per stage; a shot's
time is its whole time in this run, retries and reattachment included; a failed shot's
line names it, its time and attempts, and the error itself is printed once, in the summary
at the end of the run; shots failed one after another by the same cause (an error's
``cause``: a server down) are one line, as they are in the summary (group_failures).
"""

from __future__ import annotations

import sys
import time

from reelforge import hookimpl
from reelforge.engine.failures import NOUNS as _NOUNS
from reelforge.engine.failures import shot_ranges
from reelforge.redact import for_terminal

_LABELS = {"story": "Story", "scene_graph": "Scenes", "shots": "Shots", "images": "Images",
           "narration": "Voice", "videos": "Videos", "assemble": "Film"}
_SHOT_STAGES = ("images", "narration", "videos")
#: A finished shot's tag and what it made, per stage (padded so the columns line up).
_DONE_LINE = {"images": ("[IMG]", "image"), "narration": ("[VOICE]", "voice"), "videos": ("[DONE]", "clip ")}


def _short(text: str, width: int = 60) -> str:
    import textwrap

    return textwrap.shorten(for_terminal(" ".join(str(text).split()), newlines=False), width,
                            placeholder="...")


def _markup_safe(text: str) -> str:
    """A backend's progress message for a rich column: no markup, no control characters."""
    from rich.markup import escape

    return escape(_short(text, 40))



#: Why a shot stage needed no work, as the progress says it.
_SKIP_HOW = {"done": "already done", "adopted": "found complete on disk after a crash, adopted",
             "take": "brought back from a take made from the same inputs"}

class RichProgress:
    """One bar per stage; per-shot status lines as shots finish, skip or fail."""

    def __init__(self, console=None, *, clock=time.monotonic):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<8}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=self.console, transient=False, disable=not self.console.is_terminal,
        )
        self.clock = clock
        self.tasks: dict[str, int] = {}
        self._started = False
        self._header: str | None = None          # the stage whose header was printed last
        self._skipped: dict[str, dict[str, list[int]]] = {}  # stage -> reason -> shot ids, not yet printed
        # stage -> cause -> [(shot id, seconds, attempts)], not yet printed: shots failed by
        # one cause (a server down) are said in one line
        self._failed: dict[str, dict[str, list[tuple[int, float, int]]]] = {}
        self._done: dict[str, set[int]] = {s: set() for s in _SHOT_STAGES}
        self._first_start: dict[tuple[str, int], float] = {}
        self._tries: dict[tuple[str, int], int] = {}
        self._digits = 1
        self._progress_said: dict[str, float] = {}  # stage -> when its progress was last printed

    #: Off a terminal there is no live bar: a stage's progress (a model's "waiting 95s for
    #: qwen2.5") is printed as a line instead, at most once in this many seconds.
    quiet_s: float = 30.0

    # -- drawing
    def _task(self, session, stage: str) -> int:
        if not self._started:
            self.progress.start()
            self._started = True
        if stage not in self.tasks:
            total = len(session.meta.shots) if stage in _SHOT_STAGES else 1
            if stage in _SHOT_STAGES and session.meta.shots:
                self._digits = len(str(max(s.id for s in session.meta.shots)))
            self.tasks[stage] = self.progress.add_task(_LABELS.get(stage, stage), total=total,
                                                       completed=0, status="")
        return self.tasks[stage]

    def _say(self, text: str) -> None:
        if self.console.is_terminal:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _under(self, stage: str, text: str) -> None:
        """Print ``text`` under ``stage``'s header (printing the header if the last line
        printed belonged to another stage); pending skip summaries go first."""
        self._flush_skips()
        self._print_under(stage, text)

    def _print_under(self, stage: str, text: str) -> None:
        if self._header != stage:
            self._header = stage
            self._say(f"→ {_LABELS.get(stage, stage)}")
        self._say(text)

    def _flush_skips(self) -> None:
        pending, self._skipped = self._skipped, {}
        failed, self._failed = self._failed, {}
        for stage in _SHOT_STAGES:
            for shots in failed.get(stage, {}).values():
                what = _DONE_LINE.get(stage, ("", stage))[1]
                if len(shots) == 1:
                    shot_id, seconds, tries = shots[0]
                    self._print_under(stage, f"  [FAILED] Shot {shot_id:>{self._digits}} {what} {seconds:5.1f}s  "
                                             f"{tries} attempt{'' if tries == 1 else 's'}; the error is in "
                                             f"the summary")
                else:
                    noun = _NOUNS.get(stage, (stage, stage))[1]
                    self._print_under(stage, f"  [FAILED] {len(shots):,} {noun} (shots "
                                             f"{shot_ranges(s for s, _, _ in shots)}), one cause; it is "
                                             f"in the summary")
            for reason, ids in pending.get(stage, {}).items():
                one, many = _NOUNS.get(stage, (stage, stage))
                noun = one if len(ids) == 1 else many
                how = _SKIP_HOW.get(reason, _SKIP_HOW["adopted"])
                which = f"shot{'' if len(ids) == 1 else 's'} {shot_ranges(ids)}"
                self._print_under(stage, f"  {'[SKIP]':<8} {len(ids):,} {noun} {how} ({which})")

    def _count_done(self, session, stage: str, shot_id: int) -> None:
        task = self._task(session, stage)
        self._done[stage].add(shot_id)
        total = self.progress.tasks[task].total
        done = len(self._done[stage])
        self.progress.update(task, completed=done, **({"status": "✓"} if total and done >= total else {}))

    def _elapsed(self, stage: str, shot_id: int, fallback: float | None) -> float:
        start = self._first_start.get((stage, shot_id))
        return self.clock() - start if start is not None else (fallback or 0.0)

    def stop(self) -> None:
        self._flush_skips()
        if self._started:
            self.progress.stop()

    # -- hooks
    @hookimpl
    def session_started(self, session):
        self._say(f"Session {session.id} ({session.meta.status.replace('_', ' ')}): "
                  f"{for_terminal(session.meta.idea, newlines=False)}")

    @hookimpl
    def stage_started(self, session, stage):
        self._task(session, stage)
        self._progress_said[stage] = self.clock()
        if stage not in _SHOT_STAGES:
            self.progress.update(self.tasks[stage], status="working")
            self._flush_skips()
            self._header = stage
            self._say(f"→ {_LABELS.get(stage, stage)}")
        # The per-shot stages run side by side: their headers are printed with their lines.

    @hookimpl
    def stage_progress(self, session, stage, fraction, message):
        task = self._task(session, stage)
        self.progress.update(task, completed=fraction * self.progress.tasks[task].total,
                             status=_markup_safe(message) if message else f"{fraction:.0%}")
        if message and not self.console.is_terminal:
            now = self.clock()
            last = self._progress_said.setdefault(stage, now)
            if now - last >= self.quiet_s:
                self._progress_said[stage] = now
                self._flush_skips()
                self._say(f"  … {_LABELS.get(stage, stage)}: {_short(message)}")

    @hookimpl
    def stage_finished(self, session, stage):
        task = self._task(session, stage)
        self.progress.update(task, completed=self.progress.tasks[task].total, status="✓")

    @hookimpl
    def stage_failed(self, session, stage, error):
        self.progress.update(self._task(session, stage), status="✗ failed")
        label = _LABELS.get(stage, stage)
        if stage in _SHOT_STAGES:
            done, total = session.meta.counts(stage)
            one, many = _NOUNS.get(stage, (stage, stage))
            missing = total - done
            self._flush_skips()  # the line names its stage: no header needed
            self._say(f"✗ {label}: {missing:,} of {total:,} {one if total == 1 else many} not made this run")
        else:  # the error itself is printed once, as the run's error
            self._flush_skips()
            self._say(f"✗ {label} failed")

    @hookimpl
    def shot_started(self, session, stage, shot, attempt):
        key = (stage, shot.id)
        self._first_start.setdefault(key, self.clock())
        self._tries[key] = self._tries.get(key, 0) + 1
        note = f" (attempt {attempt})" if attempt > 1 else ""
        self.progress.update(self._task(session, stage), status=f"shot {shot.id}{note}")

    @hookimpl
    def shot_progress(self, session, stage, shot, fraction, message):
        detail = f" {_markup_safe(message)}" if message else ""
        self.progress.update(self._task(session, stage), status=f"shot {shot.id} {fraction:4.0%}{detail}")

    def _tries_note(self, stage: str, shot_id: int) -> str:
        n = self._tries.get((stage, shot_id), 0)
        return f" ({n} attempts)" if n > 1 else ""

    @hookimpl
    def shot_completed(self, session, stage, shot, artifact):
        self._count_done(session, stage, shot.id)
        tag, what = _DONE_LINE.get(stage, ("[DONE]", stage))
        seconds = self._elapsed(stage, shot.id, artifact.seconds)
        self._under(stage, f"  {tag:<8} Shot {shot.id:>{self._digits}} {what} {seconds:5.1f}s  "
                           f"{_short(shot.description)}{self._tries_note(stage, shot.id)}")

    @hookimpl
    def shot_skipped(self, session, stage, shot, reason):
        self._count_done(session, stage, shot.id)
        self._skipped.setdefault(stage, {}).setdefault(reason, []).append(shot.id)

    @hookimpl
    def shot_failed(self, session, stage, shot, error):
        tries = self._tries.get((stage, shot.id), 0)
        seconds = self._elapsed(stage, shot.id, None)
        cause = str(getattr(error, "cause", None) or error)
        # held until the next line (or the stage's end): shots failing with it join the line
        self._failed.setdefault(stage, {}).setdefault(cause, []).append((shot.id, seconds, tries))
