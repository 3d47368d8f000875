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

The client's parts: transport.py (one HTTP request, its errors), events.py (the event
socket), answers.py (what the answers mean), watch.py (waiting for a prompt), outputs.py
(downloading an output under a safe name), errors.py (the errors of them all).
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from reelforge.errors import ServiceError
from reelforge.plugins.comfy_render import outputs, watch
from reelforge.plugins.comfy_render.answers import (
    JOB_DONE,
    JOB_PENDING,
    QueueState,
    describe_node_errors,
    entry_from_job,
    execution_seconds,
    history_error,
    history_outputs,
    history_status,
)
from reelforge.plugins.comfy_render.errors import (
    NO_SUCH_HOST,
    NOT_ANSWERING,
    REFUSED,
    Cancelled,
    ComfyError,
    ComfyValidationError,
    NotComfyUI,
    OutputMissingError,
    PromptExecutionError,
    PromptInterrupted,
    PromptLost,
    PromptTimeout,
    ServerDown,
    ServerGone,
    ServerUnavailable,
    UnsafeOutputError,
    advice_for,
)
from reelforge.plugins.comfy_render.events import EventStream
from reelforge.plugins.comfy_render.outputs import safe_output_name
from reelforge.plugins.comfy_render.transport import (
    TRANSIENT_STATUS,
    Limits,
    Timeouts,
    Transport,
    auth_headers,
    error_text,
)
from reelforge.redact import redact

#: What a prompt id the server hands back may look like (ComfyUI uses uuid4 strings).
_PROMPT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

#: The content type an upload is sent with, by extension.
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}

#: The defaults of a client made without them (`reelforge comfyui check`, tests).
_TIMEOUTS, _LIMITS = Timeouts(), Limits()


