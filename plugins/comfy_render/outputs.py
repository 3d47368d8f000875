"""A finished prompt's outputs on disk: refuse a name that would leave its folder, download
each file from /view atomically and within the size limit, and pick the shot's result.

The server names its outputs; we only ever write a plain base name, prefixed by the node id,
into the shot's own folder, through O_EXCL | O_NOFOLLOW and a rename.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import httpx

from reelforge.engine.retry import parse_retry_after
from reelforge.errors import RetryableServiceError
from reelforge.http import BodyTooLarge, deadline
from reelforge.plugins.comfy_render.answers import execution_seconds, history_error, history_outputs, history_status
from reelforge.plugins.comfy_render.errors import (
    ComfyError,
    OutputMissingError,
    PromptExecutionError,
    PromptInterrupted,
    UnsafeOutputError,
    unreachable,
)
from reelforge.plugins.comfy_render.transport import TRANSIENT_STATUS
from reelforge.redact import redact

if TYPE_CHECKING:
    from reelforge.plugins.comfy_render.attempts import ShotRun
    from reelforge.plugins.comfy_render.client import ComfyClient
    from reelforge.plugins.comfy_render.pool import Ticket
    from reelforge.plugins.comfy_render.transport import Transport

log = logging.getLogger("reelforge.comfyui")

VIDEO_SUFFIXES = (".mp4", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


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


def download(api: Transport, item: Mapping[str, Any], dest: Path) -> Path:
    """GET /view for one output entry ({filename, subfolder, type}) into ``dest`` (a file
    path the caller built from safe_output_name). Written atomically."""
    filename, subfolder = item.get("filename"), item.get("subfolder") or ""
    safe_output_name(filename, subfolder)
    params = {"filename": filename, "subfolder": subfolder, "type": item.get("type") or "output"}
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    url = f"{api.base_url}/view"
    limit = api.limits.download
    shown = f"{subfolder + '/' if subfolder else ''}{filename}"
    time_left = None
    try:
        with deadline(api.timeouts.download) as time_left, \
                api.http.stream("GET", "/view", params=params) as resp:
            if resp.status_code == 404:
                raise OutputMissingError(f"ComfyUI at {api.base_url} no longer has output "
                                         f"{subfolder + '/' if subfolder else ''}{filename}",
                                         status_code=404, url=url)
            if resp.status_code in TRANSIENT_STATUS:
                raise RetryableServiceError(f"ComfyUI at {api.base_url} answered "
                                            f"{resp.status_code} to GET /view", url=url,
                                            status_code=resp.status_code,
                                            retry_after=parse_retry_after(resp.headers))
            if resp.status_code != 200:
                raise ComfyError(f"ComfyUI at {api.base_url} refused to serve output "
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
        raise ComfyError(f"ComfyUI at {api.base_url}: refusing output {shown!r}: {exc}; "
                         f"raise the max_download_mib option if such files are expected",
                         url=url) from exc
    except httpx.TimeoutException as exc:
        within = (f" within the {api.timeouts.download:g}s deadline"
                  if time_left is not None and time_left.expired else "")
        raise RetryableServiceError(f"ComfyUI at {api.base_url}: download of {shown!r} did not "
                                    f"finish{within} ({type(exc).__name__})", url=url) from exc
    except httpx.ConnectError as exc:
        raise unreachable(api.base_url, exc, url) from exc
    except httpx.TransportError as exc:
        raise RetryableServiceError(f"ComfyUI at {api.base_url}: download of {shown!r} "
                                    f"failed ({type(exc).__name__}: {redact(str(exc))})",
                                    url=url) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _short(value: Any, limit: int = 100) -> str:
    """A server-supplied value for a message: as text, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def safe_component(text: str) -> str:
    """Text made fit for a file name: runs of anything but letters, digits, _ . - become _."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "x"



def finish(run: ShotRun, entry: Mapping[str, Any], client: ComfyClient, pid: str, ticket: Ticket) -> Path:
    """The shot's result from its finished prompt's entry: every named file fetched, the one
    from the template's output node chosen, the checkpoint saved; a failed prompt raises."""
    backend, shot, job = run.backend, run.shot, run.job
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
        dest = (out_dir / f"{safe_component(node_id)[:40]}-{name}").resolve()
        n = 1
        while any(dest == p for _, p in files):  # same name from two subfolders
            dest = (out_dir / f"{safe_component(node_id)[:40]}-{n}-{name}").resolve()
            n += 1
        if dest.parent != root:
            refused.append(f"refusing output {name!r}: resolves outside {out_dir}")
            continue
        files.append((node_id, client.download(item, dest)))
    wanted = VIDEO_SUFFIXES if backend.kind == "video" else IMAGE_SUFFIXES
    # every named file is fetched; the result comes from the template's output node
    chosen = next((p for nid, p in files if p.suffix.lower() in wanted
                   and backend.template.output in (None, nid)), None)
    if chosen is None:
        got = ", ".join(p.name for _, p in files) or "no files"
        extra = f" ({'; '.join(refused)})" if refused else ""
        raise ComfyError(f"ComfyUI at {url} finished shot {shot.id} but produced {got}{extra}; "
                         f"the template must save a {'/'.join(wanted)} file", url=url)
    if backend.kind == "image" and chosen.suffix.lower() != ".png":
        chosen = to_png(chosen)
    seconds = round(time.monotonic() - run.started, 3)
    on_server = execution_seconds(entry)
    if on_server is None and ticket.running_since is not None:
        on_server = time.monotonic() - ticket.running_since
    extra = {"server_seconds": round(on_server, 3)} if on_server is not None else {}
    job.save_checkpoint(rendered_by=url, seconds=seconds, prompt_id=pid,
                        outputs=[p.name for _, p in files], **extra)
    if on_server is not None:
        backend.pool.record(backend.key, on_server, ticket.units, len(backend.template.workflow))
    job.progress(1.0, f"done on {url} in {seconds:.1f}s")
    return chosen


def to_png(path: Path) -> Path:
    from PIL import Image

    out = path.with_suffix(".png")
    with Image.open(path) as im:
        im.save(out, format="PNG")
    return out
