"""The runner: runs a session's steps in order, skips what is done, and fans per-shot work
out to the image and video backends (pipelined: a shot's clip starts as soon as its image
is done), saving every result the moment it exists."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import inspect
import json
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs
import pluggy

from . import ffmpeg, media
from .errors import ConfigError, ReelforgeError, SessionCorruptError, SessionError, StageError
from .options import parse_pairs, public_options, structure_options
from .plugins import KINDS, active_manager, get_backend_class, load_plugins
from .protocols import ShotJob, StageJob
from .records import SceneGraph, Shot, ShotPlan, Story
from .retry import RetryPolicy
from .session import (COMPLETE, DONE, FAILED, IN_PROGRESS, STEP_FILES, BackendChoice, Session,
                      SessionStore, promote_file)

#: Backends used when the user names none: all offline, no server or network needed.
DEFAULT_BACKENDS = {"story": "offline", "image": "storyboard", "video": "kenburns"}
#: Which backend kind serves each per-shot stage.
STAGE_KIND = {"images": "image", "videos": "video"}


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
    film: Path | None = None
    "film.mp4, when the session is complete."

    @property
    def ok(self) -> bool:
        return self.status == COMPLETE


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
                 transition: str = "cut",
                 pm: pluggy.PluginManager | None = None):
        """``backends`` maps kind ('story', 'image', 'video') to a backend name; kinds not
        given use the session's recorded choice on resume, else DEFAULT_BACKENDS.
        ``options`` is either ``-o`` style pairs (``key=value`` or ``name.key=value``) or a
        mapping of backend name/kind to a dict of options."""
        self.store = SessionStore(output_dir)
        self.pm = pm or load_plugins()
        self.requested = dict(backends or {})
        unknown = set(self.requested) - set(KINDS)
        if unknown:
            raise ConfigError(f"unknown backend kind(s) {sorted(unknown)}; use story, image, video")
        self.raw_options = self._collect_options(options)
        self.retry = retry or RetryPolicy.from_env()
        if transition not in media.TRANSITIONS:
            raise ConfigError(f"unknown transition {transition!r}; use one of {', '.join(media.TRANSITIONS)}")
        self.transition = transition
        self.cancel = threading.Event()
        self._hook_lock = threading.RLock()

    # -- public API ---------------------------------------------------------------
    def start(self, idea: str) -> RunResult:
        """Create a new session for ``idea`` and run it to the end."""
        backends = self._resolve_backends(None)  # fail on bad names/options before creating
        session = self.store.create(idea)
        return self._run_locked(session, backends)

    def resume(self, session_id: str | None = None) -> RunResult:
        """Resume ``session_id`` (default: the newest incomplete session), doing only what
        remains. A COMPLETE session is checked (missing or damaged files are redone)."""
        if session_id is None:
            incomplete = self.store.find_incomplete()
            if not incomplete:
                raise SessionError(f"no incomplete session in {self.store.root}")
            session_id = incomplete[0].id
        session = self.store.open(session_id)
        try:
            backends = self._resolve_backends(session)
        except BaseException:
            session.close()
            raise
        return self._run_locked(session, backends)

    def validate(self) -> None:
        """Check the selected backends and options without creating anything."""
        self._resolve_backends(None)

    # -- setup --------------------------------------------------------------------
    @staticmethod
    def _collect_options(options) -> dict[str | None, dict[str, Any]]:
        if isinstance(options, dict):
            return {scope: dict(values) for scope, values in options.items()}
        collected: dict[str | None, dict[str, Any]] = {}
        for scope, key, value in parse_pairs(options):
            collected.setdefault(scope, {})[key] = value
        return collected

    def _resolve_backends(self, session: Session | None) -> dict[str, _Backend]:
        with active_manager(self.pm):
            return self._build_backends(session)

    def _build_backends(self, session: Session | None) -> dict[str, _Backend]:
        recorded = session.meta.backends if session is not None else {}
        names = {}
        for kind in KINDS:
            if kind in self.requested:
                names[kind] = self.requested[kind]
            elif kind in recorded:
                names[kind] = recorded[kind].name
            else:
                names[kind] = DEFAULT_BACKENDS[kind]
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
                raise ConfigError(f"no selected backend takes option {names}" if scope is None
                                  else f"backend {scope!r} has no option {names}")
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

    def _run_locked(self, session: Session, backends: dict[str, _Backend]) -> RunResult:
        try:
            return self._run_opened(session, backends)
        finally:
            for backend in backends.values():
                close = getattr(backend.instance, "close", None)
                if callable(close):
                    try:
                        close()
                    except Exception as exc:  # a failed cleanup must not hide the run's result
                        warnings.warn(f"reelforge: closing {backend.name} failed: {exc}",
                                      RuntimeWarning, stacklevel=2)

    def _run_opened(self, session: Session, backends: dict[str, _Backend]) -> RunResult:
        try:
            # Read every saved step first: a damaged file stops us before any write.
            saved = {step: session.read_step_output(step) for step in STEP_FILES}
            session.set_backends({k: BackendChoice(b.name, b.public_options) for k, b in backends.items()})
            if session.meta.status == FAILED:
                session.set_status(IN_PROGRESS)
            self._hook("session_started", session=session)
            return self._run(session, backends, saved)
        finally:
            session.close()

    def _run(self, session: Session, backends: dict[str, _Backend], saved: dict[str, Any]) -> RunResult:
        writer = backends["story"].instance
        story = self._llm_step(session, "story", lambda **job: writer.write_story(session.meta.idea, **job),
                               Story, writer.write_story, saved["story"])
        scenes = self._llm_step(session, "scene_graph", lambda **job: writer.build_scene_graph(story, **job),
                                SceneGraph, writer.build_scene_graph, saved["scene_graph"])
        plan = self._llm_step(session, "shots", lambda **job: writer.plan_shots(story, scenes, **job),
                              ShotPlan, writer.plan_shots, saved["shots"])
        if not plan.shots:
            raise StageError("the shot plan has no shots")

        failures = self._shots(session, plan, backends["image"], backends["video"])
        if failures:
            msg = f"{len(failures)} shot(s) failed"
            session.set_status(FAILED, msg)
            return RunResult(session.id, FAILED, session.path, tuple(failures))

        self._assemble(session, plan)
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
            if session.meta.steps.get(step) != DONE:  # written, then crashed before marking
                session.mark_step(step, DONE)
            return existing
        if session.meta.steps.get(step) == DONE:
            raise SessionCorruptError(session.path / STEP_FILES[step][0], "file is missing but the step is marked done")
        self._hook("stage_started", session=session, stage=step)
        try:
            value = self._with_retries(lambda: make(**self._stage_job_kwargs(session, step, method)))
            if not isinstance(value, cls):
                raise StageError(f"{step}: backend returned {type(value).__name__}, expected {cls.__name__}")
        except BaseException as exc:
            if isinstance(exc, Exception):
                session.mark_step(step, "failed", error=f"{step}: {exc}")
                session.set_status(FAILED, f"{step}: {exc}")
                self._hook("stage_failed", session=session, stage=step, error=exc)
            raise
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
    def _fingerprint(self, stage: str, shot: Shot, backend: _Backend, image_sha: str | None) -> str:
        if stage == "images":
            return fingerprint(stage=stage, prompt=shot.image_prompt, negative=shot.negative_prompt,
                               seed=shot.seed, backend=backend.name, options=backend.fingerprint_options)
        return fingerprint(stage=stage, motion=shot.motion_prompt, negative=shot.negative_prompt,
                           duration=shot.duration_s, seed=shot.seed, image=image_sha,
                           backend=backend.name, options=backend.fingerprint_options)

    def _check(self, session: Session, stage: str, shot: Shot, fp: str) -> str | None:
        """'done' or 'adopted' if the shot needs no work for ``stage``, else None.

        A done shot whose file is missing, damaged or made from other inputs is reset (its
        old file kept aside under .replaced/); a valid file not yet marked (a crash
        between the two) is adopted."""
        art = session.meta.shot(shot.id).artifact(stage)
        stage_dir = session.path / stage
        if art.state == DONE:
            path = session.path / art.path if art.path else None
            problem = None
            if path is None or not path.is_file():
                problem = "file is missing"
            elif path.stat().st_size != art.size or not media.looks_valid(stage, path):
                problem = "file is damaged"
            elif art.fingerprint != fp:
                problem = "inputs changed"
            if problem is None:
                return "done"
            if path is not None and path.is_file():
                media.set_aside(path)
            session.reset_shot(stage, shot.id, f"redo: {problem}")
            return None
        for path in sorted(stage_dir.glob(f"shot_{shot.id:03d}.*")) if stage_dir.is_dir() else []:
            if media.looks_valid(stage, path):
                session.record_shot_done(stage, shot.id, path, backend=None, seed=shot.seed,
                                         seconds=None, fingerprint=fp, adopted=True)
                return "adopted"
            media.set_aside(path)
        return None

    def _attempt(self, session: Session, stage: str, shot: Shot, backend: _Backend,
                 image: Path | None) -> tuple[Path, float]:
        """Run one shot through ``backend`` with retries; returns (produced file, seconds).
        Runs in a worker thread."""
        work_dir = session.work_dir(stage, shot.id)
        art = session.meta.shot(shot.id).artifact(stage)

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
            if stage == "images":
                produced = backend.instance.generate(shot, job)
            else:
                produced = backend.instance.render(shot, image, job)
            if self.cancel.is_set():
                raise KeyboardInterrupt
            return Path(produced), time.monotonic() - t0

        return self._with_retries(once)

    def _commit(self, session: Session, stage: str, shot: Shot, backend: _Backend,
                produced: Path, seconds: float, fp: str):
        resolved = produced.resolve()
        if not resolved.is_relative_to(session.path.resolve()):
            raise StageError(f"{backend.name} returned {produced}, outside the session folder")
        if not resolved.is_file():
            raise StageError(f"{backend.name} returned {produced}, which does not exist")
        if not media.looks_valid(stage, resolved):
            raise StageError(f"{backend.name} produced {produced.name}, which is not a valid "
                             f"{'image' if stage == 'images' else 'video'} file")
        return session.mark_shot_done(stage, shot.id, resolved, backend=backend.name,
                                      seed=shot.seed, seconds=seconds, fingerprint=fp)

    def _shots(self, session: Session, plan: ShotPlan, image_b: _Backend, video_b: _Backend) -> list[str]:
        """Images and videos, pipelined. Returns one line per shot that failed."""
        failures: list[str] = []
        pools = {
            "images": cf.ThreadPoolExecutor(max(1, int(getattr(image_b.instance, "concurrency", 1))),
                                            thread_name_prefix="reelforge-img"),
            "videos": cf.ThreadPoolExecutor(max(1, int(getattr(video_b.instance, "concurrency", 1))),
                                            thread_name_prefix="reelforge-vid"),
        }
        backend_of = {"images": image_b, "videos": video_b}
        running: dict[cf.Future, tuple[str, Shot, str]] = {}
        started_stage: set[str] = set()
        stage_failed: set[str] = set()
        remaining = {"images": 0, "videos": 0}

        def begin_stage(stage: str) -> None:
            if stage not in started_stage:
                started_stage.add(stage)
                self._hook("stage_started", session=session, stage=stage)

        def schedule(stage: str, shot: Shot) -> None:
            """Skip ``shot`` for ``stage`` if done, else submit it; chain the video."""
            image_path = None
            if stage == "videos":
                img = session.meta.shot(shot.id).image
                image_path = session.path / img.path
                fp = self._fingerprint(stage, shot, video_b, img.sha256)
            else:
                fp = self._fingerprint(stage, shot, image_b, None)
            begin_stage(stage)
            reason = self._check(session, stage, shot, fp)
            if reason is not None:
                self._hook("shot_skipped", session=session, stage=stage, shot=shot, reason=reason)
                if stage == "images":
                    schedule("videos", shot)
                return
            remaining[stage] += 1
            fut = pools[stage].submit(self._attempt, session, stage, shot, backend_of[stage], image_path)
            running[fut] = (stage, shot, fp)

        try:
            for shot in plan.shots:
                schedule("images", shot)
            while running:
                done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    stage, shot, fp = running.pop(fut)
                    remaining[stage] -= 1
                    try:
                        produced, seconds = fut.result()
                        artifact = self._commit(session, stage, shot, backend_of[stage], produced, seconds, fp)
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ReelforgeError) else str(exc)
                        session.mark_shot_failed(stage, shot.id, error)
                        failures.append(f"shot {shot.id} ({stage}): {error}")
                        stage_failed.add(stage)
                        self._hook("shot_failed", session=session, stage=stage, shot=shot, error=exc)
                        if stage == "images":
                            stage_failed.add("videos")  # its clip cannot be made this run
                        continue
                    self._hook("shot_completed", session=session, stage=stage, shot=shot, artifact=artifact)
                    if stage == "images":
                        schedule("videos", shot)
            for stage in ("images", "videos"):
                begin_stage(stage)
                done_count, total = session.meta.counts(stage)
                if done_count == total:
                    session.mark_step(stage, DONE)
                    self._hook("stage_finished", session=session, stage=stage)
                else:
                    err = StageError(f"{stage}: {total - done_count} of {total} shot(s) not done")
                    session.mark_step(stage, "failed", error=str(err))
                    self._hook("stage_failed", session=session, stage=stage, error=err)
        except KeyboardInterrupt:
            self.cancel.set()
            self._drain(session, running, backend_of)
            raise Interrupted(session.id) from None
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True, cancel_futures=True)
        return failures

    def _drain(self, session: Session, running: dict, backend_of: dict) -> None:
        """After Ctrl-C: let running shots stop, but keep any that finished meanwhile."""
        for fut in list(running):
            fut.cancel()
        for fut in list(running):
            if fut.cancelled():
                continue
            stage, shot, fp = running[fut]
            try:
                produced, seconds = fut.result()
                self._commit(session, stage, shot, backend_of[stage], produced, seconds, fp)
            except BaseException:
                pass  # not finished: it stays todo and is resumed later

    # -- assembly -------------------------------------------------------------------
    def _assemble(self, session: Session, plan: ShotPlan) -> None:
        film = session.film_path
        clips = [session.path / session.meta.shot(s.id).video.path for s in plan.shots]
        f = session.meta.film
        if (session.meta.steps.get("assemble") == DONE and f.state == DONE and film.is_file()
                and film.stat().st_size == f.size and media.looks_valid("videos", film)):
            return
        self._hook("stage_started", session=session, stage="assemble")
        t0 = time.monotonic()
        tmp = session.path / ".work" / "film.partial.mp4"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            ffmpeg.assemble(clips, tmp, transition=self.transition, cancelled=self.cancel)
            if film.exists():
                media.set_aside(film)
            promote_file(tmp, film)
        except Exception as exc:
            session.mark_step("assemble", "failed", error=f"assemble: {exc}")
            session.set_status(FAILED, f"assemble: {exc}")
            self._hook("stage_failed", session=session, stage="assemble", error=exc)
            raise
        session.mark_film_done(film, time.monotonic() - t0)
        self._hook("stage_finished", session=session, stage="assemble")
