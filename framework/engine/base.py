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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

import attrs

if TYPE_CHECKING:
    from reelforge.engine.calls import BackendCall
    from reelforge.engine.follow import Handed
    from reelforge.protocols import ShotJob


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


@attrs.frozen
class Attempt:
    """One attempt at one unit, at the moment its backend is to be called: the engine
    decides where the call runs (:meth:`Engine.perform`)."""

    describe: Callable[[], BackendCall]
    "Builds the call as plain data (see :attr:`call`): only an engine that sends it elsewhere asks."
    job: ShotJob
    "The job handed to the backend here; its ``save_checkpoint`` records in this run's session."
    here: Callable[[], Path]
    "Makes the call in this process, with the run's own backend; returns the file produced."
    remote: bool = False
    "The backend works on shared servers (its class sets ``remote = True``): worth a worker's slot."

    @property
    def call(self) -> BackendCall:
        """The call as plain data: what another process needs to make it (reelforge.engine.calls)."""
        return self.describe()


@attrs.frozen
class FilmOrder:
    """A film handed to an engine that runs films elsewhere (its workers): everything a
    worker needs to run the session on, as plain data. Backends and their options are in
    the session's meta already."""

    output_dir: str
    "The sessions folder (the same path on every worker: shared storage)."
    session_id: str
    runner: dict[str, Any] = attrs.Factory(dict)
    "The Runner's settings for this run (film settings, review, budget): keyword arguments."


class Engine(abc.ABC):
    """Schedules a run's shot work. Subclasses set ``name`` and implement :meth:`run_shots`;
    an engine with workers elsewhere also overrides :meth:`perform` (where a backend call
    runs) and :meth:`hands_off` / :meth:`hand_off` (where a whole film runs).

    ``options`` are the engine's own settings (``--db`` and the like), from the Runner's
    ``engine_options``; an engine that takes none ignores them."""

    name: ClassVar[str]

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abc.abstractmethod
    def run_shots(self, work: ShotWork) -> None:
        """Run every unit to an outcome: loop ``take_ready`` -> ``begin`` -> run the task ->
        ``finish`` until nothing is ready or running. On KeyboardInterrupt, set
        ``work.cancel``, ``salvage`` the tasks that still finish with a result, and re-raise;
        on any other exception escaping ``finish`` (the session cannot be written), set
        ``work.cancel`` and re-raise."""

    def checks_here(self, backend: Any) -> bool:
        """Whether this run checks ``backend``'s servers (its ``preflight()``) before its
        first use. The default does; an engine whose workers make a backend's calls in other
        processes, after the process that handed the film over checked them, may say no."""
        return True

    def step(self, name: str, make: Callable[[], Any]) -> None:
        """Run one of the film's own steps in this process: ``story``, ``scene_graph``,
        ``shots`` (the LLM steps), ``cast`` or ``film``. ``make`` saves what it makes through
        the store and does nothing when that is saved already, so calling it again is always
        safe. The Runner calls the steps a run reaches in this order, from the run's own
        thread, once each. The default calls ``make()``; an engine that keeps a durable
        record of its films (the dbos engine: one recorded step each) records it there."""
        make()

    def perform(self, attempt: Attempt) -> Path:
        """Make one attempt's backend call and return the file it produced. The default
        calls it here, in the task's thread; an engine with workers may send
        ``attempt.call`` to one and wait for it, recording what it must through
        ``attempt.job.save_checkpoint`` so a re-run after a crash finds the same call."""
        return attempt.here()

    def hands_off(self) -> bool:
        """True when this engine runs whole films in its workers, not in this process: the
        Runner then creates or prepares the session and calls :meth:`hand_off`."""
        return False

    def hand_off(self, order: FilmOrder) -> Handed:
        """Give ``order`` to the workers and return at once, with a handle that says while
        they have it and how it ended (:class:`reelforge.engine.follow.Handed`). The Runner
        follows the session's files meanwhile, unless it is detached. Only engines whose
        :meth:`hands_off` is true implement it."""
        raise NotImplementedError(f"the {self.name} engine runs films in this process")

    def work(self, output_dir: Path, *, worker_id: str | None = None, slots: int = 4, films: int = 4,
             lease: float = 15.0, cpus: int | None = None) -> int:
        """Serve as one of the engine's workers (``reelforge worker``) until stopped.
        ``slots`` is how many backend calls run at once across all workers, ``films`` how
        many films this worker runs at once, ``lease`` how long a silent worker is trusted,
        ``cpus`` how many pieces of local work it makes at once (None: the CPU count)."""
        from reelforge.errors import ConfigError

        raise ConfigError(f"the {self.name} engine runs everything in the reelforge process itself: "
                          f"it has no workers (pick one that does, e.g. --engine dbos)")

    def close(self) -> None:
        """Release what the engine holds (connections, pools). Called once per run."""

