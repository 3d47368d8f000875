"""A small synchronous ComfyUI client: httpx for HTTP, websockets' sync client for events.

Follows what a ComfyUI 0.3.64 server was recorded doing (shared/comfyui-transcripts): a
client-chosen prompt_id, /history as the source of truth ({} until a prompt is done), events
only for the submitting client_id, no replay after a websocket reconnect.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import attrs
import httpx
import tenacity

from framework.errors import RetryableServiceError, ServiceError

#: HTTP statuses worth another try: the server is busy, restarting or overloaded.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class ComfyError(ServiceError):
    """ComfyUI refused or failed a prompt for good; retrying the same prompt will not help."""


class ComfyValidationError(ComfyError):
    """POST /prompt answered 400, or 200 with node_errors for the outputs we need."""

    def __init__(self, message: str, *, node_errors: Mapping[str, Any] | None = None, **kw):
        super().__init__(message, **kw)
        self.node_errors = dict(node_errors or {})


class PromptExecutionError(ComfyError):
    """The prompt ran and failed (execution_error in /history)."""


class UnsafeOutputError(ComfyError):
    """An output's filename or subfolder would escape the folder it is written to."""


class OutputMissingError(ComfyError):
    """/view answered 404 for an output named in /history."""


class PromptInterrupted(RetryableServiceError):
    """Someone interrupted the prompt on the server (not us)."""


class PromptLost(Exception):
    """The server knows nothing of the prompt: neither in /queue nor in /history (it restarted,
    or the prompt was deleted). The caller may submit again."""


class ServerUnavailable(RetryableServiceError):
    """The server stopped answering for longer than the grace period."""


class Cancelled(Exception):
    """The user cancelled (Ctrl-C) while we waited."""


@attrs.frozen
class Timeouts:
    connect: float = 5.0
    "Seconds to open a TCP connection."
    read: float = 60.0
    "Seconds to wait for a response (uploads and downloads of big files included)."


def _retry_wait() -> float:
    try:
        return max(0.0, float(os.environ.get("REELFORGE_RETRY_BACKOFF", "0.25")))
    except ValueError:
        return 0.25


def error_text(resp: httpx.Response) -> str:
    text = resp.text.strip()
    return text[:300] if text else f"HTTP {resp.status_code} with an empty body"


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def describe_node_errors(node_errors: Mapping[str, Any], workflow: Mapping[str, Any] | None = None
                         ) -> list[str]:
    """One line per failing input: ``node 1 (EmptyImage) input 'width': Required input is missing``."""
    lines = []
    for node_id, info in (node_errors or {}).items():
        cls = info.get("class_type") or ((workflow or {}).get(node_id) or {}).get("class_type", "?")
        for err in info.get("errors", []) or [{}]:
            extra = err.get("extra_info") or {}
            name = extra.get("input_name")
            where = f"node {node_id} ({cls})" + (f" input {name!r}" if name else "")
            detail = err.get("details") or ""
            msg = err.get("message") or err.get("type") or "invalid"
            lines.append(f"{where}: {msg}" + (f" ({detail})" if detail and detail != name else ""))
    return lines


def safe_output_name(filename: Any, subfolder: Any) -> str:
    """The local file name for an output, or UnsafeOutputError when the server's name or
    subfolder tries to leave its folder (we only ever write a plain basename)."""
    if not isinstance(filename, str) or not isinstance(subfolder or "", str):
        raise UnsafeOutputError(f"output name {filename!r} / subfolder {subfolder!r} is not a string")
    bad = (not filename or filename in (".", "..") or any(c in filename for c in "/\\\x00:")
           or filename != filename.strip())
    if bad:
        raise UnsafeOutputError(f"refusing output file name {filename!r}: it is not a plain file name")
    parts = (subfolder or "").replace("\\", "/").split("/")
    if (subfolder or "").startswith(("/", "\\")) or ".." in parts or "\x00" in (subfolder or "") \
            or ":" in (subfolder or ""):
        raise UnsafeOutputError(f"refusing output subfolder {subfolder!r}: it escapes the output folder")
    return filename


@attrs.define
class QueueState:
    running: list[str]
    pending: list[str]

    def __contains__(self, prompt_id: str) -> bool:
        return prompt_id in self.running or prompt_id in self.pending

    @property
    def depth(self) -> int:
        return len(self.running) + len(self.pending)


