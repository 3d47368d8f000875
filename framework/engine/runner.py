"""The runner: runs a session's steps in order, skips what is done, and fans per-shot work
out to the image and video backends (pipelined: a shot's clip starts as soon as its image
is done), saving every result the moment it exists."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import inspect
import json
import logging
import math
import os
import stat
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs
import pluggy

from reelforge.media import film

from reelforge.media import checks as media
from reelforge.errors import (ConfigError, ReelforgeError, SessionCorruptError, SessionError, StageError,
                     StorageError, describe_os_error, storage_cause, storage_message)
from reelforge.options import parse_pairs, public_options, structure_options, valid_keys_of
from reelforge.engine.plugins import KINDS, active_manager, get_backend_class, load_plugins
from reelforge.protocols import ShotJob, StageJob
from reelforge.records import SceneGraph, Shot, ShotPlan, Story
from reelforge.engine.retry import RetryPolicy
from reelforge.redact import redact, register_secret
from reelforge.store.safefs import fsync_dir, fsync_file
from reelforge.store.session import (AWAITING_REVIEW, COMPLETE, DONE, FAILED, IN_PROGRESS, STEP_FILES, TODO,
                      BackendChoice, Session, SessionStore)

log = logging.getLogger("reelforge.runner")

#: RunResult status when a run stopped at its --budget (the session stays IN_PROGRESS).
BUDGET = "BUDGET"

#: Backends used when the user names none: all offline, no server or network needed.
DEFAULT_BACKENDS = {"story": "offline", "image": "storyboard", "video": "kenburns", "narration": "espeak"}
#: Kinds a session may go without: naming "none" skips their stage.
OPTIONAL_KINDS = {"narration"}
#: Seconds of picture after a shot's narration ends.
NARRATION_PAD_S = film.NARRATION_PAD_S
#: Length of the silence recorded for a shot with no narration line.
SILENT_SHOT_S = 0.1


@attrs.frozen
class ShotStage:
    """A per-shot stage: the backend kind that serves it and the stages it needs first."""

    name: str
    "Stage name: also the folder of its files and the key in the meta's steps."
    kind: str
    "Backend kind (story/image/video/narration)."
    needs: tuple[str, ...] = ()
    "Stages that must be done for a shot before this one starts for it."


SHOT_PIPELINE = (
    ShotStage("images", "image"),
    ShotStage("narration", "narration"),
    ShotStage("videos", "video", needs=("images", "narration")),
)
#: Which backend kind serves each per-shot stage.
STAGE_KIND = {spec.name: spec.kind for spec in SHOT_PIPELINE}


@attrs.define
class _ShotsOutcome:
    failures: list[str] = attrs.Factory(list)
    causes: list[tuple[str, int, str, str]] = attrs.Factory(list)
    "(stage, shot id, cause, failure line) per failure: what reelforge.cli.progress.group_failures groups."
    held: set[str] = attrs.Factory(set)
    "Stages held back for review."
    over_budget: set[tuple[str, int]] = attrs.Factory(set)
    "(stage, shot) not started because the budget would be exceeded."
    spent: float = 0.0
    "Backend seconds spent in this run."


_USER_STAGES = {"image": "images", "images": "images", "video": "videos", "videos": "videos",
                "clip": "videos", "narration": "narration", "voice": "narration"}


def _stage_name(stage: str) -> str:
    try:
        return _USER_STAGES[stage]
    except KeyError:
        raise ConfigError(f"unknown stage {stage!r}; use image, narration or video") from None


def _saved_plan(session: Session) -> ShotPlan:
    plan = session.read_step_output("shots")
    if plan is None:
        raise SessionError(f"session {session.id} has no shot plan yet; run it first")
    return plan


def _plan_shot(plan: ShotPlan, shot_id: int) -> Shot:
    for shot in plan.shots:
        if shot.id == shot_id:
            return shot
    ids = ", ".join(str(s.id) for s in plan.shots)
    raise ConfigError(f"no shot {shot_id} in this session (shots: {ids})")


#: Fields of a shot that `reelforge shots edit` may change.
EDITABLE = {"description", "image_prompt", "motion_prompt", "negative_prompt", "narration",
            "duration_s", "seed", "characters"}


def edit_shot(session: Session, plan: ShotPlan, shot_id: int, changes: dict[str, Any]) -> Shot:
    """Change one shot in shots.json (validated, written atomically). The runner then redoes
    only what the change reaches: a new image prompt its image, clip and the film; a new
    narration line its voice, clip timing and the film; a new motion prompt its clip."""
    from reelforge.records import structure, unstructure

    unknown = set(changes) - EDITABLE
    if unknown:
        raise ConfigError(f"cannot edit {', '.join(sorted(unknown))}; editable: {', '.join(sorted(EDITABLE))}")
    data = unstructure(plan)
    for entry in data["shots"]:
        if entry["id"] == shot_id:
            entry.update(changes)
            break
    else:
        _plan_shot(plan, shot_id)  # raises, naming the shots there are
    try:
        new_plan = structure(data, ShotPlan, "shots.json")
    except ValueError as exc:
        raise ConfigError(f"shot {shot_id}: {exc}") from None
    session.save_step_output("shots", new_plan)
    return _plan_shot(new_plan, shot_id)


#: The field of a shot that says what each per-shot stage makes (kept with each take).
_PROMPT_FIELD = {"images": "image_prompt", "narration": "narration", "videos": "motion_prompt"}


def _prompt_of(stage: str, shot: Shot) -> str:
    return getattr(shot, _PROMPT_FIELD[stage])


def _average_seconds(session: Session, stage: str) -> float | None:
    """Average backend seconds of this stage's done shots in the session, if any."""
    values = [st.artifact(stage).backend_seconds or st.artifact(stage).seconds
              for st in session.meta.shots if st.artifact(stage).state == DONE]
    values = [v for v in values if v]
    return sum(values) / len(values) if values else None


