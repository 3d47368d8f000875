"""A small synchronous ComfyUI client: httpx for HTTP, websockets' sync client for events.

Follows what a ComfyUI 0.3.64 server was recorded doing (shared/comfyui-transcripts): a
client-chosen prompt_id, /history as the source of truth ({} until a prompt is done), events
only for the submitting client_id, no replay after a websocket reconnect. On servers with
the job API (``GET /api/jobs/{id}``, ComfyUI since late 2025) one call tells where a prompt
is, with its outputs and execution times; see docs/comfyui.md for the fields relied on.

The client makes each call once: retrying is the backend's (one policy with a deadline,
reelforge.engine.retry.deadline_retrying). Its errors say what happened: ServerDown (no answer at
all), RetryableServiceError (a transient status, a timeout), NotComfyUI (something answers,
but not ComfyUI's API: permanent), ComfyError (a refusal or failure for good).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import attrs
import httpx

from reelforge.errors import RetryableServiceError, ServiceError
from reelforge.http import MIB, BodyTooLarge, bounded_client, deadline, fetch
from reelforge.redact import redact
from reelforge.engine.retry import parse_retry_after

#: What a prompt id the server hands back may look like (ComfyUI uses uuid4 strings).
_PROMPT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

#: HTTP statuses worth another try: the server is busy, restarting or overloaded.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class ComfyError(ServiceError):
    """ComfyUI refused or failed a prompt for good; retrying the same prompt will not help."""


class NotComfyUI(ComfyError):
    """Something answers at the URL, but not ComfyUI's API: a 404 (a path prefix, another
    service), a page that is not JSON, or JSON of another shape. Permanent."""


class ServerDown(RetryableServiceError):
    """No answer at all: the connection was refused or could not be made in time, the host
    name does not resolve, or the server took the connection and then sent nothing (hung).
    The server is marked down at once. ``reason`` is the short why ("refused the
    connection", "not answering"): a hung server is running, a refusing one is not, and
    what the user should do differs."""

    def __init__(self, message: str, *, reason: str, **kw: Any):
        super().__init__(message, **kw)
        self.reason = reason

    @property
    def advice(self) -> str:
        """What to do about it, for the end of a message."""
        return advice_for(self.reason)


#: ServerDown reasons.
REFUSED, NOT_ANSWERING, NO_SUCH_HOST = "refused the connection", "not answering", "the host name does not resolve"


def advice_for(reason: str) -> str:
    """What to do about a server that is down for ``reason``."""
    if reason == NOT_ANSWERING:
        return ("It takes connections but does not reply (hung, or stuck loading): restart "
                "ComfyUI there")
    if reason == NO_SUCH_HOST:
        return "Check the host name in --comfy-url"
    return "Start ComfyUI there (or pass the right --comfy-url)"


class ServerGone(ServiceError):
    """No server answered a shot within its deadline (server_grace_s). Not retried by the
    runner: the backend's own retries already spent that time; resume once a server is up."""


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


class PromptTimeout(RetryableServiceError):
    """The prompt did not finish within timeout_s; the runner's retry looks it up again."""


class PromptLost(Exception):
    """The server knows nothing of the prompt: neither in /queue nor in /history (it restarted,
    or the prompt was deleted). The caller may submit again."""


class ServerUnavailable(RetryableServiceError):
    """No configured server is up right now (every one is marked down)."""


class Cancelled(Exception):
    """The user cancelled (Ctrl-C) while we waited."""


@attrs.frozen
class Timeouts:
    connect: float = 5.0
    "Seconds to open a TCP connection."
    read: float = 60.0
    "Seconds one network read may wait (uploads and downloads of big files included)."
    request: float = 60.0
    "Overall deadline of one API call (/prompt, /queue, /history, an upload), body included."
    download: float = 600.0
    "Overall deadline of one /view download."


@attrs.frozen
class Limits:
    answer: int = 16 * MIB
    "Largest JSON answer read (/history, /queue, /prompt, /object_info/CLASS)."
    download: int = 256 * MIB
    "Largest output file downloaded from /view."


#: Largest websocket frame accepted. ComfyUI's events are a few KB and its binary previews
#: (latent previews, at most 512 px by default) well under 1 MB.
WS_MAX_FRAME = 16 * MIB
#: Frames buffered while we are busy elsewhere (a /history poll): bounds memory to
#: WS_MAX_FRAME times this against a server that floods the socket.
WS_MAX_QUEUE = 4


#: The websocket library's own log: a socket we shut down while its reader thread is in a
#: read logs "unexpected internal error" with a traceback. Every socket failure already
#: means "poll instead", so its messages are kept out of the user's terminal.
_WS_LOG = logging.getLogger("reelforge.comfyui.websocket")
_WS_LOG.setLevel(logging.CRITICAL)
_WS_LOG.propagate = False


def auth_headers(env: str = "REELFORGE_COMFY_AUTH") -> dict[str, str]:
    """The Authorization header from ``$REELFORGE_COMFY_AUTH``: ``user:password`` is sent as
    HTTP Basic, anything else as a Bearer token. Every form a server could echo is registered
    as a secret, so it is masked wherever reelforge prints or writes text."""
    import base64

    from reelforge.redact import register_secret

    raw = os.environ.get(env, "").strip()
    if not raw:
        return {}
    register_secret(raw)
    if ":" in raw:
        user, _, password = raw.partition(":")
        register_secret(password)
        token = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        register_secret(token)
        return {"Authorization": f"Basic {token}"}
    return {"Authorization": f"Bearer {raw}"}


def error_text(resp: httpx.Response) -> str:
    """The start of an error answer's body, secrets masked (a server may echo a token)."""
    text = resp.text.strip()
    return redact(text[:300]) if text else f"HTTP {resp.status_code} with an empty body"


def describe_node_errors(node_errors: Mapping[str, Any], workflow: Mapping[str, Any] | None = None
                         ) -> list[str]:
    """One line per failing input: ``node 1 (EmptyImage) input 'width': Required input is missing``."""
    lines = []
    for node_id, info in (node_errors if isinstance(node_errors, Mapping) else {}).items():
        info = info if isinstance(info, dict) else {}
        node = (workflow or {}).get(node_id)
        cls = info.get("class_type") or (node.get("class_type") if isinstance(node, dict) else None) or "?"
        errors = info.get("errors")
        for err in (errors if isinstance(errors, list) and errors else [{}]):
            err = err if isinstance(err, dict) else {"message": str(err)}
            extra = err.get("extra_info") if isinstance(err.get("extra_info"), dict) else {}
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
        raise UnsafeOutputError(redact(f"output name {repr(filename)[:100]} / subfolder "
                                       f"{repr(subfolder)[:100]} is not a string"))
    # a plain, printable base name that fits in a file name (255 bytes with our prefix)
    bad = (not filename or filename in (".", "..") or any(c in filename for c in "/\\:")
           or any(ord(c) < 32 or ord(c) == 127 for c in filename)
           or filename != filename.strip() or len(filename.encode("utf-8", "replace")) > 200)
    if bad:
        raise UnsafeOutputError(redact(f"refusing output file name {repr(filename)[:200]}: it is not "
                                       f"a plain file name"))
    parts = (subfolder or "").replace("\\", "/").split("/")
    if (subfolder or "").startswith(("/", "\\")) or ".." in parts or ":" in (subfolder or "") \
            or any(ord(c) < 32 for c in subfolder or "") or len(subfolder or "") > 1000:
        raise UnsafeOutputError(redact(f"refusing output subfolder {repr(subfolder)[:200]}: it escapes "
                                       f"the output folder"))
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

    def __init__(self, base_url: str, client_id: str, *, open_timeout: float = 5.0,
                 headers: Mapping[str, str] | None = None, max_frame: int = WS_MAX_FRAME):
        scheme = "wss" if base_url.startswith("https") else "ws"
        host = base_url.split("://", 1)[-1].rstrip("/")
        self.url = f"{scheme}://{host}/ws?clientId={client_id}"
        self.open_timeout = open_timeout
        self.headers = dict(headers or {})
        self.max_frame = max_frame
        self._ws = None

    @property
    def alive(self) -> bool:
        return self._ws is not None

    def connect(self) -> bool:
        from websockets.sync.client import connect

        # A frame over max_size closes the socket (1009) and we poll /history instead. A full
        # queue pauses reading (the server waits); close() then gives up after close_timeout.
        kw = dict(open_timeout=self.open_timeout, max_size=self.max_frame, max_queue=WS_MAX_QUEUE,
                  close_timeout=1, additional_headers=self.headers or None, logger=_WS_LOG)
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
            except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
                continue
            if isinstance(msg, dict) and isinstance(msg.get("type"), str):
                return msg

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is None:
            return
        # With a full frame queue the reader is paused and a polite close() would wait
        # close_timeout for a close frame it cannot read: end the connection at once instead.
        try:
            ws.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        try:
            ws.close()
        except Exception:
            pass


class ComfyClient:
    """One ComfyUI server. Thread-safe (httpx.Client is); one EventStream per waiting shot."""

    def __init__(self, base_url: str, *, timeouts: Timeouts = Timeouts(), limits: Limits = Limits(),
                 headers: Mapping[str, str] | None = None, facts: Callable[[], dict] | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self.limits = limits
        self.headers = dict(headers or {})
        "Sent with every request and the websocket handshake (Authorization); never logged."
        self._http = bounded_client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
            headers=self.headers,
        )  # HTTP(S)_PROXY and NO_PROXY apply, as for any HTTP client
        own: dict = {}
        self._facts = facts or (lambda: own)
        "Where what was learnt of the server is kept: the pool's, for the run (ServerPool.facts)."
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"ComfyClient({self.base_url!r})"

    # -- plumbing ----------------------------------------------------------------------

    def _send(self, method: str, path: str, *, request_timeout: float | None = None,
              **kw: Any) -> httpx.Response:
        """One request, made once. Raises ServerDown when nothing answers at all,
        RetryableServiceError on a timeout, a broken connection or a transient status."""
        url = f"{self.base_url}{path}"
        if "files" not in kw:  # small JSON calls: a hung server must not hold us for long
            kw.setdefault("timeout", httpx.Timeout(min(self.timeouts.read, 15.0),
                                                   connect=self.timeouts.connect))
        limit = request_timeout if request_timeout is not None else self.timeouts.request
        heard: list[bool] = []  # the status line and headers came: the server is answering
        started = time.monotonic()
        try:
            with deadline(limit) as time_left:
                resp = fetch(self._http, method, path, limit=self.limits.answer,
                             on_headers=lambda: heard.append(True), **kw)
        except BodyTooLarge as exc:
            raise ComfyError(f"ComfyUI at {self.base_url}: refusing the answer to {method} {path}: "
                             f"{exc}", url=url) from exc
        except httpx.ConnectTimeout as exc:
            raise ServerDown(f"ComfyUI at {self.base_url} is not answering (no connection within "
                             f"{time.monotonic() - started:.0f}s)", reason=NOT_ANSWERING, url=url) from exc
        except httpx.TimeoutException as exc:
            if not heard and not isinstance(exc, httpx.WriteTimeout):
                # it took the connection and then said nothing at all: hung, as good as down
                raise ServerDown(f"ComfyUI at {self.base_url} is not answering (it took the "
                                 f"connection, then sent nothing for {time.monotonic() - started:.0f}s)",
                                 reason=NOT_ANSWERING, url=url) from exc
            within = (f" within the {limit:g}s deadline" if time_left.expired else "")
            raise RetryableServiceError(f"ComfyUI at {self.base_url} timed out on {method} {path}"
                                        f"{within}", url=url) from exc
        except httpx.ConnectError as exc:  # refused, no route, DNS
            raise _unreachable(self.base_url, exc, url) from exc
        except httpx.TransportError as exc:  # reset, protocol errors
            raise RetryableServiceError(f"ComfyUI at {self.base_url}: the connection broke on "
                                        f"{method} {path} ({type(exc).__name__}: {redact(str(exc))})",
                                        url=url) from exc
        if resp.status_code in TRANSIENT_STATUS:
            raise RetryableServiceError(
                f"ComfyUI at {self.base_url} answered {resp.status_code} to {method} {path}: "
                f"{error_text(resp)}", status_code=resp.status_code, url=url,
                retry_after=parse_retry_after(resp.headers))
        return resp

    def _get(self, path: str, **kw: Any) -> httpx.Response:
        return self._send("GET", path, **kw)

    def _json(self, resp: httpx.Response, what: str) -> Any:
        if resp.status_code == 404:
            raise NotComfyUI(f"ComfyUI at {self.base_url} answered 404 to {what}: there is no ComfyUI "
                             f"API at this URL (a path prefix, or another service?)",
                             status_code=404, url=str(resp.url))
        if resp.status_code in (401, 403):
            raise ComfyError(f"ComfyUI at {self.base_url} answered {resp.status_code} to {what}: "
                             f"{error_text(resp)}; a server behind an authenticating proxy needs "
                             f"REELFORGE_COMFY_AUTH (user:password or a token)",
                             status_code=resp.status_code, url=str(resp.url))
        if resp.status_code != 200:
            raise ComfyError(f"ComfyUI at {self.base_url} answered {resp.status_code} to {what}: "
                             f"{error_text(resp)}", status_code=resp.status_code, url=str(resp.url))
        try:
            data = resp.json()
        except ValueError as exc:
            kind = resp.headers.get("content-type", "").split(";")[0] or "no content type"
            raise NotComfyUI(f"ComfyUI at {self.base_url} answered {what} with something that is not "
                             f"JSON ({kind}: {error_text(resp)[:80]!r}); is this a ComfyUI server?",
                             url=str(resp.url)) from exc
        except RecursionError:
            raise ComfyError(f"ComfyUI at {self.base_url} answered {what} with JSON nested too "
                             f"deeply to read", url=str(resp.url)) from None
        if not isinstance(data, dict):
            raise ComfyError(f"ComfyUI at {self.base_url} answered {what} with a JSON "
                             f"{type(data).__name__}, not an object", url=str(resp.url))
        return data

    # -- is it there, and is it ComfyUI? -----------------------------------------------

    def probe(self, *, timeout: float = 5.0) -> dict[str, Any]:
        """GET /system_stats: proves that a ComfyUI answers here and returns its ``system``
        object (``comfyui_version``, ...). Then looks whether it has the job API. Raises
        ServerDown, NotComfyUI (404, not JSON, another shape) or RetryableServiceError."""
        what = "GET /system_stats"
        data = self._json(self._get("/system_stats", request_timeout=timeout), what)
        system = data.get("system")
        if not isinstance(system, dict) or not isinstance(data.get("devices", []), list):
            raise NotComfyUI(f"ComfyUI at {self.base_url} answered {what} with JSON that is not "
                             f"ComfyUI's (no 'system' object): {redact(str(data)[:120])}; is this a "
                             f"ComfyUI server?", url=f"{self.base_url}/system_stats")
        self.has_jobs_api(timeout=timeout)
        return system

    @property
    def jobs_api(self) -> bool | None:
        """Whether the server has the job API (GET /api/jobs/{id}); None until looked at."""
        return self._facts().get("jobs_api")

    @jobs_api.setter
    def jobs_api(self, value: bool | None) -> None:
        self._facts()["jobs_api"] = value

    def has_jobs_api(self, *, timeout: float | None = None) -> bool:
        """Whether the server has the job API, looked at once a run (``GET /api/jobs`` with a
        status filter that leaves history out, so it costs the server little): 200 with a
        ``jobs`` list means yes; 404 or anything else means no (older servers)."""
        if self.jobs_api is not None:
            return self.jobs_api
        try:
            resp = self._get("/api/jobs?status=in_progress&limit=1", request_timeout=timeout)
            data = resp.json() if resp.status_code == 200 else None
        except (ValueError, RecursionError):
            data = None
        found = isinstance(data, dict) and isinstance(data.get("jobs"), list)
        self.jobs_api = found
        return found

    def checked(self, *, timeout: float = 5.0) -> dict[str, Any]:
        """The server's ``system`` object, probed once a run (see probe): the pre-flight
        checks of a run's backends, and the shots after them, share one answer."""
        facts = self._facts()
        if "system" not in facts:
            system = self.probe(timeout=timeout)
            self._facts()["system"] = system
            return system
        return facts["system"]

    # -- load and state ----------------------------------------------------------------

    def queue_remaining(self) -> int:
        """Running + pending prompts (GET /prompt)."""
        data = self._json(self._get("/prompt"), "GET /prompt")
        info = data.get("exec_info")
        remaining = info.get("queue_remaining", 0) if isinstance(info, dict) else 0
        if isinstance(remaining, bool) or not isinstance(remaining, int) or remaining < 0:
            raise ComfyError(f"ComfyUI at {self.base_url} answered GET /prompt with queue_remaining "
                             f"{redact(repr(remaining)[:40])}, not a count", url=f"{self.base_url}/prompt")
        return remaining

    def queue(self) -> QueueState:
        data = self._json(self._get("/queue"), "GET /queue")
        ids = lambda items: [item[1] for item in (items if isinstance(items, list) else [])
                             if isinstance(item, list) and len(item) > 1 and isinstance(item[1], str)]
        return QueueState(ids(data.get("queue_running")), ids(data.get("queue_pending")))

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's history entry, or None ({}: unknown or not finished yet)."""
        data = self._json(self._get(f"/history/{prompt_id}"), "GET /history")
        entry = data.get(prompt_id)
        if entry is not None and not isinstance(entry, dict):
            raise ComfyError(f"ComfyUI at {self.base_url} answered GET /history with a "
                             f"{type(entry).__name__} for prompt {prompt_id}, not an object",
                             url=f"{self.base_url}/history/{prompt_id}")
        return entry or None

    def job(self, prompt_id: str) -> dict[str, Any] | None:
        """GET /api/jobs/{id} (servers with the job API): the job, or None when the server
        does not know it (404)."""
        what = "GET /api/jobs/{id}"
        resp = self._get(f"/api/jobs/{prompt_id}")
        if resp.status_code == 404:
            return None
        data = self._json(resp, what)
        status = data.get("status")
        if not isinstance(status, str) or data.get("id") not in (None, prompt_id):
            raise ComfyError(f"ComfyUI at {self.base_url} answered {what} for prompt {prompt_id} "
                             f"with no job status: {redact(str(data)[:120])}",
                             url=f"{self.base_url}/api/jobs/{prompt_id}")
        return data

    def missing_node_classes(self, class_types: Iterable[str]) -> list[str]:
        """Which of these node classes the server does not have. Asks /object_info/{class}
        per class (an unknown class answers {}): the full /object_info can be megabytes."""
        missing = []
        for cls in sorted(set(class_types)):
            with self._lock:
                known = self._facts().get("nodes", {}).get(cls)
            if known is None:
                data = self._json(self._get(f"/object_info/{cls}"), "GET /object_info")
                known = bool(isinstance(data, dict) and data.get(cls))
                with self._lock:
                    facts = self._facts()
                    facts["nodes"] = {**facts.get("nodes", {}), cls: known}
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
        if not isinstance(got, str) or not got or not isinstance(sub, str):
            raise ComfyError(f"ComfyUI at {self.base_url} accepted an upload but named no file: "
                             f"{redact(str(info)[:300])}")
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
            except (ValueError, RecursionError):
                data = {}
            data = data if isinstance(data, dict) else {}
            err = data.get("error") if isinstance(data.get("error"), dict) else {}
            node_errors = data.get("node_errors") if isinstance(data.get("node_errors"), dict) else {}
            lines = describe_node_errors(node_errors, workflow)
            head = str(err.get("message") or error_text(resp))[:300]
            if err.get("details") and not lines:
                head += f": {str(err['details'])[:300]}"
            raise ComfyValidationError(redact(
                f"ComfyUI at {self.base_url} refused the workflow: {head}"
                + (": " + "; ".join(lines)[:2000] if lines else "")),
                node_errors=node_errors, status_code=400, url=f"{self.base_url}/prompt")
        data = self._json(resp, "POST /prompt")
        node_errors = data.get("node_errors")
        queued_as = data.get("prompt_id")
        if queued_as is None or queued_as == "":
            queued_as = prompt_id
        if not isinstance(queued_as, str) or not _PROMPT_ID.fullmatch(queued_as):
            # it is recorded in the session and put in URLs: only an id-like string will do
            raise ComfyError(f"ComfyUI at {self.base_url} queued the prompt under an unusable id "
                             f"{redact(repr(queued_as)[:60])}", url=f"{self.base_url}/prompt")
        return queued_as, node_errors if isinstance(node_errors, dict) else {}

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

        With the job API, one GET /api/jobs/{id} (the server reads its queue and history
        together). Otherwise /queue is read before /history so a prompt finishing in between
        is not taken for lost. ``entry`` is shaped as a /history entry either way."""
        if self.has_jobs_api():
            job = self.job(prompt_id)
            if job is None:
                return "lost", None
            status = job["status"]
            if status in JOB_PENDING:
                return "pending", None
            if status not in JOB_DONE:  # in_progress, or a state newer than this client
                return "running", None
            entry = entry_from_job(job)
            if "outputs" not in job:  # a server that leaves them out: /history has them
                entry = {**(self.history(prompt_id) or {}), **{k: v for k, v in entry.items()
                                                               if k != "outputs"}}
            return "done", entry
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
             on_answer: Callable[[], None] = lambda: None,
             poll_interval: float = 1.0, timeout: float = 3600.0) -> dict[str, Any]:
        """Wait until the prompt is done and return its (history-shaped) entry.

        Events from ``stream`` drive progress and wake us on completion; the server's record
        (locate) stays the source of truth and is polled (often when the socket is down,
        rarely when it is up); ``on_answer()`` is called after each answer. Raises PromptLost,
        Cancelled, RetryableServiceError on timeout, or the first error of a poll (ServerDown,
        RetryableServiceError, ...): the caller's retry policy decides what comes next."""
        deadline = time.monotonic() + timeout
        safety_poll = max(poll_interval * 10, 5.0)
        next_poll = 0.0  # check at once: a reattached prompt may be done already
        reconnect_at = 0.0
        while True:
            if cancelled.is_set():
                raise Cancelled()
            now = time.monotonic()
            if now > deadline:
                raise PromptTimeout(
                    f"ComfyUI at {self.base_url}: prompt {prompt_id} not finished after {timeout:.0f}s",
                    url=self.base_url)
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
            state, entry = self.locate(prompt_id)
            on_answer()
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
        limit = self.limits.download
        shown = f"{subfolder + '/' if subfolder else ''}{filename}"
        time_left = None
        try:
            with deadline(self.timeouts.download) as time_left, \
                    self._http.stream("GET", "/view", params=params) as resp:
                if resp.status_code == 404:
                    raise OutputMissingError(f"ComfyUI at {self.base_url} no longer has output "
                                             f"{subfolder + '/' if subfolder else ''}{filename}",
                                             status_code=404, url=url)
                if resp.status_code in TRANSIENT_STATUS:
                    raise RetryableServiceError(f"ComfyUI at {self.base_url} answered "
                                                f"{resp.status_code} to GET /view", url=url,
                                                status_code=resp.status_code,
                                                retry_after=parse_retry_after(resp.headers))
                if resp.status_code != 200:
                    raise ComfyError(f"ComfyUI at {self.base_url} refused to serve output "
                                     f"{filename!r} (subfolder {subfolder!r}): HTTP {resp.status_code}",
                                     status_code=resp.status_code, url=url)
                announced = resp.headers.get("content-length", "")
                if announced.isdigit() and int(announced) > limit \
                        and "content-encoding" not in resp.headers:
                    raise BodyTooLarge(limit, int(announced), announced=True)
                # O_EXCL | O_NOFOLLOW: never write through a link planted under our name
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                             0o644)
                with open(fd, "wb") as fh:
                    written = 0
                    for chunk in resp.iter_bytes(1 << 16):
                        written += len(chunk)
                        if written > limit:  # checked while streaming: nothing more is read
                            raise BodyTooLarge(limit, written)
                        fh.write(chunk)
            os.replace(tmp, dest)
        except BodyTooLarge as exc:
            raise ComfyError(f"ComfyUI at {self.base_url}: refusing output {shown!r}: {exc}; "
                             f"raise the max_download_mib option if such files are expected",
                             url=url) from exc
        except httpx.TimeoutException as exc:
            within = (f" within the {self.timeouts.download:g}s deadline"
                      if time_left is not None and time_left.expired else "")
            raise RetryableServiceError(f"ComfyUI at {self.base_url}: download of {shown!r} did not "
                                        f"finish{within} ({type(exc).__name__})", url=url) from exc
        except httpx.ConnectError as exc:
            raise _unreachable(self.base_url, exc, url) from exc
        except httpx.TransportError as exc:
            raise RetryableServiceError(f"ComfyUI at {self.base_url}: download of {shown!r} "
                                        f"failed ({type(exc).__name__}: {redact(str(exc))})",
                                        url=url) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return dest


