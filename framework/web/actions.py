"""What the buttons of `reelforge serve` do: the forms they post, checked (a ValueError
for a bad one, shown as a 400), and the background runner that carries them out one at a
time per session (a second click while one runs is a 409).

Everything that changes a session goes through the Runner's public methods (start,
resume, redo, use_take, approve) or :mod:`reelforge.engine.edits`, with the session's
lock, as on the command line."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Callable

from reelforge.errors import ReelforgeError
from reelforge.redact import redact
from reelforge.store.meta import AWAITING_REVIEW, COMPLETE
from reelforge.store.session import Session
from reelforge.store.sessions import SessionStore
from reelforge.store.verify import VerifyReport

log = logging.getLogger("reelforge.web")

STAGES = ("image", "video", "narration")
STAGE_LABELS = {"image": "image", "video": "clip", "narration": "voice"}
#: The shot fields the page edits (engine.edits.EDITABLE has them all).
EDIT_FIELDS = ("image_prompt", "motion_prompt", "narration", "look")
#: The film options the new-film form offers (as `reelforge run` has them).
TRANSITIONS = ("cut", "crossfade")
SUBTITLES = ("auto", "none", "soft", "burn")
MAX_SHOTS_FORM = 200
MAX_IDEA = 2000
MAX_SEED = 2**31 - 1


class Busy(ReelforgeError):
    """The session already has an action running in this server."""


class Actions:
    """Runs the actions in background threads, one at a time per session, and remembers
    how the last one of each session ended."""

    def __init__(self, runner_factory: Callable[..., Any]):
        self.runner_factory = runner_factory
        self._lock = threading.Lock()
        self._running: dict[str, dict[str, Any]] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self._jobs = itertools.count(1)
        self._new: dict[str, dict[str, Any]] = {}

    def start(self, session_id: str, label: str, call: Callable[[Any], Any], *,
              note: Callable[[Any], str] | None = None, factory: Callable[[], Any] | None = None) -> None:
        """Start ``call(runner)`` for ``session_id``; Busy if one is running for it. ``note``
        (of the result) is added to the message of a success."""
        with self._lock:
            running = self._running.get(session_id)
            if running is not None:
                raise Busy(f"session {session_id} is busy: {running['label']} is still running; "
                           f"wait for it to finish")
            entry = {"label": label, "started": time.time(), "runner": None}
            self._running[session_id] = entry
        thread = threading.Thread(target=self._run, args=(session_id, entry, call, note, factory),
                                  name=f"reelforge-{session_id}", daemon=True)
        entry["thread"] = thread
        thread.start()

    def _run(self, session_id: str, entry: dict[str, Any], call: Callable[[Any], Any],
             note: Callable[[Any], str] | None, factory: Callable[[], Any] | None) -> None:
        outcome: dict[str, Any] = {"label": entry["label"], "ok": False}
        try:
            runner = entry["runner"] = (factory or self.runner_factory)()
            result = call(runner)
            status = getattr(result, "status", None)
            outcome["status"] = status
            extra = ""
            if note is not None:
                try:
                    extra = note(result)
                except Exception:  # a note is a nicety
                    log.exception("reelforge serve: note of %s", entry["label"])
            if isinstance(result, VerifyReport):
                outcome.update(ok=result.ok, message=result.summary)
            elif status == COMPLETE:
                outcome.update(ok=True, message=f"done{extra}; the session is COMPLETE")
            elif status == AWAITING_REVIEW:
                outcome.update(ok=True, message=f"done{extra}; the session is AWAITING REVIEW")
            else:
                failed = "; ".join(getattr(result, "failed", ()) or ()) or "the session did not finish"
                outcome.update(message=f"{status}: {failed}")
        except ReelforgeError as exc:
            outcome["message"] = str(exc)
        except Exception as exc:  # shown on the page; the traceback goes to the log
            log.exception("reelforge serve: %s of %s failed", entry["label"], session_id)
            outcome["message"] = f"unexpected error: {type(exc).__name__}: {exc}"
        finally:
            outcome["message"] = redact(outcome.get("message", ""))
            outcome["finished"] = time.time()
            with self._lock:
                self._last[session_id] = outcome
                self._running.pop(session_id, None)

    def status(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            running = self._running.get(session_id)
            last = self._last.get(session_id)
            return {"running": running["label"] if running else None,
                    "last": dict(last) if last else None}

    def running(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._running

    def busy(self) -> list[str]:
        with self._lock:
            return [f"{sid}: {e['label']}" for sid, e in self._running.items() if not sid.startswith("new-")]

    # -- a new film: its session id is known once the runner has created it
    def start_new(self, idea: str, settings: dict[str, Any]) -> str:
        """Start a new film for ``idea`` with ``settings`` (Runner keyword arguments);
        returns the job name that :meth:`job` reports on."""
        job = f"new-{next(self._jobs)}"
        record: dict[str, Any] = {"session": None}
        with self._lock:
            self._new[job] = record

        class Started:  # a plugin for this run only: the session's id once it exists
            @staticmethod
            def session_started(session):
                record["session"] = session.id

        import reelforge

        reelforge.hookimpl(Started.session_started)

        def call(runner):
            runner.pm.register(Started, name=f"reelforge-serve-{job}")
            try:
                return runner.start(idea)
            finally:
                runner.pm.unregister(name=f"reelforge-serve-{job}")

        self.start(job, f"new film: {idea[:60]}", call, factory=lambda: self.runner_factory(**settings))
        return job

    def job(self, job: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._new.get(job)
            if record is None:
                return None
            running = job in self._running
            last = self._last.get(job)
        return {"session": record["session"], "running": running, "last": dict(last) if last else None}

    def shutdown(self, timeout: float = 60.0) -> list[str]:
        """Ask every running action to stop (the runner's cancel event; what finished is
        saved) and wait for them; returns those still running after ``timeout``."""
        with self._lock:
            entries = list(self._running.items())
        for _sid, entry in entries:
            runner = entry.get("runner")
            if runner is not None and getattr(runner, "cancel", None) is not None:
                runner.cancel.set()
        deadline = time.monotonic() + timeout
        for _sid, entry in entries:
            thread = entry.get("thread")
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return [f"{sid}: {e['label']}" for sid, e in self._running.items()]


# -- the forms ---------------------------------------------------------------------------

def int_field(form, name: str, *, default: int | None = None, low: int = 0, high: int = 999_999_999) -> int:
    value = form.get(name)
    if (value is None or value == "") and default is not None:
        return default
    # ASCII digits only: str.isdigit() and int() also take '٣' or '³', which no form sends.
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 10:
        raise ValueError(f"{name} must be a whole number (digits 0-9)")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low} and {high:,}")
    return number


def text_field(form, name: str, limit: int) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    value = value.replace("\r\n", "\n").strip()
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value):,} characters; at most {limit:,}")
    if "\x00" in value:
        raise ValueError(f"{name} holds a NUL character")
    return value


def choice_field(form, name: str, choices: tuple[str, ...] | list[str], default: str | None = None) -> str | None:
    value = form.get(name)
    if value in (None, ""):
        return default
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}")
    return value


def shot_action(kind: str, form, session: Session, store: SessionStore
                ) -> tuple[str, Callable[[Any], Any], Callable[[Any], str] | None]:
    """(label, call(runner), note) for a posted session action; ValueError for a bad form."""
    sid = session.id
    if kind == "verify":  # reads every file: a background action like the others, never --repair
        return "verify", lambda runner: store.verify(sid), None
    if kind == "approve":
        if session.meta.status != AWAITING_REVIEW:
            raise ValueError(f"session {sid} is not awaiting review (it is {session.meta.status})")
        return "approve", lambda runner: runner.approve(sid), None
    if kind == "resume":
        return "resume", lambda runner: runner.resume(sid), None
    if kind == "cast_redo":
        return _cast_redo(form, session, store)
    if kind == "cast_set":
        return _cast_set(form, session, store)
    shot_id = int_field(form, "shot")
    if shot_id not in {s.id for s in session.meta.shots}:
        raise ValueError(f"session {sid} has no shot {shot_id}")
    stage = form.get("stage")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}")
    if kind == "redo":
        seed = None if form.get("seed") in (None, "") else int_field(form, "seed", high=MAX_SEED)
        if seed is not None:
            label = f"redo shot {shot_id} {STAGE_LABELS[stage]} with seed {seed}"
            return label, lambda runner: runner.redo(sid, shot_id, stage=stage, seed=seed), None
        if stage == "image":  # a redo asks for something new: a new seed, said once done
            return (f"redo shot {shot_id} image with a new seed",
                    lambda runner: runner.redo(sid, shot_id, stage=stage, new_seed=True),
                    lambda result: _seed_note(store, sid, shot_id))
        return (f"redo shot {shot_id} {STAGE_LABELS[stage]}",
                lambda runner: runner.redo(sid, shot_id, stage=stage), None)
    take = int_field(form, "take")
    return (f"use take {take} of shot {shot_id} {STAGE_LABELS[stage]}",
            lambda runner: runner.use_take(sid, shot_id, stage, take), None)


def _cast_redo(form, session: Session, store: SessionStore):
    """A character's portrait made again with a new seed, then the session brought up to date
    (the shots with that character, their clips and the film; nothing else)."""
    import random

    from reelforge.engine.cast import character_names

    name = form.get("name") or ""
    story = session.read_step_output("story")
    if name not in character_names(story):
        raise ValueError(f"{name!r} is not a character of the story of {session.id}")
    sid = session.id

    def call(runner):
        seed = random.SystemRandom().randrange(MAX_SEED)
        with store.open(sid) as opened:  # the lock: refused while another process runs the session
            opened.redo_portrait(name, seed)
        return runner.resume(sid)

    return f"redo {name}'s portrait with a new seed", call, None


def _cast_set(form, session: Session, store: SessionStore):
    """A picture of the user's as a character's portrait (checked as `reelforge cast set`
    checks it: PNG, JPEG or WebP, read whole by Pillow, at most 50 MB), then the session
    brought up to date: that character's shots, their clips and the film."""
    import io

    from reelforge.engine.cast import MAX_PORTRAIT_BYTES, character_names, portrait_suffix, set_portrait

    name = form.get("name") or ""
    if name not in character_names(session.read_step_output("story")):
        raise ValueError(f"{name!r} is not a character of the story of {session.id}")
    upload = form.get("file")
    if upload is None or not hasattr(upload, "file"):
        raise ValueError("choose a picture (PNG, JPEG or WebP) to upload")
    data = upload.file.read(MAX_PORTRAIT_BYTES + 1)
    if len(data) > MAX_PORTRAIT_BYTES:
        raise ValueError(f"the picture is larger than {MAX_PORTRAIT_BYTES // 2**20} MB")
    try:
        suffix = portrait_suffix(io.BytesIO(data))
    except ValueError as exc:
        raise ValueError(f"the picture is {exc}") from None
    sid = session.id

    def call(runner):
        with store.open(sid) as opened:  # the lock: refused while another process runs the session
            set_portrait(opened, name, io.BytesIO(data), suffix)
        return runner.resume(sid)

    return f"replace {name}'s portrait with {getattr(upload, 'filename', None) or 'your picture'}", call, None


