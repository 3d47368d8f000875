"""Getting a shot's prompt onto a server exactly once: reattach to the prompt recorded for
the shot when the server still has it, or pick a server and submit under the shot's
deterministic prompt id (recorded in the checkpoint before it is sent, so a crash or a lost
answer leads to a look-up, never a blind resubmission).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from reelforge.errors import RetryableServiceError, ServiceError
from reelforge.plugins.comfy_render.answers import describe_node_errors, history_status
from reelforge.plugins.comfy_render.errors import (
    ComfyValidationError,
    OutputMissingError,
    PromptLost,
    ServerDown,
    ServersBusy,
)
from reelforge.plugins.comfy_render.events import EventStream
from reelforge.plugins.comfy_render.outputs import finish
from reelforge.plugins.comfy_render.pool import Ticket, normalise_url
from reelforge.plugins.comfy_render.prompts import PROMPT_NAMESPACE
from reelforge.plugins.comfy_render.watch import wait

if TYPE_CHECKING:
    from reelforge.plugins.comfy_render.attempts import ShotRun
    from reelforge.plugins.comfy_render.client import ComfyClient

log = logging.getLogger("reelforge.comfyui")


def submit_new(run: ShotRun) -> Path:
    """Pick a server and submit the shot under a prompt id not used before in this run."""
    backend, shot, job = run.backend, run.shot, run.job
    units = backend.prompts.units(shot)
    exclude = run.tried if len(run.tried) < len(backend.urls) else set()
    ticket = _pick(run, units, exclude)
    run.url = ticket.url
    run.heard(ticket.url)
    recorded = (job.checkpoint or {}).get("prompt_id")
    pid = backend.prompts.prompt_id_for(job, run.hop)
    while pid == recorded or pid in run.abandoned:
        run.hop += 1
        pid = backend.prompts.prompt_id_for(job, run.hop)
    run.hop += 1
    try:
        return submit_and_wait(run, backend.client(ticket.url), pid, ticket)
    finally:
        ticket.finish()


def _claim(run: ShotRun):
    """Holding a slot on a server, when the engine shares the servers between workers."""
    places = getattr(run.job, "places", None)
    if places is None:
        return None
    per_server = max(1, int(run.backend.options.per_server))
    return lambda url: places.hold(url, per_server)


def _pick(run: ShotRun, units: float, exclude: set[str]) -> Ticket:
    """The least busy server (with a free slot, when slots are shared); while other workers
    hold every slot, wait for one, up to server_grace_s."""
    backend, job = run.backend, run.job
    deadline = time.monotonic() + backend.options.server_grace_s
    while True:
        try:
            return backend.pool.pick(backend.client, key=backend.key, units=units,
                                     expected=backend.expected(run.shot, job, units), exclude=exclude,
                                     grace=backend.options.server_grace_s, claim=_claim(run))
        except ServersBusy:
            if job.cancelled.wait(0.05) or time.monotonic() > deadline:
                raise


def upload(client: ComfyClient, image: Path) -> str:
    data = image.read_bytes()
    # Named by content: re-uploading identical bytes is deduplicated by ComfyUI.
    name = f"rf_{hashlib.sha256(data).hexdigest()[:20]}{image.suffix.lower() or '.png'}"
    return client.upload_image(image, name=name, subfolder="reelforge")


def _references(backend: Any, job: Any) -> tuple:
    """The shot's references the template has slots for (none when it has no slots)."""
    return tuple(getattr(job, "references", ()))[:backend.template.reference_slots]