class Interrupted(ReelforgeError):
    """The run was stopped by Ctrl-C; everything finished so far is saved."""

    def __init__(self, session_id: str):
        self.session_id = session_id
        super().__init__(f"interrupted; everything finished is saved. "
                         f"Resume with: reelforge resume {session_id}")


@attrs.frozen
class RunResult:
    session_id: str
    "The session that ran."
    status: str
    "Its status at the end: COMPLETE or FAILED."
    path: Path
    "The session folder."
    failed: tuple[str, ...] = ()
    "One line per failed shot or stage."
    problems: tuple[str, ...] = ()
    "The failures grouped by cause, one line per cause (what `reelforge run` prints)."
    film: Path | None = None
    "film.mp4, when the session is complete."

    @property
    def ok(self) -> bool:
        return self.status == COMPLETE


def _group_failures(causes):
    from reelforge.cli.progress import group_failures

    return group_failures(causes)


def fingerprint(**parts: Any) -> str:
    """A digest of a shot's inputs: a changed prompt, seed, backend or option changes it."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@attrs.define
class _Backend:
    kind: str
    name: str
    instance: Any
    options: Any

    @property
    def public_options(self) -> dict[str, Any]:
        return public_options(self.options)

    @property
    def fingerprint_options(self) -> dict[str, Any]:
        """Options that change the output (fields marked fingerprint=False do not, e.g. URLs)."""
        data = self.public_options
        if attrs.has(type(self.options)):
            for f in attrs.fields(type(self.options)):
                if f.metadata.get("fingerprint") is False:
                    data.pop(f.name, None)
        return data


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
                 budget: float | None = None,
                 pm: pluggy.PluginManager | None = None):
        """``backends`` maps kind ('story', 'image', 'video') to a backend name; kinds not
        given use the session's recorded choice on resume, else DEFAULT_BACKENDS.
        ``options`` is either ``-o`` style pairs (``key=value`` or ``name.key=value``) or a
        mapping: a dict value is the options of the backend name/kind it is keyed by
        (``{"kenburns": {"fps": 30}}``), any other value an unscoped option
        (``{"shots": 3}``, like ``-o shots=3``). ``review="images"`` stops a new
        session after its images (AWAITING_REVIEW) until :meth:`approve`. ``budget`` caps the
        backend seconds a run may start (judged from the session's recorded averages)."""
        self.store = SessionStore(output_dir)
        self.pm = pm or load_plugins()
        self.requested = dict(backends or {})
        unknown = set(self.requested) - set(KINDS)
        if unknown:
            raise ConfigError(f"unknown backend kind(s) {sorted(unknown)}; use story, image, video")
        self.raw_options = self._collect_options(options)
        self.retry = retry or RetryPolicy.from_env()
        # The film's settings: None means "as the session recorded, else the default".
        self.film_requested: dict[str, Any] = {**(film_options or {}), "transition": transition,
                                               "subtitles": subtitles, "cards": cards,
                                               "music": os.fspath(music) if music else None}
        film.settings_from(None, {k: v for k, v in self.film_requested.items() if k != "music"})
        if review not in (None, "images"):
            raise ConfigError(f"unknown review point {review!r}; use 'images'")
        self.review = review
        if budget is not None and not (isinstance(budget, (int, float)) and budget > 0 and budget < float("inf")):
            raise ConfigError(f"the budget must be a positive number of seconds, got {budget!r}")
        self.budget = budget
        self.cancel = threading.Event()
        self._hook_lock = threading.RLock()
        self._unchecked: dict[str, _Backend] = {}
        self._validated: dict[str, _Backend] | None = None
        "validate()'s backends, open until the next run builds its own."
        "Backends of this run whose preflight() has not run yet (by kind)."

    # -- public API ---------------------------------------------------------------
    def start(self, idea: str) -> RunResult:
        """Create a new session for ``idea`` and run it to the end."""
        backends = self._resolve_backends(None)  # fail on bad names/options before creating
        try:
            self._preflight(backends)  # a server that is not there stops us before a session exists
            # The first meta already holds the backends and options: a crash right after
            # this resumes with them, not with the defaults.
            session = self.store.create(idea, backends=self._choices(backends), review=self.review)
        except BaseException:
            self._close_backends(backends)
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
                raise SessionError(f"no incomplete session in {self.store.root}")
            session_id = incomplete[0].id
        return self._continue(self.store.open(session_id))

    def _continue(self, session: Session, prepare: Callable[[Session, dict], None] | None = None) -> RunResult:
        """Run an opened (locked) session on; ``prepare(session, backends)`` changes it first."""
        try:
            backends = self._resolve_backends(session)
            if prepare is not None:
                prepare(session, backends)
        except BaseException:
            session.close()
            raise
        # Checked before each backend's first step or shot of this run, not here: a resume
        # with nothing left for a backend does not need its server.
        self._unchecked = dict(backends)
        return self._run_locked(session, backends)

    # -- the creator's loop: redo a shot, choose a take, approve the images -----------
    def redo(self, session_id: str, shot_id: int, stage: str = "image", *, seed: int | None = None,
             new_seed: bool = False) -> RunResult:
        """Make one shot's ``stage`` ('image', 'narration' or 'video') again, then run the
        session on: what depends on it (its clip, the film) is remade only if it changes.
        The current file is kept as a take. ``seed`` or ``new_seed`` also change the shot's
        seed in shots.json (which changes its image and clip)."""
        stage_name = _stage_name(stage)

        def prepare(session: Session, backends: dict) -> None:
            plan = _saved_plan(session)
            shot = _plan_shot(plan, shot_id)
            if seed is not None or new_seed:
                import secrets

                value = seed if seed is not None else secrets.randbelow(2**31)
                edit_shot(session, plan, shot_id, {"seed": value})
                return  # the new seed changes the inputs: the runner redoes what depends on it
            if stage_name not in {s.name for s in SHOT_PIPELINE if s.kind in backends}:
                raise ConfigError(f"this session has no {stage} stage (its narrator is 'none')")
            # Rejected: never brought back automatically, though made from the same inputs.
            session.keep_as_take(stage_name, shot_id, "redo requested", prompt=_prompt_of(stage_name, shot),
                                 rejected=True)

        return self._continue(self.store.open(session_id), prepare)

    def use_take(self, session_id: str, shot_id: int, stage: str, take: int) -> RunResult:
        """Make take ``take`` of a shot's ``stage`` its artifact again (the current one becomes
        a take), keep it even though the shot's inputs have moved on since (pinned), and run
        the session on: the clip follows a chosen image (a clip take made from it is brought
        back rather than rendered), and the film is rebuilt."""
        stage_name = _stage_name(stage)

        def prepare(session: Session, backends: dict) -> None:
            plan = _saved_plan(session)
            shot = _plan_shot(plan, shot_id)
            spec = next(s for s in SHOT_PIPELINE if s.name == stage_name)
            if spec.kind not in backends:
                raise ConfigError(f"this session has no {stage} stage")
            chosen = next((t for t in session.shot_state(shot_id).artifact(stage_name).takes
                           if t["n"] == take), None)
            if chosen is not None:
                # Back to what made the take: its seed and prompt go back into shots.json, so
                # what was made from it (a clip from a chosen image) can come back too.
                changes: dict[str, Any] = {}
                if chosen.get("seed") is not None and chosen["seed"] != shot.seed:
                    changes["seed"] = chosen["seed"]
                field = _PROMPT_FIELD[stage_name]
                if isinstance(chosen.get("prompt"), str) and chosen["prompt"] != getattr(shot, field):
                    changes[field] = chosen["prompt"]
                if changes:
                    shot = edit_shot(session, plan, shot_id, changes)
            session.use_take(stage_name, shot_id, take, pinned=True, prompt=_prompt_of(stage_name, shot))
            # Pinned: recorded as made from the shot's current inputs, so the next check keeps it.
            active = {s.name for s in SHOT_PIPELINE if s.kind in backends}
            fp = self._stage_fingerprint(session, stage_name, shot, backends[spec.kind], active)
            session.repin(stage_name, shot_id, fp)

        return self._continue(self.store.open(session_id), prepare)

    def approve(self, session_id: str) -> RunResult:
        """Open a session's review gate (``--review images``) and run it on to the film."""
        def prepare(session: Session, backends: dict) -> None:
            if session.meta.review is None:
                raise SessionError(f"session {session.id} was not started with --review; nothing to approve")
            session.approve()

        return self._continue(self.store.open(session_id), prepare)

    def validate(self) -> None:
        """Check the selected backends and options, and that their servers answer (each
        backend's preflight()), without creating anything."""
        backends = self._resolve_backends(None)
        try:
            self._preflight(backends)
        except BaseException:
            self._close_backends(backends)
            raise
        # Kept open until the run's own backends exist: what the servers told the check is
        # then reused, not asked again (a backend keeps it while one of its kind is open).
        self._release_validated()
        self._validated = backends

    def _release_validated(self) -> None:
        validated, self._validated = self._validated, None
        if validated:
            self._close_backends(validated)

    def _preflight(self, backends: dict[str, "_Backend"]) -> None:
        """Call every backend's optional ``preflight()`` (a cheap check that its server is
        there and speaks its API; it raises ConfigError or ServiceError with a clear message)."""
        self._unchecked = dict(backends)
        for kind in list(backends):
            self._preflight_kind(kind)

    def _preflight_kind(self, kind: str) -> None:
        backend = self._unchecked.pop(kind, None)
        check = getattr(backend.instance, "preflight", None) if backend is not None else None
        if callable(check):
            check()

    # -- setup --------------------------------------------------------------------
    @staticmethod
    def _collect_options(options) -> dict[str | None, dict[str, Any]]:
        if isinstance(options, dict):
            # {"shots": 3} is unscoped, {"kenburns": {"fps": 30}} scoped; both may mix.
            collected: dict[str | None, dict[str, Any]] = {}
            for key, value in options.items():
                if isinstance(value, dict):
                    collected.setdefault(key, {}).update(value)
                else:
                    collected.setdefault(None, {})[key] = value
            return collected
        collected = {}
        for scope, key, value in parse_pairs(options):
            collected.setdefault(scope, {})[key] = value
        return collected

    def _resolve_backends(self, session: Session | None) -> dict[str, _Backend]:
        try:
            with active_manager(self.pm):
                return self._build_backends(session)
        finally:
            self._release_validated()  # validate()'s backends: the new ones took over

    def _build_backends(self, session: Session | None) -> dict[str, _Backend]:
        recorded = session.meta.backends if session is not None else {}
        names = {}
        for kind in KINDS:
            if kind in self.requested:
                names[kind] = self.requested[kind]
            elif kind in recorded:
                names[kind] = recorded[kind].name
            elif session is not None and kind in OPTIONAL_KINDS:
                names[kind] = "none"  # a session made before this kind existed goes on without it
            else:
                names[kind] = DEFAULT_BACKENDS[kind]
        names = {k: v for k, v in names.items() if not (k in OPTIONAL_KINDS and v == "none")}
        regs = {kind: get_backend_class(kind, name, self.pm) for kind, name in names.items()}
        scopes = {None} | set(names.values()) | set(KINDS)
        for scope in self.raw_options:
            if scope not in scopes:
                raise ConfigError(
                    f"option scope {scope!r} matches no selected backend "
                    f"(selected: {', '.join(f'{k}={v}' for k, v in names.items())})")
        built: dict[str, _Backend] = {}
        claimed: set[tuple[str | None, str]] = set()
        for kind, reg in regs.items():
            opt_cls = getattr(reg.cls, "Options", None)
            fields = {f.name for f in attrs.fields(opt_cls)} if opt_cls and attrs.has(opt_cls) else set()
            raw: dict[str, Any] = {}
            # On resume, the options recorded for the same backend are the base.
            if kind in recorded and recorded[kind].name == reg.name:
                raw.update(recorded[kind].options)
            # Unscoped keys and keys scoped by a name several backends share (an image
            # generator and a renderer may both be called "comfyui") go to whichever take them.
            for scope in (None, reg.name):
                for key, value in self.raw_options.get(scope, {}).items():
                    if key in fields:
                        raw[key] = value
                        claimed.add((scope, key))
            raw.update(self.raw_options.get(kind, {}))
            options = structure_options(opt_cls, raw, what=f"{KINDS[kind][1]} {reg.name!r}") \
                if opt_cls is not None else None
            if options is not None and attrs.has(type(options)):
                for f in attrs.fields(type(options)):
                    if f.metadata.get("secret"):
                        register_secret(getattr(options, f.name, None))
            try:
                instance = reg.cls(options) if opt_cls is not None else reg.cls()
            except ReelforgeError:
                raise
            except Exception as exc:
                raise ConfigError(f"{KINDS[kind][1]} {reg.name!r} could not start: {exc}") from exc
            built[kind] = _Backend(kind, reg.name, instance, options)
        for scope, values in self.raw_options.items():
            if scope in KINDS:
                continue
            stray = sorted(k for k in values if (scope, k) not in claimed)
            if stray:
                names = ", ".join(map(repr, stray))
                valid = valid_keys_of([(r.name, getattr(r.cls, "Options", None)) for r in regs.values()
                                       if scope is None or r.name == scope])
                raise ConfigError(f"no selected backend takes option {names} (valid: {valid})" if scope is None
                                  else f"backend {scope!r} has no option {names} (valid: {valid})")
        return built

    # -- running ------------------------------------------------------------------
    def _hook(self, name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook. Observers watch; a broken one must not cost a render,
        so its exception becomes a warning naming the hook."""
        with self._hook_lock:
            try:
                getattr(self.pm.hook, name)(**kwargs)
            except Exception as exc:
                warnings.warn(f"reelforge: a {name} hook failed: {type(exc).__name__}: {exc}",
                              RuntimeWarning, stacklevel=2)

    @staticmethod
    def _choices(backends: dict[str, _Backend]) -> dict[str, BackendChoice]:
        choices = {k: BackendChoice(b.name, b.public_options) for k, b in backends.items()}
        for kind in OPTIONAL_KINDS - set(choices):
            choices[kind] = BackendChoice("none")  # recorded, so a resume does not add one
        return choices

    @staticmethod
    def _close_backends(backends: dict[str, _Backend]) -> None:
        for backend in backends.values():
            close = getattr(backend.instance, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # a failed cleanup must not hide the run's result
                    warnings.warn(f"reelforge: closing {backend.name} failed: {redact(str(exc))}",
                                  RuntimeWarning, stacklevel=2)

    def _run_locked(self, session: Session, backends: dict[str, _Backend]) -> RunResult:
        try:
            return self._run_opened(session, backends)
        finally:
            self._close_backends(backends)

    def _run_opened(self, session: Session, backends: dict[str, _Backend]) -> RunResult:
        try:
            # Read every saved step first: a damaged file stops us before any write.
            saved = {step: session.read_step_output(step) for step in STEP_FILES}
            # A server that is not there refuses the resume before anything is written:
            # the session keeps its status, meta and journal as they were.
            self._preflight_work_left(session, saved, backends)
            session.set_backends(self._choices(backends))
            if session.meta.status == FAILED:
                session.set_status(IN_PROGRESS)
            self._hook("session_started", session=session)
            result = self._run(session, backends, saved)
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
                             backends: dict[str, _Backend]) -> None:
        """Check the servers of the backends that surely have work left in this run (a step
        with no saved output, a shot stage with a shot not done). The others are still
        checked lazily, before their first piece of work (a done file found damaged)."""
        plan = saved.get("shots")
        states = {st.id: st for st in session.meta.shots}
        gated = {"videos"} if session.meta.review == "images" and not session.meta.approved else set()
        kinds = {"story"} if any(value is None for value in saved.values()) else set()
        for spec in SHOT_PIPELINE:
            if spec.kind not in backends or spec.name in gated:
                continue
            if plan is None or any(s.id not in states or states[s.id].artifact(spec.name).state != DONE
                                   for s in plan.shots):
                kinds.add(spec.kind)
        for kind in KINDS:
            if kind in kinds:
                self._preflight_kind(kind)

    def _run(self, session: Session, backends: dict[str, _Backend], saved: dict[str, Any]) -> RunResult:
        settings = self._film_settings(session)
        writer = backends["story"].instance
        story = self._llm_step(session, "story", lambda **job: writer.write_story(session.meta.idea, **job),
                               Story, writer.write_story, saved["story"])
        scenes = self._llm_step(session, "scene_graph", lambda **job: writer.build_scene_graph(story, **job),
                                SceneGraph, writer.build_scene_graph, saved["scene_graph"])
        plan = self._llm_step(session, "shots", lambda **job: writer.plan_shots(story, scenes, **job),
                              ShotPlan, writer.plan_shots, saved["shots"])
        if not plan.shots:
            raise StageError("the shot plan has no shots")

        outcome = self._shots(session, plan, backends)
        if outcome.failures:
            msg = f"{len(outcome.failures)} shot(s) failed"
            session.set_status(FAILED, msg)
            return RunResult(session.id, FAILED, session.path, tuple(outcome.failures),
                             problems=tuple(_group_failures(outcome.causes)))
        if outcome.over_budget:
            msg = (f"budget of {self.budget:g} backend seconds reached: {len(outcome.over_budget)} "
                   f"shot stage(s) not started (this run spent {outcome.spent:.1f} s)")
            session.set_status(IN_PROGRESS, msg)
            return RunResult(session.id, BUDGET, session.path, (msg,))
        if outcome.held:
            session.set_status(AWAITING_REVIEW, None)
            return RunResult(session.id, AWAITING_REVIEW, session.path)

        self._assemble(session, plan, story, settings, backends)
        self._hook("session_completed", session=session)
        return RunResult(session.id, COMPLETE, session.path, film=session.film_path)

    def _stage_job_kwargs(self, session: Session, step: str, method: Callable) -> dict[str, Any]:
        """``{"job": StageJob}`` if the writer's method takes a ``job`` keyword, else ``{}``."""
        try:
            params = inspect.signature(method).parameters
        except (TypeError, ValueError):
            return {}
        if "job" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return {}
        job = StageJob(
            session_id=session.id, stage=step, checkpoint=dict(session.meta.step_checkpoints.get(step, {})),
            cancelled=self.cancel, save=lambda data: session.save_step_checkpoint(step, data),
            progress=lambda fraction, message: self._hook(
                "stage_progress", session=session, stage=step,
                fraction=max(0.0, min(1.0, float(fraction))), message=message),
        )
        return {"job": job}

    def _llm_step(self, session: Session, step: str, make: Callable[..., Any], cls: type,
                  method: Callable, existing: Any) -> Any:
        """Return the step's saved output (``existing``, read before the run), or make it."""
        if existing is not None:
            # Written, then perhaps a crash before the meta caught up (or edited by hand):
            # bring the meta in line with the file, shot states included.
            session.adopt_step_output(step, existing)
            return existing
        if session.meta.steps.get(step) == DONE:
            raise SessionCorruptError(session.path / STEP_FILES[step][0], "file is missing but the step is marked done")
        self._preflight_kind("story")
        self._hook("stage_started", session=session, stage=step)
        attempts = [0]
        t0 = time.monotonic()

        def once():
            attempts[0] += 1
            return make(**self._stage_job_kwargs(session, step, method))

        def ledger() -> None:  # the cost ledger: time, attempts and the tokens the writer counted
            take = getattr(getattr(method, "__self__", None), "take_usage", None)
            usage = take() if callable(take) else {}
            session.add_step_usage(step, seconds=time.monotonic() - t0, attempts=attempts[0],
                                   **{k: v for k, v in (usage or {}).items() if isinstance(v, (int, float))})

        try:
            value = self._with_retries(once)
            if not isinstance(value, cls):
                raise StageError(f"{step}: backend returned {type(value).__name__}, expected {cls.__name__}")
        except BaseException as exc:
            if isinstance(exc, Exception):
                ledger()
                session.mark_step(step, "failed", error=f"{step}: {exc}")
                session.set_status(FAILED, f"{step}: {exc}")
                self._hook("stage_failed", session=session, stage=step, error=exc)
            raise
        ledger()
        session.save_step_output(step, value)
        self._hook("stage_finished", session=session, stage=step)
        return value

    def _with_retries(self, fn: Callable[[], Any]) -> Any:
        for attempt in self.retry.retrying():
            with attempt:
                if self.cancel.is_set():
                    raise KeyboardInterrupt
                return fn()

    # -- per-shot stages ------------------------------------------------------------
    def _effective(self, session: Session, stage: str, shot: Shot, active: set[str]) -> Shot:
        """The shot as its ``stage`` backend sees it: a clip lasts at least as long as the
        shot's narration (plus a pad); the planned duration is a default, not a cut."""
        if stage == "videos" and "narration" in active:
            voice = session.shot_state(shot.id).narration.info.get("duration")
            if isinstance(voice, (int, float)) and voice + NARRATION_PAD_S > shot.duration_s:
                # Rounded up to a tenth: a voice made again a few samples longer or shorter
                # (eSpeak is not bit-exact) must not make the clip again.
                return attrs.evolve(shot, duration_s=min(600.0, math.ceil((voice + NARRATION_PAD_S) * 10) / 10))
        return shot

    def _fingerprint(self, stage: str, shot: Shot, backend: _Backend, image_sha: str | None) -> str:
        # A backend that draws more of the shot than its prompts (the storyboard draws the
        # description) names those fields in ``fingerprint_fields``: changing them redoes it.
        extra = {f: getattr(shot, f, None) for f in getattr(backend.instance, "fingerprint_fields", ())}
        if extra:
            return fingerprint(stage=stage, shot_fields=extra,
                               inner=self._base_fingerprint(stage, shot, backend, image_sha))
        return self._base_fingerprint(stage, shot, backend, image_sha)

    def _base_fingerprint(self, stage: str, shot: Shot, backend: _Backend, image_sha: str | None) -> str:
        if stage == "images":
            return fingerprint(stage=stage, prompt=shot.image_prompt, negative=shot.negative_prompt,
                               seed=shot.seed, backend=backend.name, options=backend.fingerprint_options)
        if stage == "narration":
            return fingerprint(stage=stage, text=shot.narration, backend=backend.name,
                               options=backend.fingerprint_options)
        return fingerprint(stage=stage, motion=shot.motion_prompt, negative=shot.negative_prompt,
                           duration=shot.duration_s, seed=shot.seed, image=image_sha,
                           backend=backend.name, options=backend.fingerprint_options)

    def _stage_fingerprint(self, session: Session, stage: str, shot: Shot, backend: _Backend,
                           active: set[str]) -> str:
        image_sha = session.shot_state(shot.id).image.sha256 if stage == "videos" else None
        return self._fingerprint(stage, self._effective(session, stage, shot, active), backend, image_sha)

    def _check(self, session: Session, stage: str, shot: Shot, fp: str) -> str | None:
        """'done', 'adopted' or 'take' if the shot needs no work for ``stage``, else None.

        A done shot whose file is missing or damaged (size, mtime, then digest) is reset, its
        file kept aside under .replaced/; one made from other inputs is kept as a take
        (``<stage>/takes/``). A take made from exactly these inputs is brought back instead
        of making the shot again ('take'). A file in the stage folder that no done record
        vouches for is moved aside, never adopted: nothing proves which inputs made it.
        'adopted' means a commit a crash cut short (the done record was journalled, the
        rename was not) was finished now."""
        reason, problem = session.check_shot(stage, shot.id)
        art = session.shot_state(shot.id).artifact(stage)
        if reason is not None and art.fingerprint == fp:
            return reason
        if reason is not None:  # sound, but made from other inputs: kept as a take
            session.keep_as_take(stage, shot.id, "redo: inputs changed", prompt=_prompt_of(stage, shot))
        elif problem is not None:
            path = session.path / art.path
            if os.path.lexists(path):
                media.set_aside(path)
            session.reset_shot(stage, shot.id, f"redo: {problem}")
        session.set_aside_strays(stage, shot.id)
        art = session.shot_state(shot.id).artifact(stage)
        for take in reversed(art.takes):  # the newest matching take the user did not reject
            if take.get("fingerprint") == fp and not take.get("rejected"):
                try:
                    session.use_take(stage, shot.id, take["n"], prompt=_prompt_of(stage, shot))
                except SessionError:
                    continue  # that take's file is gone or damaged: look further, else redo
                return "take"
        return None

    def _attempt(self, session: Session, stage: str, shot: Shot, backend: _Backend,
                 image: Path | None, spent: dict) -> tuple[Path, float]:
        """Run one shot through ``backend`` with retries; returns (produced file, seconds).
        Runs in a worker thread. ``spent[(stage, shot)]`` adds up the time of every attempt."""
        work_dir = session.work_dir(stage, shot.id)
        art = session.shot_state(shot.id).artifact(stage)
        method = {"images": "generate", "narration": "narrate", "videos": "render"}[stage]

        def once() -> tuple[Path, float]:
            n = session.mark_shot_started(stage, shot.id)
            job = ShotJob(
                session_id=session.id, stage=stage, shot=shot, attempt=n, work_dir=work_dir,
                checkpoint=dict(art.checkpoint), cancelled=self.cancel,
                save=lambda data: session.save_shot_checkpoint(stage, shot.id, data),
                progress=lambda fraction, message: self._hook(
                    "shot_progress", session=session, stage=stage, shot=shot,
                    fraction=max(0.0, min(1.0, float(fraction))), message=message),
            )
            self._hook("shot_started", session=session, stage=stage, shot=shot, attempt=n)
            t0 = time.monotonic()
            try:
                if stage == "narration" and not shot.narration.strip():
                    produced = media.write_silence(work_dir / "silence.wav", SILENT_SHOT_S)  # a silent shot
                else:
                    args = (shot, image, job) if stage == "videos" else (shot, job)
                    produced = getattr(backend.instance, method)(*args)
            finally:
                spent[(stage, shot.id)] = spent.get((stage, shot.id), 0.0) + time.monotonic() - t0
            if self.cancel.is_set():
                raise KeyboardInterrupt
            return Path(produced), time.monotonic() - t0

        return self._with_retries(once)

    def _commit(self, session: Session, stage: str, shot: Shot, backend: _Backend,
                produced: Path, seconds: float, fp: str, spent: float | None = None):
        """Check what a backend produced, then commit it. It must be a regular file (not a
        link) in the session's scratch folder, and a valid file of its kind."""
        produced = Path(produced)
        if not produced.is_absolute():
            produced = Path.cwd() / produced
        work = (session.path / ".work").resolve()
        try:
            inside = produced.parent.resolve().is_relative_to(work)
        except OSError:
            inside = False
        if not inside:
            raise StageError(f"{backend.name} returned {produced}, outside the session's scratch "
                             f"folder {session.path / '.work'}")
        produced = session.path / ".work" / produced.parent.resolve().relative_to(work) / produced.name
        try:
            st = os.lstat(produced)
        except FileNotFoundError:
            raise StageError(f"{backend.name} returned {produced}, which does not exist") from None
        if not stat.S_ISREG(st.st_mode):
            raise StageError(f"{backend.name} returned {produced}, which is not a regular file")
        if not media.looks_valid(stage, produced):
            raise StageError(f"{backend.name} produced {produced.name}, which is not a valid "
                             f"{media.KIND_LABEL[stage]} file")
        info = media.facts(stage, produced)
        return session.mark_shot_done(stage, shot.id, produced, backend=backend.name,
                                      seed=shot.seed, seconds=seconds, fingerprint=fp, info=info,
                                      spent=spent)

    def _shots(self, session: Session, plan: ShotPlan, backends: dict[str, _Backend]) -> "_ShotsOutcome":
        """Every per-shot stage, pipelined: a stage starts for a shot as soon as the stages it
        needs are done for that shot (images and narration at once; a clip when both are
        done). Returns the failures, and what was held back (review gate, budget)."""
        outcome = _ShotsOutcome()
        backend_of = {spec.name: backends[spec.kind] for spec in SHOT_PIPELINE if spec.kind in backends}
        active = set(backend_of)
        specs = [spec for spec in SHOT_PIPELINE if spec.name in active]
        needs = {spec.name: tuple(d for d in spec.needs if d in active) for spec in specs}
        gated = {"videos"} if session.meta.review == "images" and not session.meta.approved else set()
        # A backend with shots left is checked before any shot starts (and before anything
        # here is set up, so a refusal leaves the runner as it was); schedule() checks the
        # others before their first shot (a done shot whose file must be redone).
        for spec in specs:
            if spec.name not in gated and any(session.shot_state(s.id).artifact(spec.name).state != DONE
                                              for s in plan.shots):
                self._preflight_kind(spec.kind)
        pools = {spec.name: cf.ThreadPoolExecutor(
            max(1, int(getattr(backend_of[spec.name].instance, "concurrency", 1))),
            thread_name_prefix=f"reelforge-{spec.name}") for spec in specs}
        running: dict[cf.Future, tuple[str, Shot, str]] = {}
        scheduled: set[tuple[str, int]] = set()
        started_stage: set[str] = set()
        spent: dict[tuple[str, int], float] = {}
        estimates = {name: _average_seconds(session, name) for name in active} if self.budget else {}
        in_flight = [0.0]

        def failed(stage: str, shot: Shot, exc: Exception) -> None:
            error = redact(str(exc) if isinstance(exc, ReelforgeError) else f"{type(exc).__name__}: {exc}")
            session.mark_shot_failed(stage, shot.id, error, spent=spent.pop((stage, shot.id), None))
            outcome.failures.append(f"shot {shot.id} ({stage}): {error}")
            # an error's ``cause`` is what every shot it failed shares ("ComfyUI at URL down
            # since 12:03:04"): those are then said once, not once per shot
            cause = redact(str(getattr(exc, "cause", None) or error))
            outcome.causes.append((stage, shot.id, cause, outcome.failures[-1]))
            self._hook("shot_failed", session=session, stage=stage, shot=shot, error=exc)

        def begin_stage(stage: str) -> None:
            if stage not in started_stage:
                started_stage.add(stage)
                self._hook("stage_started", session=session, stage=stage)

        def within_budget(stage: str) -> bool:
            if self.budget is None:
                return True
            estimate = estimates.get(stage) or 0.0
            if outcome.spent + in_flight[0] + estimate > self.budget:
                return False
            in_flight[0] += estimate
            return True

        settled: set[tuple[str, int]] = set()

        def done(stage: str, shot: Shot) -> None:
            """``stage`` is done for ``shot`` (made, or checked, in this run): start what was
            waiting for it. A stage waits for its needs to be *settled in this run*, not
            merely marked done: a voice about to be redone must not time the clip."""
            settled.add((stage, shot.id))
            for spec in specs:
                if stage in needs[spec.name] and all((d, shot.id) in settled for d in needs[spec.name]):
                    schedule(spec.name, shot)

        def schedule(stage: str, shot: Shot) -> None:
            """Skip ``shot`` for ``stage`` if done, else submit it."""
            if (stage, shot.id) in scheduled:
                return
            if stage in gated:
                outcome.held.add(stage)
                return
            scheduled.add((stage, shot.id))
            backend = backend_of[stage]
            fp = self._stage_fingerprint(session, stage, shot, backend, active)
            begin_stage(stage)
            reason = self._check(session, stage, shot, fp)
            if reason is not None:
                self._hook("shot_skipped", session=session, stage=stage, shot=shot, reason=reason)
                done(stage, shot)
                return
            if not within_budget(stage):
                outcome.over_budget.add((stage, shot.id))
                return
            self._preflight_kind(STAGE_KIND[stage])  # before this backend's first shot of the run
            image = session.path / session.shot_state(shot.id).image.path if stage == "videos" else None
            fut = pools[stage].submit(self._attempt, session, stage,
                                      self._effective(session, stage, shot, active), backend, image, spent)
            running[fut] = (stage, shot, fp)

        try:
            # New work first, so a resume of a big session reaches the backends at once;
            # checking the shots already done (and redoing any that fail the check) follows.
            def order(shot: Shot) -> tuple[bool, ...]:
                st = session.shot_state(shot.id)
                return tuple(st.artifact(spec.name).state == DONE for spec in specs)

            roots = [spec.name for spec in specs if not needs[spec.name]]
            for shot in sorted(plan.shots, key=order):
                for stage in roots:
                    schedule(stage, shot)
            while running:
                finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    stage, shot, fp = running.pop(fut)
                    in_flight[0] = max(0.0, in_flight[0] - (estimates.get(stage) or 0.0))
                    outcome.spent += spent.get((stage, shot.id), 0.0)
                    try:
                        produced, seconds = fut.result()
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:  # the backend failed this shot (after its retries)
                        if storage_cause(exc) is not None:
                            raise  # a full disk fails every shot alike: stop, say it once
                        failed(stage, shot, exc)
                        continue
                    try:
                        artifact = self._commit(session, stage, shot, backend_of[stage], produced, seconds, fp,
                                                spent.pop((stage, shot.id), None))
                    except StageError as exc:  # what it produced is not usable
                        failed(stage, shot, exc)
                        continue
                    # Anything else (an OSError: disk full, read-only; a SessionError: a link
                    # in the session folder) means the session cannot be written: stop.
                    self._hook("shot_completed", session=session, stage=stage, shot=shot, artifact=artifact)
                    done(stage, shot)
            for spec in specs:
                stage = spec.name
                if stage in gated:
                    continue
                begin_stage(stage)
                done_count, total = session.meta.counts(stage)
                if done_count == total:
                    session.mark_step(stage, DONE)
                    self._hook("stage_finished", session=session, stage=stage)
                elif any(s == stage for s, _ in outcome.over_budget) and not any(
                        f.endswith(f"({stage}): ") for f in outcome.failures):
                    session.mark_step(stage, TODO)
                else:
                    err = StageError(f"{stage}: {total - done_count} of {total} shot(s) not done")
                    session.mark_step(stage, "failed", error=str(err))
                    self._hook("stage_failed", session=session, stage=stage, error=err)
        except KeyboardInterrupt:
            self.cancel.set()
            self._drain(session, running, backend_of, spent)
            raise Interrupted(session.id) from None
        except BaseException:
            self.cancel.set()  # a fatal error: running backends stop soon (renders on a server are kept)
            raise
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True, cancel_futures=True)
        return outcome

    def _drain(self, session: Session, running: dict, backend_of: dict, spent: dict) -> None:
        """After Ctrl-C: let running shots stop, but keep any that finished meanwhile."""
        for fut in list(running):
            fut.cancel()
        for fut in list(running):
            if fut.cancelled():
                continue
            stage, shot, fp = running[fut]
            try:
                produced, seconds = fut.result()
                self._commit(session, stage, shot, backend_of[stage], produced, seconds, fp,
                             spent.pop((stage, shot.id), None))
            except BaseException:
                pass  # not finished: it stays todo and is resumed later

    # -- assembly -------------------------------------------------------------------
    def _film_settings(self, session: Session) -> film.FilmSettings:
        """This run's film settings (recorded ones, then what this run asks), recorded."""
        requested = dict(self.film_requested)
        if requested.get("music"):
            requested["music"] = film.adopt_music(session.path, requested["music"])
        settings = film.settings_from(session.meta.film_settings, requested)
        session.set_film_settings(attrs.asdict(settings))
        return settings

    def _assemble(self, session: Session, plan: ShotPlan, story: Story, settings: film.FilmSettings,
                  backends: dict[str, _Backend]) -> None:
        inputs = film.gather(session, plan, settings, story, narrated="narration" in backends)
        problem = session.check_film(inputs.fingerprint)
        if problem is None:
            return
        self._hook("stage_started", session=session, stage="assemble")
        t0 = time.monotonic()
        work = film.new_work_dir(session.scratch_dir())  # a folder no other run uses
        margin = getattr(backends["image"].instance, "subtitle_margin", 0.06)
        try:
            made = film.make(inputs, work / "film.mp4", work, cancelled=self.cancel,
                             subtitle_margin=float(margin))
            for path in made.values():
                fsync_file(path)
            if session.meta.film.state == DONE:
                session.reset_film(f"reassemble: {problem}")
            placed = []
            for key, path in made.items():
                dest = session.film_path if key == "film" else session.path / f"film.{key}"
                if os.path.lexists(dest):
                    media.set_aside(dest)  # the old one, or one no record vouches for
                os.replace(path, dest)
                placed.append(dest.name)
            fsync_dir(session.path)
        except Exception as exc:
            session.mark_step("assemble", "failed", error=f"assemble: {exc}")
            session.set_status(FAILED, f"assemble: {exc}")
            self._hook("stage_failed", session=session, stage="assemble", error=exc)
            raise
        finally:
            film.clean_scratch(work)
        subtitles = [n for n in placed if n != session.film_path.name]
        session.mark_film_done(session.film_path, time.monotonic() - t0, inputs.fingerprint,
                               info={"subtitles": subtitles})
        session.clear_scratch()
        self._hook("stage_finished", session=session, stage="assemble")
