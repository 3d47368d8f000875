"""What the ComfyUI renderer and image generator share: options, the server pool, and one
shot's life on a server (submit or reattach, wait, download)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from framework.errors import ConfigError, RetryableServiceError, ServiceError, StageError
from framework.redact import redact
from framework.protocols import ShotJob
from framework.records import Shot

from .client import (
    Cancelled,
    ComfyClient,
    ComfyError,
    ComfyValidationError,
    EventStream,
    OutputMissingError,
    PromptExecutionError,
    PromptInterrupted,
    PromptLost,
    ServerUnavailable,
    Limits,
    Timeouts,
    UnsafeOutputError,
    auth_headers,
    describe_node_errors,
    history_error,
    history_status,
    history_outputs,
    safe_output_name,
)
from .workflow import Template, load_template

log = logging.getLogger("reelforge.comfyui")

#: Namespace of the deterministic prompt ids (uuid5).
PROMPT_NAMESPACE = uuid.UUID("6c0b1d1e-3f0a-5c55-9a8e-7265656c666f")

VIDEO_SUFFIXES = (".mp4", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class ServerPool:
    """The configured servers: load-aware picking, marking down, and reservations so that
    concurrent shots do not all pick the same idle server."""

    def __init__(self, urls: tuple[str, ...], *, down_for: float = 60.0, timeouts: Timeouts = Timeouts(),
                 limits: Limits = Limits(), headers: Mapping[str, str] | None = None):
        self.urls = tuple(urls)
        self.down_for = down_for
        self.timeouts = timeouts
        self.limits = limits
        self.headers = dict(headers or {})
        self._clients: dict[str, ComfyClient] = {}
        self._down_until: dict[str, float] = {}
        self._reserved: dict[str, int] = {}
        self._lock = threading.Lock()

    def client(self, url: str) -> ComfyClient:
        url = url.rstrip("/")
        with self._lock:
            if url not in self._clients:
                self._clients[url] = ComfyClient(url, timeouts=self.timeouts, limits=self.limits,
                                                 headers=self.headers)
            return self._clients[url]

    def mark_down(self, url: str, reason: str = "") -> None:
        with self._lock:
            self._down_until[url.rstrip("/")] = time.monotonic() + self.down_for
        log.warning("ComfyUI at %s marked down for %.0fs%s", url, self.down_for,
                    f": {reason}" if reason else "")

    def is_down(self, url: str) -> bool:
        return self._down_until.get(url.rstrip("/"), 0.0) > time.monotonic()

    def pick(self, exclude: set[str] = frozenset()) -> ComfyClient:
        """The least busy healthy server (queue depth + shots reserved here), reserved for the
        caller: call release() once the prompt is submitted or abandoned."""
        loads: dict[str, int] = {}
        errors = []
        candidates = [u for u in self.urls if u not in exclude]
        up = [u for u in candidates if not self.is_down(u)]
        # when every server is marked down, probe them anyway rather than fail blind
        for url in up or candidates:
            try:
                loads[url] = self.client(url).queue_remaining()
            except ServiceError as exc:
                self.mark_down(url, str(exc))
                errors.append(str(exc))
        if not loads:
            detail = "; ".join(errors) or "every server is marked down"
            raise RetryableServiceError(
                f"no ComfyUI server is answering ({', '.join(self.urls)}): {detail}. "
                f"Start ComfyUI or pass --comfy-url.")
        with self._lock:
            order = {u.rstrip("/"): i for i, u in enumerate(self.urls)}
            best = min(loads, key=lambda u: (loads[u] + self._reserved.get(u, 0), order.get(u, 0)))
            self._reserved[best] = self._reserved.get(best, 0) + 1
        return self.client(best)

    def release(self, url: str) -> None:
        with self._lock:
            self._reserved[url] = max(0, self._reserved.get(url, 0) - 1)

    def close(self) -> None:
        for c in list(self._clients.values()):
            c.close()


def _short(value: Any, limit: int = 100) -> str:
    """A server-supplied value for a message: as text, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _safe_component(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"


def check_urls(urls: tuple[str, ...]) -> None:
    """Refuse a URL that is not http(s), or that carries credentials: the URLs are saved in
    the session's meta (a resume reuses them), so a password there would be written to disk."""
    from framework.redact import mask_url_credentials, url_has_credentials

    from .options import AUTH_ENV

    if not urls:
        raise ConfigError("comfyui: no server URL given; pass --comfy-url http://HOST:8188")
    for url in urls:
        if url_has_credentials(url):
            raise ConfigError(
                f"comfyui: the URL {mask_url_credentials(url)} carries a user name or password; "
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
        self.pool = ServerPool(
            tuple(u.rstrip("/") for u in options.urls), down_for=options.down_for_s,
            timeouts=Timeouts(request=options.request_timeout_s, download=options.download_timeout_s),
            limits=Limits(answer=options.max_answer_mib * mib, download=options.max_download_mib * mib),
            headers=auth_headers())
        self.concurrency = max(1, options.per_server) * len(options.urls)
        self._checked: set[str] = set()
        self._check_lock = threading.Lock()

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

    def run(self, shot: Shot, job: ShotJob, image: Path | None) -> Path:
        if job.cancelled.is_set():
            raise StageError(f"shot {shot.id}: cancelled before it was submitted")
        started = time.monotonic()
        cp = dict(job.checkpoint or {})
        if cp.get("prompt_id") and cp.get("server"):
            done = self._reattach(shot, job, cp, started, image)
            if done is not None:
                return done
        tried: set[str] = set()
        hop = 0
        lost = 0
        while True:
            client = self._pick(tried, job)
            pid = self.prompt_id_for(job, hop)
            while pid == cp.get("prompt_id"):
                hop += 1
                pid = self.prompt_id_for(job, hop)
            try:
                return self._submit_and_wait(shot, job, image, client, pid, started)
            except ServerUnavailable as exc:
                self.pool.mark_down(client.base_url, str(exc))
                tried.add(client.base_url)
                log.warning("shot %s: moving off %s", shot.id, client.base_url)
                if hop >= 2 * len(self.pool.urls) + 2:
                    raise
            except PromptLost:
                # The server forgot the prompt (restart): submit it again, a bounded number of times.
                lost += 1
                log.warning("shot %s: %s no longer knows prompt %s; submitting again",
                            shot.id, client.base_url, pid)
                if lost > 3:
                    raise RetryableServiceError(f"ComfyUI at {client.base_url} keeps losing shot "
                                                f"{shot.id}'s prompt", url=client.base_url)
            hop += 1

    def _pick(self, tried: set[str], job: ShotJob) -> ComfyClient:
        """A server for the shot; when none answers, keep asking for server_grace_s (a
        restarting ComfyUI is back in seconds) before giving the runner a retryable error."""
        deadline = time.monotonic() + self.options.server_grace_s
        while True:
            # once every server has failed this shot, any of them may take it again
            exclude = tried if len(tried) < len(self.pool.urls) else set()
            try:
                return self.pool.pick(exclude=exclude)
            except RetryableServiceError:
                if time.monotonic() > deadline:
                    raise
                if job.cancelled.wait(min(self.options.poll_interval_s, 1.0)):
                    raise StageError(f"shot {job.shot.id}: cancelled while looking for a server") from None

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
                         pid: str, started: float) -> Path:
        url = client.base_url
        client_id = uuid.uuid5(PROMPT_NAMESPACE, pid).hex
        stream = EventStream(url, client_id, headers=client.headers)
        try:
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
                    queued_as, node_errors = client.submit(workflow, prompt_id=pid,
                                                           client_id=client_id)
                    if queued_as != pid:
                        # an old ComfyUI that picks its own ids: record the real one at once
                        log.warning("ComfyUI at %s ignored our prompt_id; it queued %s",
                                    url, queued_as)
                        pid = queued_as
                        job.save_checkpoint(prompt_id=pid)
                except RetryableServiceError as exc:
                    # Did it get queued anyway? Look before anything is sent again.
                    try:
                        state, _ = client.locate(pid)
                    except RetryableServiceError:
                        raise ServerUnavailable(f"{exc}", url=url) from exc
                    if state == "lost":
                        raise
                    node_errors = {}
            except RetryableServiceError as exc:
                if exc.status_code is None:  # no answer at all: try another server
                    raise ServerUnavailable(str(exc), url=url) from exc
                raise
            finally:
                self.pool.release(url)
            if node_errors:
                self._partial_acceptance(client, pid, node_errors, workflow)
            job.progress(0.0, f"queued on {url}")
            entry = self._wait(client, pid, stream, job, total_nodes=len(workflow))
        finally:
            stream.close()
        return self._finish(entry, client, pid, shot, job, started)

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
              total_nodes: int) -> dict[str, Any]:
        o = self.options
        tracker = _Progress(pid, total_nodes, job)
        try:
            return client.wait(pid, stream=stream, cancelled=job.cancelled, on_event=tracker,
                               poll_interval=o.poll_interval_s, timeout=o.timeout_s,
                               grace=o.server_grace_s)
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

    def _reattach(self, shot: Shot, job: ShotJob, cp: Mapping[str, Any], started: float,
                  image: Path | None) -> Path | None:
        """A prompt was recorded for this shot: adopt its result, wait for it, or return None
        when the server no longer has it (then the caller submits again)."""
        url, pid = str(cp["server"]).rstrip("/"), str(cp["prompt_id"])
        if cp.get("fingerprint") not in (None, self.fingerprint(shot, job, image)):
            log.info("shot %s: template, options or still changed since prompt %s; submitting anew",
                     shot.id, pid)
            return None
        client = self.pool.client(url)
        try:
            state, entry = client.locate(pid)
        except RetryableServiceError as exc:
            self.pool.mark_down(url, str(exc))
            log.warning("shot %s: %s does not answer; its prompt %s is abandoned", shot.id, url, pid)
            return None
        log.info("shot %s: prompt %s on %s is %s", shot.id, pid, url, state)
        if state in ("running", "pending"):
            stream = EventStream(url, str(cp.get("client_id") or uuid.uuid4().hex), headers=client.headers)
            stream.connect()  # same clientId: the server resumes sending us its events
            try:
                entry = self._wait(client, pid, stream, job, total_nodes=len(self.template.workflow))
            except PromptLost:
                return None
            except ServerUnavailable as exc:
                self.pool.mark_down(url, str(exc))
                return None
            finally:
                stream.close()
        if entry is None:
            return None
        status = history_status(entry)
        if status != "success":
            log.info("shot %s: recorded prompt %s ended in %s; submitting again", shot.id, pid, status)
            return None
        try:
            return self._finish(entry, client, pid, shot, job, started)
        except OutputMissingError as exc:
            log.warning("shot %s: %s; submitting again", shot.id, exc)
            return None

    # -- results ------------------------------------------------------------------------

    def _finish(self, entry: Mapping[str, Any], client: ComfyClient, pid: str, shot: Shot,
                job: ShotJob, started: float) -> Path:
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
        seconds = round(time.monotonic() - started, 3)
        job.save_checkpoint(rendered_by=url, seconds=seconds, prompt_id=pid,
                            outputs=[p.name for _, p in files])
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

    def __init__(self, prompt_id: str, total: int, job: ShotJob):
        self.pid, self.total, self.job = prompt_id, max(1, total), job
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
