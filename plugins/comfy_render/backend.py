"""What the ComfyUI renderer and image generator share: options, the servers (a pool shared
by both stages, see pool.py), and one shot's life on a server (submit or reattach, wait,
download), with one retry policy whose deadline is server_grace_s."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from reelforge.errors import ConfigError, RetryableServiceError, ServiceError, StageError
from reelforge.redact import redact
from reelforge.protocols import ShotJob
from reelforge.records import Shot
from reelforge.engine.retry import backoff_from_env, deadline_retrying

from reelforge.plugins.comfy_render.client import (
    Cancelled,
    ComfyClient,
    ComfyError,
    ComfyValidationError,
    EventStream,
    OutputMissingError,
    PromptExecutionError,
    PromptInterrupted,
    PromptLost,
    PromptTimeout,
    ServerDown,
    ServerGone,
    advice_for,
    Limits,
    Timeouts,
    UnsafeOutputError,
    auth_headers,
    describe_node_errors,
    execution_seconds,
    history_error,
    history_status,
    history_outputs,
    safe_output_name,
)
from reelforge.plugins.comfy_render.pool import ServerPool, Ticket, normalise_url, shared_pool
from reelforge.plugins.comfy_render.workflow import Template, load_template

log = logging.getLogger("reelforge.comfyui")

#: Namespace of the deterministic prompt ids (uuid5).
PROMPT_NAMESPACE = uuid.UUID("6c0b1d1e-3f0a-5c55-9a8e-7265656c666f")

VIDEO_SUFFIXES = (".mp4", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Seconds one pre-flight request may take (a server that slow is not fit to start a run on).
PREFLIGHT_TIMEOUT = 5.0


def server_trouble(exc: BaseException) -> bool:
    """Worth another try inside the backend: no answer, a transient status, a timeout. Not a
    prompt someone interrupted, nor one that ran past timeout_s: those go to the runner,
    whose retry makes a new attempt (a new prompt id) or looks the prompt up again."""
    return isinstance(exc, RetryableServiceError) and not isinstance(exc, (PromptInterrupted,
                                                                         PromptTimeout))


class _ShotRun:
    """One shot's dealings with the servers, across the attempts of ComfyBackend.run."""

    def __init__(self, started: float):
        self.started = started
        self.last_ok = started
        "When a server last answered for this shot: the deadline (server_grace_s) counts from it."
        self.hop = 0
        self.lost = 0
        self.tried: set[str] = set()
        "Servers this shot moved off."
        self.abandoned: set[str] = set()
        "Prompt ids not to reattach to (lost, failed, changed, or on a server moved off)."
        self.url: str | None = None
        "The server of the current attempt, once one is chosen."
        self.wait_started: dict[str, float] = {}
        "When waiting for each prompt began: timeout_s counts from it across attempts."
        self.finished: dict[str, dict[str, Any]] = {}
        """Prompts the event socket said succeeded, as history-shaped entries (their outputs
        from the executed events): a server that restarts before we read its /history forgets
        them, but keeps their files, so they are fetched rather than run again."""


def _short(value: Any, limit: int = 100) -> str:
    """A server-supplied value for a message: as text, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _safe_component(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


def check_urls(urls: tuple[str, ...]) -> None:
    """Refuse a URL that is not http(s), or that carries credentials: the URLs are saved in
    the session's meta (a resume reuses them), so a password there would be written to disk."""
    from reelforge.redact import mask_url_credentials, url_credentials

    from reelforge.plugins.comfy_render.options import AUTH_ENV

    if not urls:
        raise ConfigError("comfyui: no server URL given; pass --comfy-url http://HOST:8188")
    for url in urls:
        carried = url_credentials(url)
        if carried:
            raise ConfigError(
                f"comfyui: the URL {redact(mask_url_credentials(url))} carries {carried}; "
                f"URLs are saved with the session, so pass it without them and set "
                f"{AUTH_ENV}=user:password (or a token) in the environment instead")
        if not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(f"comfyui: {redact(url)[:200]!r} is not an http(s) URL "
                              f"(expected e.g. http://127.0.0.1:8188)")