def submit_and_wait(run: ShotRun, client: ComfyClient, pid: str, ticket: Ticket) -> Path:
    backend, shot, job, image = run.backend, run.shot, run.job, run.image
    url = client.base_url
    client_id = uuid.uuid5(PROMPT_NAMESPACE, pid).hex
    stream = EventStream(url, client_id, headers=client.headers)
    try:
        backend.nodes.check(client)
        image_ref = upload(client, image) if image is not None else None
        refs = backend.references.ensure(client, _references(backend, job), job)
        workflow = backend.template.render(backend.prompts.values(shot, job, image_ref, refs))
        # events only reach a socket already open under our client_id: connect first
        stream.connect()
        job.save_checkpoint(prompt_id=pid, server=url, client_id=client_id,
                            fingerprint=backend.prompts.fingerprint(shot, job, image),
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
        run.heard(url)
        if node_errors:
            partial_acceptance(client, pid, node_errors, workflow, backend.template.output)
        job.progress(0.0, f"queued on {url}")
        entry = wait(run, client, pid, stream, ticket, total_nodes=len(workflow))
    finally:
        stream.close()
    return finish(run, entry, client, pid, ticket)


def partial_acceptance(client: ComfyClient, pid: str, node_errors: Mapping[str, Any],
                       workflow: Mapping[str, Any], needed: str | None) -> None:
    """200 with node_errors: the outputs named there will not run; the others will.
    ``needed`` is the template's output node (None: every output is)."""
    failed = set()
    for node_id, info in node_errors.items():
        outs = info.get("dependent_outputs") if isinstance(info, dict) else None
        failed.update(str(n)[:40] for n in (outs if isinstance(outs, list) and outs else [node_id]))
    lines = "; ".join(describe_node_errors(node_errors, workflow))
    if needed is None or needed in failed:
        client.cancel(pid)
        raise ComfyValidationError(
            f"ComfyUI at {client.base_url} refused output node(s) {', '.join(sorted(failed))} "
            f"of the workflow: {lines}", node_errors=node_errors, url=client.base_url)
    log.warning("ComfyUI at %s dropped output node(s) %s: %s", client.base_url,
                ", ".join(sorted(failed)), lines)


def reattach(run: ShotRun, cp: Mapping[str, Any]) -> Path | None:
    """A prompt was recorded for this shot: adopt its result, wait for it, or return None
    when it cannot be had (then the caller submits again). A configured server that does
    not answer raises, for the retry policy; a server no longer configured is given up."""
    backend, shot, job, image = run.backend, run.shot, run.job, run.image
    url, pid = normalise_url(str(cp["server"])), str(cp["prompt_id"])
    if cp.get("fingerprint") not in (None, backend.prompts.fingerprint(shot, job, image)):
        log.info("shot %s: template, options or still changed since prompt %s; submitting anew",
                 shot.id, pid)
        run.abandoned.add(pid)
        return None
    if url in run.tried:
        run.abandoned.add(pid)
        return None
    configured = url in backend.urls
    client = backend.client(url)
    run.url = url
    try:
        state, entry = client.locate(pid)
    except ServiceError as exc:
        if configured and isinstance(exc, RetryableServiceError):
            raise
        if isinstance(exc, ServerDown):
            backend.pool.mark_down(url, exc.reason, grace=backend.options.server_grace_s)
        log.info("shot %s: %s (not configured now) does not answer; its prompt %s is abandoned",
                 shot.id, url, pid)
        run.abandoned.add(pid)
        run.url = None
        return None
    run.heard(url)
    if state == "lost" and pid in run.finished:  # it ran; the server restarted since
        state, entry = "done", run.finished[pid]
    log.info("shot %s: prompt %s on %s is %s", shot.id, pid, url, state)
    units = backend.prompts.units(shot)
    ticket = backend.pool.track(url, key=backend.key, units=units, expected=backend.expected(shot, job, units),
                                running=state == "running")
    claim = _claim(run)
    if claim is not None and state in ("running", "pending"):
        # Our prompt is on that server already: hold its slot again (ours, if we held it
        # before a crash); if another render has it, wait on ours all the same.
        ticket._release = claim(url)
    try:
        if state in ("running", "pending"):
            stream = EventStream(url, str(cp.get("client_id") or uuid.uuid4().hex), headers=client.headers)
            stream.connect()  # same clientId: the server resumes sending us its events
            try:
                entry = wait(run, client, pid, stream, ticket, total_nodes=len(backend.template.workflow))
            except PromptLost:
                run.abandoned.add(pid)
                return None
            finally:
                stream.close()
        if entry is None:
            run.abandoned.add(pid)
            return None
        status = history_status(entry)
        if status != "success":
            log.info("shot %s: recorded prompt %s ended in %s; submitting again", shot.id, pid, status)
            run.abandoned.add(pid)
            return None
        try:
            return finish(run, entry, client, pid, ticket)
        except OutputMissingError as exc:
            log.warning("shot %s: %s; submitting again", shot.id, exc)
            run.abandoned.add(pid)
            return None
    finally:
        ticket.finish()
