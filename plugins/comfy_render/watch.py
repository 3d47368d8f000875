"""Waiting for a prompt to finish, and telling the user how it goes.

wait_for is the client's loop: the event socket wakes it and drives progress, the server's
record (ComfyClient.locate) stays the source of truth and is polled. wait is one shot's
wait on top of it (timeout_s counted across attempts, a prompt that finished before a
restart, Ctrl-C); Progress turns the events into job.progress() calls.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

from reelforge.errors import ServiceError, StageError
from reelforge.plugins.comfy_render.errors import Cancelled, PromptLost, PromptTimeout
from reelforge.plugins.comfy_render.events import EventStream
from reelforge.protocols import ShotJob

if TYPE_CHECKING:
    from reelforge.plugins.comfy_render.attempts import ShotRun
    from reelforge.plugins.comfy_render.client import ComfyClient
    from reelforge.plugins.comfy_render.pool import Ticket

log = logging.getLogger("reelforge.comfyui")


def wait_for(client: ComfyClient, prompt_id: str, *, stream: EventStream | None, cancelled: threading.Event,
             on_event: Callable[[dict[str, Any]], None] = lambda m: None,
             on_answer: Callable[[], None] = lambda: None,
             poll_interval: float = 1.0, timeout: float = 3600.0) -> dict[str, Any]:
    """ComfyClient.wait: see there."""
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
                f"ComfyUI at {client.base_url}: prompt {prompt_id} not finished after {timeout:.0f}s",
                url=client.base_url)
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
                wake = is_finished_event(msg, prompt_id)
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
        state, entry = client.locate(prompt_id)
        on_answer()
        if entry is not None:
            return entry
        if state == "lost":
            raise PromptLost(prompt_id)
        fast = wake or stream is None or not stream.alive
        next_poll = time.monotonic() + (poll_interval if fast else safety_poll)


def is_finished_event(msg: Mapping[str, Any], prompt_id: str) -> bool:
    data = msg.get("data") or {}
    if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
        return False
    kind = msg.get("type")
    # executing{node: null} comes after the history entry is written; the others just before
    return (kind == "executing" and data.get("node") is None) or kind in (
        "execution_success", "execution_error", "execution_interrupted")


def wait(run: ShotRun, client: ComfyClient, pid: str, stream: EventStream | None, ticket: Ticket,
         total_nodes: int) -> dict[str, Any]:
    """One shot's wait for its prompt ``pid``: the finished entry, or the error that says
    what to do (a timeout, a prompt lost, Ctrl-C)."""
    backend, job = run.backend, run.job
    o = backend.options
    tracker = Progress(pid, total_nodes, job, on_start=ticket.started,
                       on_success=lambda entry: run.finished.setdefault(pid, entry))
    begun = run.wait_started.setdefault(pid, time.monotonic())
    try:
        return client.wait(pid, stream=stream, cancelled=job.cancelled, on_event=tracker,
                           on_answer=lambda: run.heard(client.base_url),
                           poll_interval=o.poll_interval_s,
                           timeout=max(0.0, o.timeout_s - (time.monotonic() - begun)))
    except PromptLost:
        if pid in run.finished:  # it ran; the server restarted before we read its history
            log.info("shot %s: %s restarted after prompt %s finished; fetching its files",
                     job.shot.id, client.base_url, pid)
            return run.finished[pid]
        raise
    except PromptTimeout as exc:
        raise PromptTimeout(
            f"ComfyUI at {client.base_url}: shot {job.shot.id}'s prompt {pid} did not finish "
            f"within timeout_s={o.timeout_s:g}; it is still on the server. Raise the limit "
            f"(-o {backend.kind}.timeout_s=SECONDS) and `reelforge resume {job.session_id}` picks "
            f"the render up: the prompt is reattached, not submitted again",
            url=client.base_url) from exc
    except Cancelled:
        cancel_remote(client, pid, o.on_interrupt)
        raise StageError(f"shot {job.shot.id}: cancelled while ComfyUI at {client.base_url} "
                         f"was working on prompt {pid}") from None


def cancel_remote(client: ComfyClient, pid: str, mode: str) -> None:
    """Ctrl-C: a render already running is worth keeping for `reelforge resume` unless
    on_interrupt=all; a prompt still waiting in the queue is deleted unless 'none'."""
    if mode == "all":
        client.cancel(pid)
    elif mode == "pending":
        try:
            state, _ = client.locate(pid)
        except ServiceError:
            return
        if state == "pending":
            client.delete_queued(pid)


class Progress:
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
