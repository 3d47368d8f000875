"""The engine seam: what an engine is given (the shot work of one run) and what it must do
(start every unit it is handed, as many at a time as each stage allows, and report each
outcome back), so the order and scheduling of work can change without touching the units.

An engine knows nothing of ComfyUI, ffmpeg or the session folder: the units check, run and
commit themselves through the store. The built-in engine is ``local`` (reelforge.engine.local);
others register through the ``register_engines(register)`` hook.
"""

from __future__ import annotations

import abc
import threading
from typing import Any, Callable, ClassVar, Protocol

import attrs


@attrs.frozen(order=True)
class Unit:
    """One shot stage for one shot: what an engine schedules."""

    stage: str
    "The per-shot stage (images, narration, videos)."
    shot_id: int
    "The shot."


#: The work a started unit does: runs in any thread, returns what ``finish`` commits.
Task = Callable[[], Any]


class ShotWork(Protocol):
    """The per-shot work of one run, as an engine sees it. Every method but the task itself
    is called from the engine's own (one) thread."""

    cancel: threading.Event
    "Set when the run stops (Ctrl-C or a fatal error): running tasks end soon."

    def slots(self, stage: str) -> int:
        """How many units of ``stage`` may run at once (the backend's concurrency)."""

    def take_ready(self) -> list[Unit]:
        """The units whose needs are settled and that were not handed out yet, in the order
        they should start. Empty when nothing is ready now."""

    def begin(self, unit: Unit) -> Task | None:
        """Decide ``unit``: None when it is settled without backend work (already done, a
        take adopted, held for review, over budget); else the task to run."""

    def finish(self, unit: Unit, result: Any = None, error: BaseException | None = None) -> None:
        """Report a task's outcome: its result (committed) or the exception it raised (the
        shot fails). Units that were waiting for it become ready."""

    def salvage(self, unit: Unit, result: Any) -> None:
        """After an interruption: keep what a task finished (commit only, nothing new starts)."""


class Engine(abc.ABC):
    """Schedules a run's shot work. Subclasses set ``name`` and implement :meth:`run_shots`."""

    name: ClassVar[str]

    @abc.abstractmethod
    def run_shots(self, work: ShotWork) -> None:
        """Run every unit to an outcome: loop ``take_ready`` -> ``begin`` -> run the task ->
        ``finish`` until nothing is ready or running. On KeyboardInterrupt, set
        ``work.cancel``, ``salvage`` the tasks that still finish with a result, and re-raise;
        on any other exception escaping ``finish`` (the session cannot be written), set
        ``work.cancel`` and re-raise."""

    def close(self) -> None:
        """Release what the engine holds (connections, pools). Called once per run."""

