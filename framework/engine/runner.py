"""The Runner: the one object scripts and the CLI drive. It opens or creates a session,
builds its backends, runs the LLM steps, hands the per-shot work to the chosen engine and
makes the film; each of those is a unit of work in its own module of this package."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import pluggy

from reelforge.engine import cast, continuity, edits, film_unit, handoff, steps
from reelforge.engine.backends import (
    DEFAULT_BACKENDS,
    OPTIONAL_KINDS,
    Backend,
    Preflight,
    build_backends,
    choices,
    close_backends,
    collect_options,
)
from reelforge.engine.base import Engine
from reelforge.engine.continuity import check_mode as check_continuity
from reelforge.engine.failures import group_failures
from reelforge.engine.plugins import KINDS, get_engine_class, load_plugins
from reelforge.engine.results import BUDGET, RunResult
from reelforge.engine.retry import RetryPolicy
from reelforge.engine.shots import SHOT_PIPELINE, STAGE_KIND, ShotRun, ShotsOutcome, gated_stages
from reelforge.errors import (
    ConfigError,
    ReelforgeError,
    SessionError,
    SessionNotFoundError,
    StorageError,
    describe_os_error,
    storage_cause,
    storage_message,
)
from reelforge.media import film
from reelforge.store.meta import AWAITING_REVIEW, COMPLETE, DONE, FAILED, IN_PROGRESS, STEP_FILES
from reelforge.store.session import Session
from reelforge.store.sessions import SessionStore

__all__ = ["BUDGET", "DEFAULT_BACKENDS", "OPTIONAL_KINDS", "SHOT_PIPELINE", "STAGE_KIND", "Interrupted",
           "RunResult", "Runner"]

log = logging.getLogger("reelforge.runner")

#: The engine used when neither the caller, REELFORGE_ENGINE nor reelforge.toml names one.
DEFAULT_ENGINE = "local"


class Interrupted(ReelforgeError):
    """The run was stopped by Ctrl-C; everything finished so far is saved."""

    def __init__(self, session_id: str):
        self.session_id = session_id
        super().__init__(f"interrupted; everything finished is saved. "
                         f"Resume with: reelforge resume {session_id}")


class Runner:
    """Runs sessions. The CLI is a thin layer over this; scripts can use it directly::

        runner = Runner("output")
        result = runner.start("A lighthouse keeper befriends a storm")
        result = runner.resume(result.session_id)   # later, after a crash
    """

    def __init__(self, output_dir: str | Path = "output", *,
                 backends: dict[str, str] | None = None,
                 options: Iterable[str] | dict[str, dict[str, Any]] = (),
                 retry: RetryPolicy | None = None,
                 transition: str | None = None,
                 subtitles: str | None = None,
                 music: str | os.PathLike | None = None,
                 cards: bool | None = None,
                 film_options: dict[str, Any] | None = None,
                 review: str | None = None,
                 continuity: str | None = None,
                 default_continuity: str | None = None,
                 budget: float | None = None,
                 engine: str | None = None,
                 engine_options: dict[str, Any] | None = None,
                 detach: bool = False,
                 pm: pluggy.PluginManager | None = None):
        """``backends`` maps kind ('story', 'image', 'video') to a backend name; kinds not
        given use the session's recorded choice on resume, else DEFAULT_BACKENDS.
        ``options`` is either ``-o`` style pairs (``key=value`` or ``name.key=value``) or a
        mapping: a dict value is the options of the backend name/kind it is keyed by
        (``{"kenburns": {"fps": 30}}``), any other value an unscoped option
        (``{"shots": 3}``, like ``-o shots=3``). ``review="images"`` stops a new
        session after its images (AWAITING_REVIEW) until :meth:`approve`. ``continuity``
        ``"last-frame"`` starts each clip of a scene but the first from the last frame of the
        clip before it (needs a renderer that starts from an image); ``"none"`` does not;
        None keeps what the session recorded; ``default_continuity`` is the mode of a new
        session when ``continuity`` is None (reelforge.toml). ``budget`` caps the
        backend seconds a run may start (judged from the session's recorded averages).
        ``engine`` names the engine that schedules the shots (default: REELFORGE_ENGINE,
        else ``local``); ``engine_options`` are its own settings (e.g. ``{"db": URL}``). An
        engine that runs films in its workers gets the session once it is created or
        prepared here; ``detach`` returns at once instead of following the run."""
        self.store = SessionStore(output_dir)
        self.pm = pm or load_plugins()
        self.requested = dict(backends or {})
        unknown = set(self.requested) - set(KINDS)
        if unknown:
            raise ConfigError(f"unknown backend kind(s) {sorted(unknown)}; use story, image, video")
        self.raw_options = collect_options(options)
        self.retry = retry or RetryPolicy.from_env()
        # The film's settings: None means "as the session recorded, else the default".
        self.film_requested: dict[str, Any] = {**(film_options or {}), "transition": transition,
                                               "subtitles": subtitles, "cards": cards,
                                               "music": os.fspath(music) if music else None}
        film.settings_from(None, {k: v for k, v in self.film_requested.items() if k != "music"})
        if review not in (None, "images"):
            raise ConfigError(f"unknown review point {review!r}; use 'images'")
        self.review = review
        self.continuity = None if continuity is None else check_continuity(continuity)
        self.default_continuity = None if default_continuity is None else check_continuity(default_continuity)
        if budget is not None and not (isinstance(budget, (int, float)) and budget > 0 and budget < float("inf")):
            raise ConfigError(f"the budget must be a positive number of seconds, got {budget!r}")
        self.budget = budget
        self.engine_name = engine or os.environ.get("REELFORGE_ENGINE") or DEFAULT_ENGINE
        self.engine_class: type[Engine] = get_engine_class(self.engine_name, self.pm).cls
        self.engine_options = dict(engine_options or {})
        # An engine refuses its options (a missing database) here, before any session exists.
        self.engine_class(**self.engine_options).close()
        self.detach = detach
        self.cancel = threading.Event()
        self.preflight = Preflight()
        self._hook_lock = threading.RLock()
        self._validated: dict[str, Backend] | None = None
        "validate()'s backends, open until the next run builds its own."
        self.notes: list[str] = []
        "What this runner told the user about a run (a redo's new seed, a take brought back)."
        self.announce: Callable[[str], None] | None = None
        "Called with each note as it is made (the command line prints it)."

    # -- public API ---------------------------------------------------------------
    def start(self, idea: str) -> RunResult:
        """Create a new session for ``idea`` and run it to the end."""
        backends = self._resolve_backends(None, new=True)  # fail on bad names/options before creating
        try:
            self.preflight.all(backends)  # a server that is not there stops us before a session exists
            # The first meta already holds the backends and options: a crash right after
            # this resumes with them, not with the defaults.
            session = self.store.create(idea, backends=choices(backends), review=self.review,
                                        continuity=continuity.recorded(self.continuity or self.default_continuity))
        except BaseException:
            close_backends(backends)
            raise
        return self._run_locked(session, backends)

    def resume(self, session_id: str | None = None) -> RunResult:
        """Resume ``session_id`` (default: the newest incomplete session), doing only what
        remains. A COMPLETE session is checked (missing or damaged files are redone)."""
        if session_id is None:
            incomplete, broken = self.store.scan()
            if not incomplete:
                if broken:
                    raise SessionError(f"no readable incomplete session in {self.store.root}; "
                                       + "; ".join(str(b) for b in broken))
                raise SessionNotFoundError(f"no incomplete session in {self.store.root}")
            session_id = incomplete[0].id
        return self._continue(self.store.open(session_id))

    def redo(self, session_id: str, shot_id: int, stage: str = "image", *, seed: int | None = None,
             new_seed: bool = False) -> RunResult:
        """Make one shot's ``stage`` ('image', 'narration' or 'video') again, then run the
        session on: what depends on it (its clip, the film) is remade only if it changes.
        The current file is kept as a (rejected) take. The shot gets ``seed``, else a new
        random one (``new_seed`` is what happens anyway); a clip's redo keeps its image. A
        backend that makes the same file whatever the seed (``uses_seed = False``) is a
        ConfigError. What was done is in :attr:`notes` (the new seed)."""
        return self._continue(self.store.open(session_id), edits.redo(shot_id, stage, seed, new_seed))

    def use_take(self, session_id: str, shot_id: int, stage: str, take: int) -> RunResult:
        """Make take ``take`` of a shot's ``stage`` its artifact again (the current one becomes
        a take), keep it even though the shot's inputs have moved on since (pinned), and run
        the session on: the clip follows a chosen image (a clip take made from it is brought
        back rather than rendered), and the film is rebuilt."""
        return self._continue(self.store.open(session_id), edits.use_take(shot_id, stage, take))

    def approve(self, session_id: str) -> RunResult:
        """Open a session's review gate (``--review images``) and run it on to the film."""
        return self._continue(self.store.open(session_id), edits.approve)

    def validate(self) -> None:
        """Check the selected backends and options, and that their servers answer (each
        backend's preflight()), without creating anything."""
        backends = self._resolve_backends(None)
        try:
            self.preflight.all(backends)
        except BaseException:
            close_backends(backends)
            raise
        # Kept open until the run's own backends exist: what the servers told the check is
        # then reused, not asked again (a backend keeps it while one of its kind is open).
        self._release_validated()
        self._validated = backends

    def _release_validated(self) -> None:
        validated, self._validated = self._validated, None
        if validated:
            close_backends(validated)

    # -- what the units of work call back -----------------------------------------------
    def note(self, message: str) -> None:
        """Tell the user something about this run that is not an error."""
        with self._hook_lock:
            self.notes.append(message)
            if self.announce is not None:
                self.announce(message)

    def hook(self, name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook. Observers watch; a broken one must not cost a render,
        so its exception becomes a warning naming the hook."""
        with self._hook_lock:
            try:
                getattr(self.pm.hook, name)(**kwargs)
            except Exception as exc:
                warnings.warn(f"reelforge: a {name} hook failed: {type(exc).__name__}: {exc}",
                              RuntimeWarning, stacklevel=2)

    def with_retries(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` under the retry policy; a cancelled run stops between attempts."""
        for attempt in self.retry.retrying():
            with attempt:
                if self.cancel.is_set():
                    raise KeyboardInterrupt
                return fn()

    # -- running ------------------------------------------------------------------
    def _resolve_backends(self, session: Session | None, new: bool = False) -> dict[str, Backend]:
        try:
            built = build_backends(self.pm, self.requested, self.raw_options, session)
        finally:
            self._release_validated()  # validate()'s backends: the new ones took over
        try:  # a renderer that cannot follow a clip's last frame is refused before anything runs
            mode = self.continuity or (continuity.mode_of(session.meta) if session is not None
                                       else self.default_continuity if new else None)
            continuity.check_renderer(mode or continuity.NONE, built.get("video"))
        except BaseException:
            close_backends(built)
            raise
        return built

    def _continue(self, session: Session,
                  prepare: Callable[[Session, dict], Iterable[str] | None] | None = None) -> RunResult:
        """Run an opened (locked) session on; ``prepare(session, backends)`` changes it first
        (and returns what it tells the user: :meth:`note`)."""
        try:
            backends = self._resolve_backends(session)
            if self.continuity is not None:  # asked for in this run: recorded, so later runs keep it
                session.set_continuity(continuity.recorded(self.continuity))
            if prepare is not None:
                for message in prepare(session, backends) or ():
                    self.note(message)
        except BaseException:
            session.close()
            raise
        # Checked before each backend's first step or shot of this run, not here: a resume
        # with nothing left for a backend does not need its server.
        self.preflight.arm(backends)
        return self._run_locked(session, backends)

    def _run_locked(self, session: Session, backends: dict[str, Backend]) -> RunResult:
        """Run the session here, or hand it to the engine's workers; one engine per run."""
        try:
            engine = self.engine_class(**self.engine_options)
            try:
                if engine.hands_off():
                    return handoff.hand_off(self, engine, session, backends)
                return self._run_opened(session, backends, engine)
            finally:
                engine.close()
        finally:
            close_backends(backends)

    def _run_opened(self, session: Session, backends: dict[str, Backend], engine: Engine) -> RunResult:
        try:
            # Read every saved step first: a damaged file stops us before any write.
            saved = {step: session.read_step_output(step) for step in STEP_FILES}
            # A server that is not there refuses the resume before anything is written:
            # the session keeps its status, meta and journal as they were.
            self.preflight.leave(kind for kind, b in backends.items() if not engine.checks_here(b))
            self._preflight_work_left(session, saved, backends)
            session.set_backends(choices(backends))
            if session.meta.status == FAILED:
                session.set_status(IN_PROGRESS)
            self.hook("session_started", session=session)
            result = self._run(session, backends, saved, engine)
        except BaseException as first:
            # A full disk or a read-only folder (the session's own write, or a backend's
            # ffmpeg) is one cause: said once, naming the session folder and what to do.
            cause = storage_cause(first) if isinstance(first, Exception) else None
            if cause is None and isinstance(first, OSError):
                cause = first
            # Closing folds the journal into the meta; if that fails too (the disk is full),
            # the first error is the one to report. The journal is replayed next time.
            try:
                session.close()
            except Exception as second:
                if cause is None or storage_cause(second) is None:  # a second cause: one plain line
                    detail = describe_os_error(second) if isinstance(second, OSError) else str(second)
                    log.warning("could not fold the journal of %s into its meta (%s); it is kept "
                                "and replayed next time", session.id, detail)
            if cause is not None:
                raise StorageError(storage_message(cause, session.path, session.id),
                                   errno=cause.errno) from first
            raise first
        session.close()
        return result

    def _preflight_work_left(self, session: Session, saved: dict[str, Any],
                             backends: dict[str, Backend]) -> None:
        """Check the servers of the backends that surely have work left in this run (a step
        with no saved output, a shot stage with a shot not done). The others are still
        checked lazily, before their first piece of work (a done file found damaged)."""
        plan = saved.get("shots")
        states = {st.id: st for st in session.meta.shots}
        gated = gated_stages(session.meta)
        kinds = {"story"} if any(value is None for value in saved.values()) else set()
        for spec in SHOT_PIPELINE:
            if spec.kind not in backends or spec.name in gated:
                continue
            if plan is None or any(s.id not in states or states[s.id].artifact(spec.name).state != DONE
                                   for s in plan.shots):
                kinds.add(spec.kind)
        for kind in KINDS:
            if kind in kinds:
                self.preflight.kind(kind)

    def _run(self, session: Session, backends: dict[str, Backend], saved: dict[str, Any],
             engine: Engine) -> RunResult:
        settings = film_unit.settings(self, session)
        story, _scenes, plan = steps.write_all(self, session, backends["story"].instance, saved, engine.step)
        engine.step("cast", lambda: cast.make_cast(self, session, story, backends))
        outcome = self._shots(session, plan, backends, engine)
        if outcome.failures:
            msg = f"{len(outcome.failures)} shot(s) failed"
            session.set_status(FAILED, msg)
            return RunResult(session.id, FAILED, session.path, tuple(outcome.failures),
                             problems=tuple(group_failures(outcome.causes)))
        if outcome.over_budget:
            msg = (f"budget of {self.budget:g} backend seconds reached: {len(outcome.over_budget)} "
                   f"shot stage(s) not started (this run spent {outcome.spent:.1f} s)")
            session.set_status(IN_PROGRESS, msg)
            return RunResult(session.id, BUDGET, session.path, (msg,))
        if outcome.held:
            session.set_status(AWAITING_REVIEW, None)
            return RunResult(session.id, AWAITING_REVIEW, session.path)
        engine.step("film", lambda: film_unit.assemble(self, session, plan, story, settings, backends))
        self.hook("session_completed", session=session)
        return RunResult(session.id, COMPLETE, session.path, film=session.film_path)

    def _shots(self, session: Session, plan, backends: dict[str, Backend], engine: Engine) -> ShotsOutcome:
        """Every per-shot stage, scheduled by the engine. Returns the failures, and what was
        held back (review gate, budget)."""
        work = ShotRun(self, session, plan, backends, engine)
        work.preflight()  # before the engine runs anything: a refusal leaves the runner usable
        try:
            engine.run_shots(work)
            work.settle_stages()
        except KeyboardInterrupt:
            self.cancel.set()
            raise Interrupted(session.id) from None
        except BaseException:
            self.cancel.set()  # a fatal error: running backends stop soon (renders on a server are kept)
            raise
        return work.outcome