class ComfyBackend:
    """The work behind ComfyRenderer (kind 'video') and ComfyImageGenerator (kind 'image')."""

    def __init__(self, options: Any, *, kind: str):
        self.kind = kind
        self.options = options
        check_urls(options.urls)
        self.template: Template = load_template(options.template, kind=self.kind,
                                                mapping=options.mapping)
        mib = 1024 * 1024
        self.urls = tuple(dict.fromkeys(normalise_url(u) for u in options.urls))
        self.pool: ServerPool = shared_pool(self.urls, down_for=options.down_for_s,
                                            grace=options.server_grace_s)
        self.pool.open()
        self._open = True
        self.timeouts = Timeouts(request=options.request_timeout_s, download=options.download_timeout_s)
        self.limits = Limits(answer=options.max_answer_mib * mib, download=options.max_download_mib * mib)
        self.headers = auth_headers()
        self._clients: dict[str, ComfyClient] = {}
        self._clients_lock = threading.Lock()
        self.concurrency = max(1, options.per_server) * len(self.urls)
        self.key = f"{kind}:{self.template.name}"
        "Whose running average of execution time this backend's prompts feed."
        self._checked: set[str] = set()
        self._check_lock = threading.Lock()

    def client(self, url: str) -> ComfyClient:
        url = normalise_url(url)
        with self._clients_lock:
            if url not in self._clients:
                self._clients[url] = ComfyClient(url, timeouts=self.timeouts, limits=self.limits,
                                                 headers=self.headers,
                                                 facts=lambda url=url: self.pool.facts(url))
            return self._clients[url]

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
            was_open, self._open = self._open, False
        for c in clients:
            c.close()
        if was_open:
            self.pool.close()

    # -- before a run -------------------------------------------------------------------

    def preflight(self) -> None:
        """Is each server there, is it ComfyUI, can it run the template? What `reelforge
        comfyui check` does, in a fraction of a second: a server that is not ComfyUI (404,
        HTML, JSON of another shape) or lacks the template's nodes stops the run; one that
        does not answer is marked down (said once), and the run is refused only when none
        answers. Each server is asked once a run: what it said is kept for the run's other
        backend (ServerPool.facts)."""
        def look(url: str) -> tuple[str, Exception | None]:
            client = self.client(url)
            try:
                client.checked(timeout=PREFLIGHT_TIMEOUT)
                self._check_nodes(client)
            except Exception as exc:  # sorted out below
                return url, exc
            return url, None

        if len(self.urls) == 1:
            results = [look(self.urls[0])]
        else:
            with cf.ThreadPoolExecutor(min(8, len(self.urls)), thread_name_prefix="comfy-preflight") as ex:
                results = list(ex.map(look, self.urls))
        wrong, down, up = [], [], []
        for url, exc in results:
            if exc is None:
                self.pool.mark_up(url)
                up.append(url)
            elif isinstance(exc, RetryableServiceError):
                down.append((url, exc))
            elif isinstance(exc, ServiceError):
                wrong.append(str(exc))
            else:
                raise exc
        what = "image generator" if self.kind == "image" else "renderer"
        if wrong:
            raise ServiceError(f"comfyui {what}: " + "; ".join(wrong))
        if not up:
            detail = "; ".join(str(exc) for _, exc in down)
            advice = next((exc.advice for _, exc in down if isinstance(exc, ServerDown)),
                          "Start ComfyUI there (or pass the right --comfy-url)")
            raise ServiceError(f"comfyui {what}: {detail}. {advice} (`reelforge comfyui check` "
                               f"tests servers)")
        for url, exc in down:
            self.pool.mark_down(url, exc.reason if isinstance(exc, ServerDown) else str(exc),
                                grace=self.options.server_grace_s)

    # -- the values written into the workflow -------------------------------------------

    def _values(self, shot: Shot, job: ShotJob, image_ref: str | None) -> dict[str, Any]:
        t, o = self.template, self.options
        fps = o.fps or float(t.defaults.get("fps", 12))
        prefix = f"reelforge/{_safe_component(job.session_id)}/{job.stage}_shot{shot.id:03d}"
        values: dict[str, Any] = {
            "seed": shot.seed,
            "negative": shot.negative_prompt or None,
            "width": o.width or t.defaults.get("width"),
            "height": o.height or t.defaults.get("height"),
            "filename_prefix": prefix,
        }
        if self.kind == "video":
            values["image"] = image_ref
            values["prompt"] = ". ".join(p for p in (shot.motion_prompt, shot.image_prompt) if p)
            values["fps"] = fps
            values["frames"] = self._frames(shot, fps)
        else:
            values["prompt"] = shot.image_prompt
        return values

    def _frames(self, shot: Shot, fps: float) -> int:
        """The clip's frame count, refused (naming the shot) over max_frames."""
        limit = self.options.max_frames
        if not (math.isfinite(shot.duration_s) and shot.duration_s > 0):
            raise StageError(f"shot {shot.id}: a duration of {shot.duration_s!r}s cannot be rendered")
        raw = shot.duration_s * fps
        frames = self.template.frame_count(shot.duration_s, fps) if raw <= 2 * limit else None
        if frames is None or frames > limit:
            raise StageError(f"shot {shot.id}: {shot.duration_s:g}s at {fps:g} fps needs more than "
                             f"{limit} frames (the max_frames option); shorten the shot")
        return frames

    def fingerprint(self, shot: Shot, job: ShotJob, image: Path | None) -> str:
        """A hash of the workflow this shot would be submitted with (the still by content):
        a recorded prompt made from another template, options or still is not adopted."""
        still = hashlib.sha256(image.read_bytes()).hexdigest() if image is not None else None
        wf = self.template.render(self._values(shot, job, still))
        key = json.dumps([wf, self.template.output], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def prompt_id_for(self, job: ShotJob, hop: int = 0) -> str:
        key = f"reelforge/{job.session_id}/{job.stage}/{job.shot.id}/{job.attempt}"
        return str(uuid.uuid5(PROMPT_NAMESPACE, key + (f"/{hop}" if hop else "")))

    # -- one shot -----------------------------------------------------------------------

    def _units(self, shot: Shot) -> float:
        """Work units of a shot: frames for a clip, one for a still."""
        if self.kind != "video":
            return 1.0
        fps = self.options.fps or float(self.template.defaults.get("fps", 12))
        return float(self._frames(shot, fps))

    def _expected(self, shot: Shot, job: ShotJob, units: float) -> float:
        seconds = (job.checkpoint or {}).get("server_seconds")
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 < seconds < 1e7:
            return float(seconds)  # this shot's own, from an earlier attempt
        return self.pool.estimate(self.key, units, len(self.template.workflow))

    def run(self, shot: Shot, job: ShotJob, image: Path | None) -> Path:
        if job.cancelled.is_set():
            raise StageError(f"shot {shot.id}: cancelled before it was submitted")
        o = self.options
        ctx = _ShotRun(time.monotonic())
        grace = o.server_grace_s
        first = max(backoff_from_env(0.25), min(o.poll_interval_s, 0.25))
        retrying = deadline_retrying(
            deadline=grace, since=lambda: ctx.last_ok, cancelled=job.cancelled, retry_if=server_trouble,
            # every server down for longer than the deadline: the shots after the first fail at once
            give_up=lambda: (self.pool.all_down_for() or 0.0) >= grace,
            initial=first, max_wait=max(first, min(5.0, grace / 4)))
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(shot, job, image, ctx)
        except RetryableServiceError as exc:
            if job.cancelled.is_set():
                raise StageError(f"shot {shot.id}: cancelled while waiting for a ComfyUI server") from None
            if not server_trouble(exc):
                raise
            raise self._gone(shot, job, ctx, exc, grace) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _gone(self, shot: Shot, job: ShotJob, ctx: _ShotRun, exc: RetryableServiceError,
              grace: float) -> ServerGone:
        """The final error of a shot no server answered: the seconds it waited (counted from
        the last answer it had, as the deadline is), the grace in force, what to do; and, as
        its ``cause``, the words every shot failed by the same outage shares."""
        waited = time.monotonic() - ctx.last_ok
        down_for = self.pool.all_down_for()
        urls = [ctx.url] if ctx.url else [u for u in self.urls if self.pool.was_down(u)]
        cause = "; ".join(c for u in urls if (c := self.pool.down_cause(u))) or None
        reason = next((self.pool.down_reason(u) for u in urls if self.pool.was_down(u)), "")
        advice = (exc.advice if isinstance(exc, ServerDown) else
                  advice_for(reason) if reason else "Check the server")
        resume = f"`reelforge resume {job.session_id}`"
        if down_for is not None and waited < grace <= down_for:
            said = (f"gave up on shot {shot.id} at once: every server has been down for "
                    f"{down_for:.0f}s, longer than server_grace_s={grace:g}")
        else:
            said = (f"gave up on shot {shot.id} after {waited:.0f}s without an answer "
                    f"(server_grace_s={grace:g})")
        error = ServerGone(redact(f"{exc}; {said}. {advice}, then {resume}"),
                           status_code=exc.status_code, url=exc.url)
        if cause:
            error.cause = redact(f"{cause}. {advice}, then {resume}")
        return error

    def _heard(self, ctx: _ShotRun, url: str) -> None:
        ctx.last_ok = time.monotonic()
        self.pool.mark_up(url)

    def _attempt(self, shot: Shot, job: ShotJob, image: Path | None, ctx: _ShotRun) -> Path:
        """Reattach to the recorded prompt, or pick a server and submit; what fails is
        either raised for the retry policy or final."""
        ctx.url = None
        try:
            cp = dict(job.checkpoint or {})
            if cp.get("prompt_id") and cp.get("server") and str(cp["prompt_id"]) not in ctx.abandoned:
                done = self._reattach(shot, job, cp, ctx, image)
                if done is not None:
                    return done
            while True:
                try:
                    return self._submit_new(shot, job, image, ctx)
                except PromptLost as lost:
                    # The server forgot the prompt (restart): submit it again, a bounded number of times.
                    ctx.abandoned.add(str(lost))
                    ctx.lost += 1
                    log.info("shot %s: %s no longer knows prompt %s; submitting again", shot.id, ctx.url, lost)
                    if ctx.lost > 3:
                        raise ComfyError(f"ComfyUI at {ctx.url} keeps losing shot {shot.id}'s prompt "
                                         f"(is it restarting over and over?)", url=ctx.url) from None
        except RetryableServiceError as exc:
            if server_trouble(exc):
                self._trouble(ctx, job, exc)
            raise

    def _trouble(self, ctx: _ShotRun, job: ShotJob, exc: RetryableServiceError) -> None:
        """A server failed this shot: mark it down if it does not answer at all; move the
        shot off it (abandoning its prompt there) when another server is up and this one
        refused the connection or has not answered for server_grace_s."""
        url = ctx.url
        if url is None:
            return  # no server was chosen (none answers): the policy waits
        if isinstance(exc, ServerDown):
            self.pool.mark_down(url, exc.reason, grace=self.options.server_grace_s)
        silent = time.monotonic() - ctx.last_ok
        if (isinstance(exc, ServerDown) or silent >= self.options.server_grace_s) \
                and self.pool.any_other_up(url, ctx.tried):
            ctx.tried.add(url)
            cp = job.checkpoint or {}
            if cp.get("prompt_id") and normalise_url(str(cp.get("server") or "")) == url:
                ctx.abandoned.add(str(cp["prompt_id"]))
            ctx.last_ok = time.monotonic()  # a fresh deadline on the next server
            log.info("shot %s: moving off %s (%s)", job.shot.id, url, exc)

    def _submit_new(self, shot: Shot, job: ShotJob, image: Path | None, ctx: _ShotRun) -> Path:
        units = self._units(shot)
        exclude = ctx.tried if len(ctx.tried) < len(self.urls) else set()
        ticket = self.pool.pick(self.client, key=self.key, units=units,
                                expected=self._expected(shot, job, units), exclude=exclude,
                                grace=self.options.server_grace_s)
        ctx.url = ticket.url
        self._heard(ctx, ticket.url)
        recorded = (job.checkpoint or {}).get("prompt_id")
        pid = self.prompt_id_for(job, ctx.hop)
        while pid == recorded or pid in ctx.abandoned:
            ctx.hop += 1
            pid = self.prompt_id_for(job, ctx.hop)
        ctx.hop += 1
        try:
            return self._submit_and_wait(shot, job, image, self.client(ticket.url), pid, ctx, ticket)
        finally:
            ticket.finish()

    def _check_nodes(self, client: ComfyClient) -> None:
        if not self.options.check_nodes or client.base_url in self._checked:
            return
        with self._check_lock:
            if client.base_url in self._checked:
                return
            missing = client.missing_node_classes(self.template.class_types())
            if missing:
                raise ComfyError(
                    f"ComfyUI at {client.base_url} has no node class {', '.join(missing)} needed by "
                    f"template {self.template.name}: install the custom nodes, or pick another "
                    f"template (-o comfyui.template=...)", url=client.base_url)
            self._checked.add(client.base_url)

    def _upload(self, client: ComfyClient, image: Path) -> str:
        data = image.read_bytes()
        # Named by content: re-uploading identical bytes is deduplicated by ComfyUI.
        name = f"rf_{hashlib.sha256(data).hexdigest()[:20]}{image.suffix.lower() or '.png'}"
        return client.upload_image(image, name=name, subfolder="reelforge")

    def _submit_and_wait(self, shot: Shot, job: ShotJob, image: Path | None, client: ComfyClient,
                         pid: str, ctx: _ShotRun, ticket: Ticket) -> Path:
        url = client.base_url
        client_id = uuid.uuid5(PROMPT_NAMESPACE, pid).hex
        stream = EventStream(url, client_id, headers=client.headers)
        try:
            self._check_nodes(client)
            image_ref = self._upload(client, image) if image is not None else None
            workflow = self.template.render(self._values(shot, job, image_ref))
            # events only reach a socket already open under our client_id: connect first
            stream.connect()
            job.save_checkpoint(prompt_id=pid, server=url, client_id=client_id,
                                fingerprint=self.fingerprint(shot, job, image),
                                submitted_at=round(time.time(), 3))
            try:
                queued_as, node_errors = client.submit(workflow, prompt_id=pid, client_id=client_id)
                if queued_as != pid:
                    # an old ComfyUI that picks its own ids: record the real one at once
                    log.warning("ComfyUI at %s ignored our prompt_id; it queued %s", url, queued_as)
                    pid = queued_as
                    job.save_checkpoint(prompt_id=pid)
            except RetryableServiceError:
                # Did it get queued anyway? Look before anything is sent again (a failure
                # here goes to the retry policy, whose next attempt reattaches by the
                # recorded prompt id).
                state, _ = client.locate(pid)
                if state == "lost":
                    raise
                node_errors = {}
            ticket.submit()
            self._heard(ctx, url)
            if node_errors:
                self._partial_acceptance(client, pid, node_errors, workflow)
            job.progress(0.0, f"queued on {url}")
            entry = self._wait(client, pid, stream, job, ctx, ticket, total_nodes=len(workflow))
        finally:
            stream.close()
        return self._finish(entry, client, pid, shot, job, ctx, ticket)

    def _partial_acceptance(self, client: ComfyClient, pid: str, node_errors: Mapping[str, Any],
                            workflow: Mapping[str, Any]) -> None:
        """200 with node_errors: the outputs named there will not run; the others will."""
        failed = set()
        for node_id, info in node_errors.items():
            outs = info.get("dependent_outputs") if isinstance(info, dict) else None
            failed.update(str(n)[:40] for n in (outs if isinstance(outs, list) and outs else [node_id]))
        lines = "; ".join(describe_node_errors(node_errors, workflow))
        needed = self.template.output
        if needed is None or needed in failed:
            client.cancel(pid)
            raise ComfyValidationError(
                f"ComfyUI at {client.base_url} refused output node(s) {', '.join(sorted(failed))} "
                f"of the workflow: {lines}", node_errors=node_errors, url=client.base_url)
        log.warning("ComfyUI at %s dropped output node(s) %s: %s", client.base_url,
                    ", ".join(sorted(failed)), lines)

    def _wait(self, client: ComfyClient, pid: str, stream: EventStream | None, job: ShotJob,
              ctx: _ShotRun, ticket: Ticket, total_nodes: int) -> dict[str, Any]:
        o = self.options
        tracker = _Progress(pid, total_nodes, job, on_start=ticket.started,
                            on_success=lambda entry: ctx.finished.setdefault(pid, entry))
        begun = ctx.wait_started.setdefault(pid, time.monotonic())
        try:
            return client.wait(pid, stream=stream, cancelled=job.cancelled, on_event=tracker,
                               on_answer=lambda: self._heard(ctx, client.base_url),
                               poll_interval=o.poll_interval_s,
                               timeout=max(0.0, o.timeout_s - (time.monotonic() - begun)))
        except PromptLost:
            if pid in ctx.finished:  # it ran; the server restarted before we read its history
                log.info("shot %s: %s restarted after prompt %s finished; fetching its files",
                         job.shot.id, client.base_url, pid)
                return ctx.finished[pid]
            raise
        except PromptTimeout as exc:
            raise PromptTimeout(
                f"ComfyUI at {client.base_url}: shot {job.shot.id}'s prompt {pid} did not finish "
                f"within timeout_s={o.timeout_s:g}; it is still on the server. Raise the limit "
                f"(-o {self.kind}.timeout_s=SECONDS) and `reelforge resume {job.session_id}` picks "
                f"the render up: the prompt is reattached, not submitted again",
                url=client.base_url) from exc
        except Cancelled:
            self._cancel_remote(client, pid)
            raise StageError(f"shot {job.shot.id}: cancelled while ComfyUI at {client.base_url} "
                             f"was working on prompt {pid}") from None

    def _cancel_remote(self, client: ComfyClient, pid: str) -> None:
        """Ctrl-C: a render already running is worth keeping for `reelforge resume` unless
        on_interrupt=all; a prompt still waiting in the queue is deleted unless 'none'."""
        mode = self.options.on_interrupt
        if mode == "all":
            client.cancel(pid)
        elif mode == "pending":
            try:
                state, _ = client.locate(pid)
            except ServiceError:
                return
            if state == "pending":
                client.delete_queued(pid)

    def _reattach(self, shot: Shot, job: ShotJob, cp: Mapping[str, Any], ctx: _ShotRun,
                  image: Path | None) -> Path | None:
        """A prompt was recorded for this shot: adopt its result, wait for it, or return None
        when it cannot be had (then the caller submits again). A configured server that does
        not answer raises, for the retry policy; a server no longer configured is given up."""
        url, pid = normalise_url(str(cp["server"])), str(cp["prompt_id"])
        if cp.get("fingerprint") not in (None, self.fingerprint(shot, job, image)):
            log.info("shot %s: template, options or still changed since prompt %s; submitting anew",
                     shot.id, pid)
            ctx.abandoned.add(pid)
            return None
        if url in ctx.tried:
            ctx.abandoned.add(pid)
            return None
        configured = url in self.urls
        client = self.client(url)
        ctx.url = url
        try:
            state, entry = client.locate(pid)
        except ServiceError as exc:
            if configured and isinstance(exc, RetryableServiceError):
                raise
            if isinstance(exc, ServerDown):
                self.pool.mark_down(url, exc.reason, grace=self.options.server_grace_s)
            log.info("shot %s: %s (not configured now) does not answer; its prompt %s is abandoned",
                     shot.id, url, pid)
            ctx.abandoned.add(pid)
            ctx.url = None
            return None
        self._heard(ctx, url)
        if state == "lost" and pid in ctx.finished:  # it ran; the server restarted since
            state, entry = "done", ctx.finished[pid]
        log.info("shot %s: prompt %s on %s is %s", shot.id, pid, url, state)
        units = self._units(shot)
        ticket = self.pool.track(url, key=self.key, units=units, expected=self._expected(shot, job, units),
                                 running=state == "running")
        try:
            if state in ("running", "pending"):
                stream = EventStream(url, str(cp.get("client_id") or uuid.uuid4().hex), headers=client.headers)
                stream.connect()  # same clientId: the server resumes sending us its events
                try:
                    entry = self._wait(client, pid, stream, job, ctx, ticket,
                                       total_nodes=len(self.template.workflow))
                except PromptLost:
                    ctx.abandoned.add(pid)
                    return None
                finally:
                    stream.close()
            if entry is None:
                ctx.abandoned.add(pid)
                return None
            status = history_status(entry)
            if status != "success":
                log.info("shot %s: recorded prompt %s ended in %s; submitting again", shot.id, pid, status)
                ctx.abandoned.add(pid)
                return None
            try:
                return self._finish(entry, client, pid, shot, job, ctx, ticket)
            except OutputMissingError as exc:
                log.warning("shot %s: %s; submitting again", shot.id, exc)
                ctx.abandoned.add(pid)
                return None
        finally:
            ticket.finish()

    # -- results ------------------------------------------------------------------------

    def _finish(self, entry: Mapping[str, Any], client: ComfyClient, pid: str, shot: Shot,
                job: ShotJob, ctx: _ShotRun, ticket: Ticket) -> Path:
        url = client.base_url
        status = history_status(entry)
        if status != "success":
            kind, data = history_error(entry) or ("execution_error", {})
            node, node_type = _short(data.get("node_id")), _short(data.get("node_type"))
            if kind == "execution_interrupted":
                raise PromptInterrupted(redact(f"ComfyUI at {url} interrupted prompt {pid} of shot "
                                               f"{shot.id} at node {node} ({node_type})"), url=url)
            msg = _short(data.get("exception_message") or "no error message", 500).strip()
            raise PromptExecutionError(redact(
                f"ComfyUI at {url} failed shot {shot.id}: node {node} ({node_type}) raised "
                f"{_short(data.get('exception_type'))}: {msg}"), url=url)
        out_dir = job.work_dir / "comfy"
        out_dir.mkdir(parents=True, exist_ok=True)
        root = out_dir.resolve()
        files: list[tuple[str, Path]] = []
        refused: list[str] = []
        for node_id, item in history_outputs(entry):
            if item.get("type") == "temp":
                continue  # previews
            try:
                name = safe_output_name(item.get("filename"), item.get("subfolder"))
            except UnsafeOutputError as exc:
                refused.append(str(exc))
                log.warning("shot %s: %s", shot.id, exc)
                continue
            dest = (out_dir / f"{_safe_component(node_id)[:40]}-{name}").resolve()
            n = 1
            while any(dest == p for _, p in files):  # same name from two subfolders
                dest = (out_dir / f"{_safe_component(node_id)[:40]}-{n}-{name}").resolve()
                n += 1
            if dest.parent != root:
                refused.append(f"refusing output {name!r}: resolves outside {out_dir}")
                continue
            files.append((node_id, client.download(item, dest)))
        wanted = VIDEO_SUFFIXES if self.kind == "video" else IMAGE_SUFFIXES
        # every named file is fetched; the result comes from the template's output node
        chosen = next((p for nid, p in files if p.suffix.lower() in wanted
                       and self.template.output in (None, nid)), None)
        if chosen is None:
            got = ", ".join(p.name for _, p in files) or "no files"
            extra = f" ({'; '.join(refused)})" if refused else ""
            raise ComfyError(f"ComfyUI at {url} finished shot {shot.id} but produced {got}{extra}; "
                             f"the template must save a {'/'.join(wanted)} file", url=url)
        if self.kind == "image" and chosen.suffix.lower() != ".png":
            chosen = _to_png(chosen)
        seconds = round(time.monotonic() - ctx.started, 3)
        on_server = execution_seconds(entry)
        if on_server is None and ticket.running_since is not None:
            on_server = time.monotonic() - ticket.running_since
        extra = {"server_seconds": round(on_server, 3)} if on_server is not None else {}
        job.save_checkpoint(rendered_by=url, seconds=seconds, prompt_id=pid,
                            outputs=[p.name for _, p in files], **extra)
        if on_server is not None:
            self.pool.record(self.key, on_server, ticket.units, len(self.template.workflow))
        job.progress(1.0, f"done on {url} in {seconds:.1f}s")
        return chosen


def _to_png(path: Path) -> Path:
    from PIL import Image

    out = path.with_suffix(".png")
    with Image.open(path) as im:
        im.save(out, format="PNG")
    return out


class _Progress:
    """Turns websocket events into job.progress() calls."""

    def __init__(self, prompt_id: str, total: int, job: ShotJob,
                 on_start: Callable[[], None] = lambda: None,
                 on_success: Callable[[dict[str, Any]], None] = lambda entry: None):
        self.pid, self.total, self.job = prompt_id, max(1, total), job
        self.on_start = on_start
        self.on_success = on_success
        self.outputs: dict[str, Any] = {}
        "What the executed events of our prompt named, by node: its outputs."
        self.cached: set[str] = set()
        self.last = -1.0

    def __call__(self, msg: Mapping[str, Any]) -> None:
        try:
            self._event(msg)
        except Exception:  # a malformed event from the server must never break a render
            log.debug("ignoring a malformed event", exc_info=True)

    def _event(self, msg: Mapping[str, Any]) -> None:
        kind, data = msg.get("type"), msg.get("data") or {}
        if not isinstance(data, dict) or data.get("prompt_id") not in (self.pid, None):
            return
        if kind in ("execution_start", "execution_cached", "executing") and data.get("prompt_id") == self.pid:
            self.on_start()  # the server is executing our prompt now
        if kind == "executed" and data.get("prompt_id") == self.pid and isinstance(data.get("output"), dict):
            self.outputs[str(data.get("node"))[:40]] = data["output"]
        elif kind == "execution_success" and data.get("prompt_id") == self.pid and self.outputs:
            self.on_success({"outputs": dict(self.outputs), "status": {
                "status_str": "success", "completed": True, "messages": []}})
        if kind == "execution_cached":
            self.cached = {str(n) for n in data.get("nodes") or []}
        elif kind == "progress_state" and data.get("prompt_id") == self.pid:
            done = len(self.cached)
            for nid, st in (data.get("nodes") or {}).items():
                if nid in self.cached or not isinstance(st, dict):
                    continue
                if st.get("state") == "finished":
                    done += 1
                elif st.get("max"):
                    done += float(st.get("value", 0)) / float(st["max"])
            self._report(done / self.total, "")
        elif kind == "executing" and data.get("node") is not None:
            self._report(self.last if self.last >= 0 else 0.0, f"node {str(data['node'])[:40]}")
        elif kind == "progress" and data.get("max"):
            self._report(self.last if self.last >= 0 else 0.0,
                         f"node {str(data.get('node'))[:40]} step {str(data.get('value'))[:20]}/"
                         f"{str(data.get('max'))[:20]}")

    def _report(self, fraction: float, message: str) -> None:
        fraction = min(0.99, max(self.last, fraction))
        self.last = fraction
        try:
            self.job.progress(fraction, message)
        except Exception:  # a progress display must never break a render
            log.debug("progress callback failed", exc_info=True)