#: Job API statuses (comfy_execution/jobs.py): waiting, and finished one way or another.
JOB_PENDING = frozenset({"pending"})
JOB_DONE = frozenset({"completed", "failed", "cancelled"})


def _unreachable(base_url: str, exc: Exception, url: str) -> ServerDown:
    """The ServerDown for a connection that could not be made: refused, unknown host, other."""
    text = str(exc).lower()
    if "refused" in text:
        return ServerDown(f"ComfyUI at {base_url} refused the connection", reason=REFUSED, url=url)
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return ServerDown(f"ComfyUI at {base_url} cannot be reached (the host name does not resolve)",
                          reason=NO_SUCH_HOST, url=url)
    detail = redact(str(exc)[:200]) or type(exc).__name__
    return ServerDown(f"ComfyUI at {base_url} cannot be reached ({detail})", reason=REFUSED, url=url)


def entry_from_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A finished job of the job API, shaped as a /history entry ({outputs, status}), with
    ``execution_seconds`` from its execution_start_time and execution_end_time (ms)."""
    status = job.get("execution_status")
    if not isinstance(status, dict):
        failed = job.get("status") in ("failed", "cancelled")
        error = job.get("execution_error")
        status = {"status_str": "error" if failed else "success",
                  "messages": [["execution_error", error]] if isinstance(error, dict) else []}
    outputs = job.get("outputs")
    entry: dict[str, Any] = {"outputs": outputs if isinstance(outputs, dict) else {}, "status": status}
    start, end = job.get("execution_start_time"), job.get("execution_end_time")
    if _is_number(start) and _is_number(end) and end >= start:
        entry["execution_seconds"] = (end - start) / 1000.0
    return entry


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) < 1e15


def execution_seconds(entry: Mapping[str, Any]) -> float | None:
    """How long the server spent executing a finished prompt: the job API's times, else the
    timestamps (ms) of execution_start and the message that ended it in the history entry."""
    value = entry.get("execution_seconds")
    if _is_number(value) and value >= 0:
        return float(value)
    status = entry.get("status")
    messages = status.get("messages") if isinstance(status, dict) else None
    start = end = None
    for msg in messages if isinstance(messages, list) else []:
        if not (isinstance(msg, list) and len(msg) == 2 and isinstance(msg[1], dict)):
            continue
        stamp = msg[1].get("timestamp")
        if not _is_number(stamp):
            continue
        if msg[0] == "execution_start":
            start = stamp
        elif msg[0] in ("execution_success", "execution_error", "execution_interrupted"):
            end = stamp
    if start is None or end is None or end < start:
        return None
    return (end - start) / 1000.0


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
    outputs = entry.get("outputs")
    for node_id, output in (outputs if isinstance(outputs, dict) else {}).items():
        if not isinstance(output, dict):
            continue
        for value in output.values():
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, dict) and "filename" in item:
                        yield str(node_id), item


def history_error(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """('execution_error'|'execution_interrupted', data) from a failed history entry."""
    status = entry.get("status")
    messages = status.get("messages") if isinstance(status, dict) else None
    for msg in messages if isinstance(messages, list) else []:
        if isinstance(msg, list) and len(msg) == 2 and msg[0] in ("execution_error",
                                                                 "execution_interrupted"):
            return msg[0], msg[1] if isinstance(msg[1], dict) else {}
    return None


def history_status(entry: Mapping[str, Any]) -> str | None:
    """The entry's status_str ('success', 'error'), or 'success' for servers older than the
    history status when the entry has outputs; None when there is no usable status."""
    status = entry.get("status")
    value = status.get("status_str") if isinstance(status, dict) else None
    if isinstance(value, str) and value:
        return value
    return "success" if entry.get("outputs") else None