class EventStream:
    """The /ws event socket of one client_id. Text frames are parsed JSON; binary frames
    (previews) are skipped. A dropped socket raises ConnectionError from next()."""

    def __init__(self, base_url: str, client_id: str, *, open_timeout: float = 5.0):
        scheme = "wss" if base_url.startswith("https") else "ws"
        host = base_url.split("://", 1)[-1].rstrip("/")
        self.url = f"{scheme}://{host}/ws?clientId={client_id}"
        self.open_timeout = open_timeout
        self._ws = None

    @property
    def alive(self) -> bool:
        return self._ws is not None

    def connect(self) -> bool:
        from websockets.sync.client import connect

        # max_queue=None: unread events must not stall the reader, or close() waits for
        # a close frame stuck behind them
        kw = dict(open_timeout=self.open_timeout, max_size=None, max_queue=None, close_timeout=1)
        try:
            try:
                self._ws = connect(self.url, legacy=True, **kw)  # websockets >= 17
            except TypeError:
                self._ws = connect(self.url, **kw)
        except Exception:  # refused, reset, handshake failure: fall back to polling
            self._ws = None
        return self._ws is not None

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON event, or None when ``timeout`` passes first."""
        if self._ws is None:
            raise ConnectionError("event socket is closed")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                frame = self._ws.recv(timeout=left)
            except TimeoutError:
                return None
            except Exception as exc:  # ConnectionClosed and socket errors alike
                self.close()
                raise ConnectionError(f"event socket dropped: {exc}") from exc
            if isinstance(frame, bytes):
                continue  # preview images and text frames: not needed
            try:
                msg = json.loads(frame)
            except ValueError:
                continue
            if isinstance(msg, dict) and isinstance(msg.get("type"), str):
                return msg

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass


class ComfyClient:
    """One ComfyUI server. Thread-safe (httpx.Client is); one EventStream per waiting shot."""

    def __init__(self, base_url: str, *, timeouts: Timeouts = Timeouts(), get_attempts: int = 3):
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self.get_attempts = max(1, get_attempts)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
        )  # HTTP(S)_PROXY and NO_PROXY apply, as for any HTTP client
        self._object_info: dict[str, bool] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"ComfyClient({self.base_url!r})"

    # -- plumbing ----------------------------------------------------------------------

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        url = f"{self.base_url}{path}"
        if "files" not in kw:  # small JSON calls: a hung server must not hold us for long
            kw.setdefault("timeout", httpx.Timeout(min(self.timeouts.read, 15.0),
                                                   connect=self.timeouts.connect))
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TimeoutException as exc:
            raise RetryableServiceError(f"ComfyUI at {self.base_url} timed out on {method} {path}",
                                        url=url) from exc
        except httpx.TransportError as exc:  # refused, reset, DNS, protocol errors
            raise RetryableServiceError(f"ComfyUI at {self.base_url} is unreachable "
                                        f"({type(exc).__name__}: {exc})", url=url) from exc
        if resp.status_code in TRANSIENT_STATUS:
            raise RetryableServiceError(
                f"ComfyUI at {self.base_url} answered {resp.status_code} to {method} {path}: "
                f"{error_text(resp)}", status_code=resp.status_code, url=url,
                retry_after=_retry_after(resp))
        return resp

    def _get(self, path: str, **kw: Any) -> httpx.Response:
        """An idempotent GET, retried a few times on transient errors."""
        wait = _retry_wait()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RetryableServiceError),
            stop=tenacity.stop_after_attempt(self.get_attempts),
            wait=tenacity.wait_exponential(multiplier=wait, max=2.0) if wait else tenacity.wait_none(),
            reraise=True,
        )
        return retrying(self._send, "GET", path, **kw)

    def _json(self, resp: httpx.Response, what: str) -> Any:
        if resp.status_code != 200:
            raise ComfyError(f"ComfyUI at {self.base_url} answered {resp.status_code} to {what}: "
                             f"{error_text(resp)}", status_code=resp.status_code, url=str(resp.url))
        try:
            return resp.json()
        except ValueError as exc:
            raise RetryableServiceError(f"ComfyUI at {self.base_url} sent invalid JSON for {what}",
                                        url=str(resp.url)) from exc

    # -- load and state ----------------------------------------------------------------

    def queue_remaining(self) -> int:
        """Running + pending prompts (GET /prompt)."""
        data = self._json(self._get("/prompt"), "GET /prompt")
        return int((data.get("exec_info") or {}).get("queue_remaining", 0))

    def queue(self) -> QueueState:
        data = self._json(self._get("/queue"), "GET /queue")
        ids = lambda items: [item[1] for item in items or [] if isinstance(item, list) and len(item) > 1]
        return QueueState(ids(data.get("queue_running")), ids(data.get("queue_pending")))

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's history entry, or None ({}: unknown or not finished yet)."""
        data = self._json(self._get(f"/history/{prompt_id}"), "GET /history")
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry or None

    def missing_node_classes(self, class_types: Iterable[str]) -> list[str]:
        """Which of these node classes the server does not have. Asks /object_info/{class}
        per class (an unknown class answers {}): the full /object_info can be megabytes."""
        missing = []
        for cls in sorted(set(class_types)):
            with self._lock:
                known = self._object_info.get(cls) if self._object_info is not None else None
            if known is None:
                data = self._json(self._get(f"/object_info/{cls}"), "GET /object_info")
                known = bool(isinstance(data, dict) and data.get(cls))
                with self._lock:
                    self._object_info = {**(self._object_info or {}), cls: known}
            if not known:
                missing.append(cls)
        return missing

    # -- submitting --------------------------------------------------------------------

    def upload_image(self, path: Path, *, name: str, subfolder: str = "") -> str:
        """Upload ``path`` as an input image; return the value for LoadImage's ``image``
        (``subfolder/name``, using the name the server chose)."""
        data = {"type": "input", "subfolder": subfolder} if subfolder else {"type": "input"}
        with open(path, "rb") as fh:
            resp = self._send("POST", "/upload/image", files={"image": (name, fh, "image/png")},
                              data=data)
        info = self._json(resp, "POST /upload/image")
        got, sub = info.get("name"), info.get("subfolder") or ""
        if not isinstance(got, str) or not got:
            raise ComfyError(f"ComfyUI at {self.base_url} accepted an upload but named no file: {info}")
        return f"{sub}/{got}" if sub else got

    def submit(self, workflow: Mapping[str, Any], *, prompt_id: str, client_id: str
               ) -> tuple[str, dict[str, Any]]:
        """POST /prompt. Returns (the prompt_id the server uses, node_errors): node_errors is
        non-empty when some outputs were refused and the rest accepted. A 400 raises
        ComfyValidationError. Never retried here: the caller looks the prompt_id up before
        submitting again."""
        body = {"prompt": workflow, "client_id": client_id, "prompt_id": prompt_id}
        resp = self._send("POST", "/prompt", json=body)
        if resp.status_code == 400:
            try:
                data = resp.json()
            except ValueError:
                data = {}
            err = data.get("error") or {}
            node_errors = data.get("node_errors") or {}
            lines = describe_node_errors(node_errors, workflow)
            head = err.get("message") or error_text(resp)
            if err.get("details") and not lines:
                head += f": {err['details']}"
            raise ComfyValidationError(
                f"ComfyUI at {self.base_url} refused the workflow: {head}"
                + (": " + "; ".join(lines) if lines else ""),
                node_errors=node_errors, status_code=400, url=f"{self.base_url}/prompt")
        data = self._json(resp, "POST /prompt")
        return str(data.get("prompt_id") or prompt_id), data.get("node_errors") or {}

    def delete_queued(self, prompt_id: str) -> None:
        """POST /queue {"delete": [id]}: drops the prompt if it is still pending. Best effort."""
        try:
            self._send("POST", "/queue", json={"delete": [prompt_id]})
        except ServiceError:
            pass

    def cancel(self, prompt_id: str) -> None:
        """Remove the prompt from the queue if pending, interrupt it if running. Best effort."""
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self._send("POST", path, json=body)
            except ServiceError:
                pass

    # -- waiting -----------------------------------------------------------------------

    def locate(self, prompt_id: str) -> tuple[str, dict[str, Any] | None]:
        """Where the prompt is: ("done", entry), ("running"|"pending", None) or ("lost", None).
        /queue is read before /history so a prompt finishing in between is not taken for lost."""
        q = self.queue()
        entry = self.history(prompt_id)
        if entry is not None:
            return "done", entry
        if prompt_id in q.running:
            return "running", None
        if prompt_id in q.pending:
            return "pending", None
        return "lost", None

    def wait(self, prompt_id: str, *, stream: EventStream | None, cancelled: threading.Event,
             on_event: Callable[[dict[str, Any]], None] = lambda m: None,
             poll_interval: float = 1.0, timeout: float = 3600.0, grace: float = 30.0,
             ) -> dict[str, Any]:
        """Wait until the prompt is in /history and return its entry.

        Events from ``stream`` drive progress and wake us on completion; /history stays the
        source of truth and is polled (often when the socket is down, rarely when it is up).
        Raises PromptLost, ServerUnavailable (no answer for ``grace`` seconds), Cancelled, or
        RetryableServiceError on timeout."""
        deadline = time.monotonic() + timeout
        failing_since: float | None = None
        safety_poll = max(poll_interval * 10, 5.0)
        next_poll = 0.0  # check at once: a reattached prompt may be done already
        reconnect_at = 0.0
        while True:
            if cancelled.is_set():
                raise Cancelled()
            now = time.monotonic()
            if now > deadline:
                raise RetryableServiceError(
                    f"ComfyUI at {self.base_url}: prompt {prompt_id} not finished after {timeout:.0f}s")
            wake = False
            if now >= next_poll:
                pass
            elif stream is not None and stream.alive:
                try:
                    msg = stream.next(timeout=min(next_poll - now, 0.25))
                except ConnectionError:
                    msg = None
                    next_poll = 0.0  # missed events are not replayed: look now
                if msg is not None:
                    on_event(msg)
                    wake = _is_finished_event(msg, prompt_id)
                    if not wake:
                        continue
                elif stream.alive:
                    continue
            else:
                if stream is not None and now >= reconnect_at:
                    reconnect_at = now + poll_interval * 5
                    if stream.connect():
                        continue
                cancelled.wait(min(poll_interval, max(0.0, next_poll - now)))
                if time.monotonic() < next_poll:
                    continue
            try:
                state, entry = self.locate(prompt_id)
            except RetryableServiceError as exc:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > grace:
                    raise ServerUnavailable(f"ComfyUI at {self.base_url} stopped answering "
                                            f"for {grace:.0f}s: {exc}", url=self.base_url) from exc
                next_poll = time.monotonic() + poll_interval
                continue
            failing_since = None
            if entry is not None:
                return entry
            if state == "lost":
                raise PromptLost(prompt_id)
            fast = wake or stream is None or not stream.alive
            next_poll = time.monotonic() + (poll_interval if fast else safety_poll)

    # -- results -----------------------------------------------------------------------

    def download(self, item: Mapping[str, Any], dest: Path) -> Path:
        """GET /view for one output entry ({filename, subfolder, type}) into ``dest`` (a file
        path the caller built from safe_output_name). Written atomically."""
        filename, subfolder = item.get("filename"), item.get("subfolder") or ""
        safe_output_name(filename, subfolder)
        params = {"filename": filename, "subfolder": subfolder, "type": item.get("type") or "output"}
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        url = f"{self.base_url}/view"
        try:
            with self._http.stream("GET", "/view", params=params) as resp:
                if resp.status_code == 404:
                    raise OutputMissingError(f"ComfyUI at {self.base_url} no longer has output "
                                             f"{subfolder + '/' if subfolder else ''}{filename}",
                                             status_code=404, url=url)
                if resp.status_code in TRANSIENT_STATUS:
                    raise RetryableServiceError(f"ComfyUI at {self.base_url} answered "
                                                f"{resp.status_code} to GET /view", url=url,
                                                status_code=resp.status_code)
                if resp.status_code != 200:
                    raise ComfyError(f"ComfyUI at {self.base_url} refused to serve output "
                                     f"{filename!r} (subfolder {subfolder!r}): HTTP {resp.status_code}",
                                     status_code=resp.status_code, url=url)
                with open(tmp, "wb") as fh:
                    for chunk in resp.iter_bytes(1 << 16):
                        fh.write(chunk)
            os.replace(tmp, dest)
        except httpx.TransportError as exc:
            raise RetryableServiceError(f"ComfyUI at {self.base_url}: download of {filename!r} "
                                        f"failed ({type(exc).__name__}: {exc})", url=url) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return dest


def _is_finished_event(msg: Mapping[str, Any], prompt_id: str) -> bool:
    data = msg.get("data") or {}
    if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
        return False
    kind = msg.get("type")
    # executing{node: null} comes after the history entry is written; the others just before
    return (kind == "executing" and data.get("node") is None) or kind in (
        "execution_success", "execution_error", "execution_interrupted")


def history_outputs(entry: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(node_id, file item) for every file named in a history entry's outputs, in node order."""
    for node_id, output in (entry.get("outputs") or {}).items():
        if not isinstance(output, dict):
            continue
        for value in output.values():
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, dict) and "filename" in item:
                        yield str(node_id), item


def history_error(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """('execution_error'|'execution_interrupted', data) from a failed history entry."""
    for msg in (entry.get("status") or {}).get("messages") or []:
        if isinstance(msg, list) and len(msg) == 2 and msg[0] in ("execution_error",
                                                                 "execution_interrupted"):
            return msg[0], msg[1] or {}
    return None