def _seed_note(store: SessionStore, sid: str, shot_id: int) -> str:
    seed = store.load(sid).meta.shot(shot_id).image.seed
    return f" (seed {seed})" if seed is not None else ""


def edit_changes(form, session: Session) -> tuple[int, dict[str, str]]:
    """(shot id, the fields the edit form changes); ValueError if bad or if nothing changes."""
    from reelforge.records import MAX_LINE, MAX_PROMPT

    shot_id = int_field(form, "shot")
    plan = session.read_step_output("shots")
    if plan is None:
        raise ValueError(f"session {session.id} has no shot plan yet")
    shot = next((s for s in plan.shots if s.id == shot_id), None)
    if shot is None:
        raise ValueError(f"session {session.id} has no shot {shot_id}")
    changes = {}
    for name in EDIT_FIELDS:
        limit = MAX_PROMPT if name.endswith("_prompt") else MAX_LINE
        value = text_field(form, name, limit)
        if value is not None and value != getattr(shot, name):
            changes[name] = value
    if "image_prompt" in changes and not changes["image_prompt"]:
        raise ValueError("the image prompt cannot be empty")
    if not changes:
        raise ValueError(f"no change to shot {shot_id}: edit a prompt, the narration or the look")
    return shot_id, changes


def new_film_settings(form, backend_names: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
    """(idea, Runner keyword arguments) from the new-film form; ValueError if bad."""
    idea = text_field(form, "idea", MAX_IDEA) or ""
    if not idea:
        raise ValueError("give the film an idea (a sentence is enough)")
    backends = {}
    for kind, names in backend_names.items():
        chosen = choice_field(form, f"backend_{kind}", names)
        if chosen is not None:
            backends[kind] = chosen
    settings: dict[str, Any] = {"backends": backends}
    if form.get("shots") not in (None, ""):
        settings["options"] = {"shots": int_field(form, "shots", low=1, high=MAX_SHOTS_FORM)}
    transition = choice_field(form, "transition", TRANSITIONS)
    if transition:
        settings["transition"] = transition
    subtitles = choice_field(form, "subtitles", SUBTITLES)
    if subtitles:
        settings["subtitles"] = subtitles
    if form.get("review") == "images":
        settings["review"] = "images"
    return idea, settings