class ComfyClient:
    """One ComfyUI server. Thread-safe (httpx.Client is); one EventStream per waiting shot."""

    def __init__(self, base_url: str, *, timeouts: Timeouts = _TIMEOUTS, limits: Limits = _LIMITS,
                 headers: Mapping[str, str] | None = None, facts: Callable[[], dict] | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self.limits = limits
        self.headers = dict(headers or {})
        "Sent with every request and the websocket handshake (Authorization); never logged."
        self._api = Transport(self.base_url, timeouts=timeouts, limits=limits, headers=self.headers)
        own: dict = {}
        self._facts = facts or (lambda: own)
        "Where what was learnt of the server is kept: the pool's, for the run (ServerPool.facts)."
        self._lock = threading.Lock()

    def close(self) -> None:
        self._api.close()

    def __repr__(self) -> str:
        return f"ComfyClient({self.base_url!r})"

    # -- is it there, and is it ComfyUI? -----------------------------------------------

    def probe(self, *, timeout: float = 5.0) -> dict[str, Any]:
        """GET /system_stats: proves that a ComfyUI answers here and returns its ``system``
        object (``comfyui_version``, ...). Then looks whether it has the job API. Raises
        ServerDown, NotComfyUI (404, not JSON, another shape) or RetryableServiceError."""
        what = "GET /system_stats"
        data = self._api.json(self._api.get("/system_stats", request_timeout=timeout), what)
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
            resp = self._api.get("/api/jobs?status=in_progress&limit=1", request_timeout=timeout)
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
        data = self._api.json(self._api.get("/prompt"), "GET /prompt")
        info = data.get("exec_info")
        remaining = info.get("queue_remaining", 0) if isinstance(info, dict) else 0
        if isinstance(remaining, bool) or not isinstance(remaining, int) or remaining < 0:
            raise ComfyError(f"ComfyUI at {self.base_url} answered GET /prompt with queue_remaining "
                             f"{redact(repr(remaining)[:40])}, not a count", url=f"{self.base_url}/prompt")
        return remaining

    def queue(self) -> QueueState:
        data = self._api.json(self._api.get("/queue"), "GET /queue")
        ids = lambda items: [item[1] for item in (items if isinstance(items, list) else [])
                             if isinstance(item, list) and len(item) > 1 and isinstance(item[1], str)]
        return QueueState(ids(data.get("queue_running")), ids(data.get("queue_pending")))

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's history entry, or None ({}: unknown or not finished yet)."""
        data = self._api.json(self._api.get(f"/history/{prompt_id}"), "GET /history")
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
        resp = self._api.get(f"/api/jobs/{prompt_id}")
        if resp.status_code == 404:
            return None
        data = self._api.json(resp, what)
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
                data = self._api.json(self._api.get(f"/object_info/{cls}"), "GET /object_info")
                known = bool(isinstance(data, dict) and data.get(cls))
                with self._lock:
                    facts = self._facts()
                    facts["nodes"] = {**facts.get("nodes", {}), cls: known}
            if not known:
                missing.append(cls)
        return missing

    # -- submitting --------------------------------------------------------------------

    def upload_image(self, path: Path, *, name: str, subfolder: str = "", overwrite: bool = False) -> str:
        """Upload ``path`` as an input image; return the value for LoadImage's ``image``
        (``subfolder/name``, using the name the server chose). Without ``overwrite``, a file
        of that name with other bytes makes the server pick another name (``name (1).png``)."""
        data = {"type": "input", "subfolder": subfolder} if subfolder else {"type": "input"}
        if overwrite:
            data["overwrite"] = "true"
        kind = _IMAGE_TYPES.get(Path(name).suffix.lower(), "image/png")
        with open(path, "rb") as fh:
            resp = self._api.send("POST", "/upload/image", files={"image": (name, fh, kind)},
                              data=data)
        info = self._api.json(resp, "POST /upload/image")
        got, sub = info.get("name"), info.get("subfolder") or ""
        if not isinstance(got, str) or not got or not isinstance(sub, str):
            raise ComfyError(f"ComfyUI at {self.base_url} accepted an upload but named no file: "
                             f"{redact(str(info)[:300])}")
        return f"{sub}/{got}" if sub else got

    def input_digest(self, name: str, *, subfolder: str = "") -> str | None:
        """The sha256 of an input file the server has (GET /view?type=input), or None when it
        has none of that name (404)."""
        params = {"filename": name, "subfolder": subfolder, "type": "input"}
        resp = self._api.get("/view", params=params)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ComfyError(f"ComfyUI at {self.base_url} answered {resp.status_code} to GET /view of "
                             f"input {subfolder + '/' if subfolder else ''}{name}: {error_text(resp)}",
                             status_code=resp.status_code, url=f"{self.base_url}/view")
        return hashlib.sha256(resp.content).hexdigest()

    def submit(self, workflow: Mapping[str, Any], *, prompt_id: str, client_id: str
               ) -> tuple[str, dict[str, Any]]:
        """POST /prompt. Returns (the prompt_id the server uses, node_errors): node_errors is
        non-empty when some outputs were refused and the rest accepted. A 400 raises
        ComfyValidationError. Never retried here: the caller looks the prompt_id up before
        submitting again."""
        body = {"prompt": workflow, "client_id": client_id, "prompt_id": prompt_id}
        resp = self._api.send("POST", "/prompt", json=body)
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
        data = self._api.json(resp, "POST /prompt")
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
            self._api.send("POST", "/queue", json={"delete": [prompt_id]})
        except ServiceError:
            pass

    def cancel(self, prompt_id: str) -> None:
        """Remove the prompt from the queue if pending, interrupt it if running. Best effort."""
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self._api.send("POST", path, json=body)
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
        return watch.wait_for(self, prompt_id, stream=stream, cancelled=cancelled, on_event=on_event,
                              on_answer=on_answer, poll_interval=poll_interval, timeout=timeout)

    # -- results -----------------------------------------------------------------------

    def download(self, item: Mapping[str, Any], dest: Path) -> Path:
        """GET /view for one output entry ({filename, subfolder, type}) into ``dest`` (a file
        path the caller built from safe_output_name). Written atomically."""
        return outputs.download(self._api, item, dest)


__all__ = [  # the names other modules and the tests import from here
    "NOT_ANSWERING",
    "NO_SUCH_HOST",
    "REFUSED",
    "TRANSIENT_STATUS",
    "Cancelled",
    "ComfyClient",
    "ComfyError",
    "ComfyValidationError",
    "EventStream",
    "Limits",
    "NotComfyUI",
    "OutputMissingError",
    "PromptExecutionError",
    "PromptInterrupted",
    "PromptLost",
    "PromptTimeout",
    "QueueState",
    "ServerDown",
    "ServerGone",
    "ServerUnavailable",
    "Timeouts",
    "UnsafeOutputError",
    "advice_for",
    "auth_headers",
    "describe_node_errors",
    "entry_from_job",
    "error_text",
    "execution_seconds",
    "history_error",
    "history_outputs",
    "history_status",
    "safe_output_name",
]
