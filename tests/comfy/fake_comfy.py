"""A fake ComfyUI server for tests: aiohttp (as the real one), HTTP and /ws on one port on
127.0.0.1, in a background thread. It follows shared/comfyui-transcripts (ComfyUI 0.3.64):
event order, {} history until done, 400 bodies, partial acceptance, execution_error,
queue shapes, upload renaming, /view checks, and a restart that forgets history.

It does not run models: "executing" a node sleeps ``node_latency`` seconds; save nodes
write small real PNG/MP4/WebM files.

Where it differs from the recorded server (on purpose or for brevity):
- no node cache: a resubmitted prompt runs again and writes new files (execution_cached is
  always empty);
- validation covers unknown/missing class_type, no outputs, missing required inputs, links
  to missing nodes, INT/FLOAT type and min/max, classic combos and LoadImage's file check;
  not link type mismatches or output indexes;
- execution errors are injected (``fail_nodes``) besides SaveVideo's format check; no
  "progress" events; a binary preview frame and an unknown event type are sent per node
  (``noise``) so clients prove they ignore them;
- clips are one fixed 64x64 file whatever the frame count; /view ignores ``preview``;
- a restart is instant (or ``downtime`` seconds) and closes the port before forgetting;
- ``prompt_faults`` and ``ignore_client_prompt_id`` simulate failures not in the
  transcripts (a 500 after queueing; an old server choosing its own prompt ids);
- ``jobs_api`` switches on the job API of servers since late 2025 (``GET /api/jobs`` and
  ``GET /api/jobs/{id}``, shaped as comfy_execution/jobs.py builds them: status pending,
  in_progress, completed or failed; outputs and execution_status of finished jobs; times in
  milliseconds); off, those paths answer 404 as on 0.3.64 (the recorded version);
- ``class_latency`` gives some node classes their own execution time (a video node far slower
  than an image one, as on a real GPU);
- ``hold(class_type)`` makes nodes of that class wait, once reached, until the test sets the
  returned event (or the prompt is interrupted): a test that needs a prompt to be running, or
  another to be pending, at some moment holds it there instead of hoping a latency outlasts
  its own requests on a loaded machine;
- ``hostile`` switches answers a hostile or broken server might send (floods, trickles,
  absurd nesting, wrong shapes, a giant websocket frame, the Authorization header echoed
  in an error page), and ``require_auth`` makes it sit behind an authenticating proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from aiohttp import WSMsgType, web

TRANSCRIPTS = Path(os.environ.get("REELFORGE_COMFY_TRANSCRIPTS",
                                  Path(__file__).resolve().parents[3] / "shared" / "comfyui-transcripts"))
if not TRANSCRIPTS.is_dir():  # worktrees live next to shared/
    TRANSCRIPTS = Path("/work/shared/comfyui-transcripts")

_OBJECT_INFO: dict[str, Any] | None = None
_MEDIA: dict[str, bytes] = {}
_MEDIA_LOCK = threading.Lock()

SAVE_EXT = {"SaveImage": "png", "SaveVideo": "mp4", "SaveWEBM": "webm",
            "SaveAnimatedWEBP": "webp", "SaveAnimatedPNG": "png"}
CONTENT_TYPES = {".png": "image/png", ".webp": "image/webp", ".mp4": "video/mp4",
                 ".webm": "video/webm", ".jpg": "image/jpeg"}


def object_info() -> dict[str, Any]:
    global _OBJECT_INFO
    if _OBJECT_INFO is None:
        _OBJECT_INFO = json.loads((TRANSCRIPTS / "object_info_full.json").read_text())
    return _OBJECT_INFO


def media(ext: str) -> bytes:
    """A tiny real file of that kind, made once per test session."""
    with _MEDIA_LOCK:
        if ext not in _MEDIA:
            _MEDIA[ext] = _make_media(ext)
        return _MEDIA[ext]


def _make_media(ext: str) -> bytes:
    import io
    import tempfile

    if ext in ("png", "webp"):
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (30, 90, 200)).save(buf, format=ext.upper())
        return buf.getvalue()
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"clip.{ext}"
        codec = ["-c:v", "libx264", "-pix_fmt", "yuv420p"] if ext == "mp4" else ["-c:v", "libvpx-vp9"]
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", "color=c=blue:s=64x64:d=0.5:r=12", *codec, str(out)],
                       check=True, capture_output=True)
        return out.read_bytes()


def _png(width: int, height: int, color: int) -> bytes:
    import io

    from PIL import Image

    rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
    buf = io.BytesIO()
    Image.new("RGB", (max(1, min(width, 256)), max(1, min(height, 256))), rgb).save(buf, format="PNG")
    return buf.getvalue()


class Item:
    def __init__(self, number: int, prompt_id: str, prompt: dict, extra: dict, outputs: list[str]):
        self.number, self.prompt_id, self.prompt, self.extra, self.outputs = \
            number, prompt_id, prompt, extra, outputs
        self.interrupt = False
        self.current_node: str | None = None
        self.held = False
        "Waiting in a held node (see FakeComfy.hold) for the test to let it go."

    def as_list(self) -> list:
        return [self.number, self.prompt_id, self.prompt, self.extra, self.outputs]


class FakeComfy:
    def __init__(self, root: Path, *, node_latency: float = 0.0):
        self.root = Path(root)
        self.output_dir = self.root / "output"
        self.input_dir = self.root / "input"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.input_dir.mkdir(parents=True, exist_ok=True)
        self.node_latency = node_latency
        "Seconds each executed node takes."
        self.class_latency: dict[str, float] = {}
        "class_type -> seconds an executed node of that class takes (instead of node_latency)."
        self.holds: dict[str, threading.Event] = {}
        "class_type -> an event a node of that class waits for once reached (see hold)."
        self.connects: list[str] = []
        "The clientId of every /ws connection, in order (reconnects included)."
        self.jobs_api = False
        "Serve GET /api/jobs and /api/jobs/{id} (ComfyUI since late 2025); off: 404 there."
        self.http_latency = 0.0
        "Seconds added before every HTTP answer."
        self.fail_nodes: dict[str, tuple[str, str]] = {}
        "class_type -> (exception_type, message): raised when such a node executes."
        self.hostile_outputs: list[dict[str, str]] = []
        "Extra file entries ({filename, subfolder, type}) put before the real ones in outputs."
        self.ignore_client_prompt_id = False
        self.prompt_faults: list[str] = []
        "One per POST /prompt, first first: '500_after_queue' queues the prompt, then answers 500."
        self.noise = True
        "Send binary preview frames and an unknown event type, as custom nodes do."
        self.hostile: dict[str, str] = {}
        """Hostile answers, by endpoint: {"view": MODE, "history": MODE, "prompt": MODE,
        "queue": MODE, "upload": MODE}, or by method and endpoint ("POST prompt"). MODE is 'flood' (``flood_bytes`` of chunked junk, no
        length), 'announce' (a Content-Length of ``flood_bytes``, then a trickle), 'trickle'
        (the real answer one byte per ``trickle_s``), 'deep' (JSON nested 100,000 deep),
        'not_object' (a JSON list), 'bad_shape' (fields of the wrong types), 'bad_id' (POST
        /prompt naming a path as its prompt id), 'nan_retry' (503 with Retry-After: nan), or
        'echo_auth_401' / 'echo_auth_500' (an error page repeating the Authorization
        header). Under "ws": 'ws_giant' sends one binary frame of ``flood_bytes`` on connect,
        'ws_junk' events of every wrong shape and a deeply nested one."""
        self.flood_bytes = 300 * 1024 * 1024
        self.trickle_s = 1.0
        self.sent: dict[str, int] = {}
        "Body bytes a hostile answer got out before the client hung up, by endpoint."
        self.require_auth: str | None = None
        "An Authorization header value every request must carry (else 401), as a proxy would."
        self.requests: list[tuple[str, str, Any]] = []
        self.gate: threading.Event | None = None
        """While this is an Event not yet set, every node about to execute waits for it (and
        ``gate_reached`` is set): a test holds a render mid-way, e.g. to kill the server then."""
        self.gate_reached = threading.Event()
        self.executions: list[tuple[str, str, str]] = []
        """(prompt_id, filename prefixes, 'started' | 'success' | 'error') per execution,
        kept across restarts: how often a prompt really ran."""
        self.timeline: list[tuple[str, str, float]] = []
        """(prompt_id, 'queued' | 'started' | 'success' | 'error', time.time()) per event, kept
        across restarts: when each prompt was accepted, began and ended (for benches)."""
        self.max_depth = 0
        "The most prompts this server ever held at once, queued and running together."
        self.extra_nodes: dict[str, Any] = {}
        """Node classes this server has besides ComfyUI 0.3.64's (class -> its /object_info
        entry): custom node packs installed, for the tests that need them."""
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._reset_state()

    # -- lifecycle (called from the test thread) ---------------------------------------

    def _reset_state(self) -> None:
        self.history: dict[str, dict] = {}
        self.pending: list[Item] = []
        self.running: Item | None = None
        self.number = 0
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeComfy":
        ready = threading.Event()

        def main() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._up())
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=main, name="fake-comfyui", daemon=True)
        self._thread.start()
        if not ready.wait(60):
            raise RuntimeError("fake ComfyUI did not start")
        return self

    def _call(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def kill(self) -> None:
        """Stop answering: the port is closed, running work and queue vanish."""
        self._call(self._down())

    def revive(self) -> None:
        """Start again on the same port with empty memory (history, queue, cache), as after
        a restart; files on disk stay and numbering carries on from them."""
        self._call(self._up())

    def restart(self, downtime: float = 0.0) -> None:
        self.kill()
        if downtime:
            time.sleep(downtime)
        self.revive()

    def stop(self) -> None:
        if self.loop is None:
            return
        self.release()  # nothing the test held outlives it
        try:
            self._call(self._down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    def posts(self, prompt_id: str | None = None) -> list[Any]:
        """Bodies of POST /prompt requests seen (for one prompt_id when given)."""
        return [b for m, p, b in self.requests if m == "POST" and p == "/prompt"
                and (prompt_id is None or (isinstance(b, dict) and b.get("prompt_id") == prompt_id))]

    def hold(self, class_type: str) -> threading.Event:
        """Nodes of ``class_type`` wait, once reached, until the returned event is set (or
        their prompt is interrupted): the test, not a latency, decides when such work ends.
        Wait for ``held()`` to know a prompt is there."""
        return self.holds.setdefault(class_type, threading.Event())

    def held(self, prompt_id: str | None = None) -> bool:
        """A prompt (that one, when given) is running and waiting in a held node."""
        run = self.running
        return run is not None and run.held and (prompt_id is None or run.prompt_id == prompt_id)

    def release(self) -> None:
        """Let every held node go, now and from now on."""
        for gate in list(self.holds.values()):
            gate.set()

    def wait_until(self, cond: Callable[[], bool], timeout: float = 60.0) -> None:
        """Return once ``cond()`` is true; the deadline is generous: on a quiet machine this
        returns at once, on a loaded one it still does not fail for being slow."""
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise AssertionError("fake ComfyUI: condition not met in time")
            time.sleep(0.01)

    # -- server ------------------------------------------------------------------------

    async def _up(self) -> None:
        self._reset_state()
        self._wake = asyncio.Event()
        app = web.Application(client_max_size=100 * 1024 * 1024, middlewares=[self._middleware])
        r = app.router
        r.add_get("/ws", self.ws)
        r.add_get("/prompt", self.get_prompt)
        r.add_post("/prompt", self.post_prompt)
        r.add_get("/queue", self.get_queue)
        r.add_post("/queue", self.post_queue)
        r.add_post("/interrupt", self.post_interrupt)
        r.add_get("/history", self.get_history)
        r.add_get("/history/{prompt_id}", self.get_history_one)
        r.add_post("/history", self.post_history)
        r.add_post("/upload/image", self.upload_image)
        r.add_get("/view", self.view)
        r.add_get("/object_info", self.get_object_info)
        r.add_get("/object_info/{cls}", self.get_object_info_one)
        r.add_get("/system_stats", self.system_stats)
        r.add_get("/api/jobs", self.get_jobs)
        r.add_get("/api/jobs/{job_id}", self.get_job)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _down(self) -> None:
        # like a process dying: the port closes first, so no client sees a half-reset server
        runner, self._runner = self._runner, None
        if runner is not None:
            for site in list(runner.sites):
                await site.stop()
            # and every open connection with it: a keep-alive request must not still be
            # answered by the dying server (a client would see it up again for a moment)
            for conn in runner.server.connections if runner.server is not None else ():
                conn.force_close()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        for ws in list(self.sockets.values()):
            await ws.close()
        if runner is not None:
            await runner.cleanup()
        self._reset_state()

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        body = None
        if request.method == "POST" and request.content_type == "application/json":
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        self.requests.append((request.method, request.path, body))
        if self.http_latency:
            await asyncio.sleep(self.http_latency)
        if self.require_auth is not None and request.headers.get("Authorization") != self.require_auth:
            return web.Response(status=401, text="401 Authorization Required")
        parts = request.path.strip("/").split("/")
        kind = (parts[1] if parts[0] == "api" and len(parts) > 1 else parts[0]) or "root"
        mode = self.hostile.get(f"{request.method} {kind}", self.hostile.get(kind))
        if mode is not None and kind != "ws":
            return await self._hostile(request, kind, mode, handler)
        return await handler(request)

    # -- hostile answers ---------------------------------------------------------------

    async def _hostile(self, request: web.Request, kind: str, mode: str, handler) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if mode == "echo_auth_401":
            return web.json_response({"error": {"type": "unauthorized", "message":
                                                f"bad credentials: {auth}", "details": auth}}, status=401)
        if mode == "echo_auth_500":
            return web.Response(status=500, content_type="text/html", text=(
                f"<html><body><h1>500</h1><pre>Traceback...\nheaders: Authorization: {auth}"
                f"</pre></body></html>"))
        if mode == "bad_id":  # a prompt id that would be a path, and a nonsense Retry-After
            return web.json_response({"prompt_id": "../" * 50 + "etc", "number": 0, "node_errors": {}},
                                     headers={"Retry-After": "nan"})
        if mode == "nan_retry":
            return web.Response(status=503, text="busy", headers={"Retry-After": "nan"})
        if mode == "deep":
            return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")
        if mode == "not_object":
            return web.json_response([1, 2, 3])
        if mode == "bad_shape":
            if kind == "history":
                pid = request.match_info.get("prompt_id", "x")
                return web.json_response({pid: {"outputs": ["not", "a", "dict"], "status": "done"}})
            if kind == "prompt" and request.method == "GET":
                return web.json_response({"exec_info": {"queue_remaining": "lots"}})
            return web.json_response({"queue_running": "nope", "queue_pending": {"a": 1}})
        if mode == "flood":
            resp = web.StreamResponse(headers={"Content-Type": "image/png"})
            resp.enable_chunked_encoding()
            return await self._pour(request, resp, kind, self.flood_bytes, b"\x89PNG" + b"x" * 65532)
        if mode == "announce":
            resp = web.StreamResponse(headers={"Content-Type": "image/png"})
            resp.content_length = self.flood_bytes
            return await self._pour(request, resp, kind, self.flood_bytes, b"x", delay=self.trickle_s)
        if mode == "trickle":
            real = await handler(request)
            body = real.body if isinstance(real.body, bytes) else b""
            resp = web.StreamResponse(status=real.status, headers={"Content-Type": real.content_type})
            resp.content_length = len(body)
            return await self._pour(request, resp, kind, len(body), body, delay=self.trickle_s, step=1)
        raise AssertionError(f"unknown hostile mode {mode!r}")

    async def _pour(self, request: web.Request, resp: web.StreamResponse, kind: str, total: int,
                    chunk: bytes, *, delay: float = 0.0, step: int | None = None) -> web.StreamResponse:
        """Send ``total`` body bytes (``chunk`` repeated, or ``chunk`` itself ``step`` bytes at a
        time), counting what got out, until done or the client hangs up."""
        self.sent[kind] = 0
        await resp.prepare(request)
        try:
            while self.sent[kind] < total:
                if step is not None:
                    piece = chunk[self.sent[kind]:self.sent[kind] + step]
                else:
                    piece = chunk[:total - self.sent[kind]]
                await resp.write(piece)
                self.sent[kind] += len(piece)
                if delay:
                    await asyncio.sleep(delay)
            await resp.write_eof()
        except ConnectionError:  # the client hung up: what we wanted to see
            pass
        return resp

    async def _send(self, kind: str, data: dict, sid: str | None = None) -> None:
        msg = json.dumps({"type": kind, "data": data})
        targets = [self.sockets[sid]] if sid in self.sockets else ([] if sid else list(self.sockets.values()))
        for ws in targets:
            try:
                await ws.send_str(msg)
            except Exception:
                pass

    async def _send_bytes(self, payload: bytes, sid: str | None) -> None:
        ws = self.sockets.get(sid) if sid else None
        if ws is not None:
            try:
                await ws.send_bytes(payload)
            except Exception:
                pass

    def _queue_remaining(self) -> int:
        return len(self.pending) + (1 if self.running else 0)

    async def _status(self) -> None:
        await self._send("status", {"status": {"exec_info": {"queue_remaining": self._queue_remaining()}}})

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.connects.append(sid)
        self.sockets[sid] = ws  # a reconnect with the same clientId replaces the old socket
        try:
            await ws.send_str(json.dumps({"type": "status", "data": {
                "status": {"exec_info": {"queue_remaining": self._queue_remaining()}}, "sid": sid}}))
            if self.hostile.get("ws") == "ws_junk":  # events of every wrong shape
                for junk in ({"type": "progress_state", "data": {"prompt_id": None, "nodes": {
                              "1": {"state": "x", "value": "v", "max": 0}, "2": {"max": "inf"}}}},
                             {"type": "progress", "data": {"max": 1, "value": [1], "node": {"a": 1}}},
                             {"type": "execution_cached", "data": {"nodes": 5}},
                             {"type": "executing", "data": "not a dict"}, ["a list"], "text"):
                    await ws.send_str(json.dumps(junk))
                await ws.send_str("[" * 100_000)
            if self.hostile.get("ws") == "ws_giant":
                self.sent["ws"] = self.sent.get("ws", 0) + 1
                await ws.send_bytes(b"\0" * self.flood_bytes)
            run = self.running
            if run is not None and run.extra.get("client_id") == sid and run.current_node:
                # as recorded: after a reconnect, "executing" without a prompt_id
                await ws.send_str(json.dumps({"type": "executing", "data": {"node": run.current_node}}))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        continue
                    if data.get("type") == "feature_flags":
                        await ws.send_str(json.dumps({"type": "feature_flags", "data": {
                            "supports_preview_metadata": True, "max_upload_size": 104857600}}))
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws

    # -- prompts -----------------------------------------------------------------------

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self._queue_remaining()}})

    async def post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        if "prompt" not in body:
            return self._err400("no_prompt", "No prompt provided", "No prompt provided")
        prompt = body["prompt"]
        if not isinstance(prompt, dict):
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        info = self.node_info()
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return self._err400("invalid_prompt", "Cannot execute because a node is missing "
                                    "the class_type property.", f"Node ID '#{node_id}'")
            if node["class_type"] not in info:
                return self._err400("invalid_prompt", f"Cannot execute because node "
                                    f"{node['class_type']} does not exist.", f"Node ID '#{node_id}'")
        outputs = [nid for nid, n in prompt.items() if info[n["class_type"]].get("output_node")]
        if not outputs:
            return self._err400("prompt_no_outputs", "Prompt has no outputs", "")
        good, node_errors = [], {}
        for out in outputs:
            errors: dict[str, list] = {}
            self._validate(prompt, out, errors, set())
            if errors:
                for nid, errs in errors.items():
                    entry = node_errors.setdefault(nid, {"errors": errs, "dependent_outputs": [],
                                                         "class_type": prompt[nid]["class_type"]})
                    entry["dependent_outputs"].append(out)
            else:
                good.append(out)
        if not good:
            return web.json_response({"error": {"type": "prompt_outputs_failed_validation",
                                                "message": "Prompt outputs failed validation",
                                                "details": "", "extra_info": {}},
                                      "node_errors": node_errors}, status=400)
        prompt_id = body.get("prompt_id")
        if not prompt_id or self.ignore_client_prompt_id:
            prompt_id = str(uuid.uuid4())
        extra = dict(body.get("extra_data") or {})
        if self.jobs_api:
            extra["create_time"] = int(time.time() * 1000)  # as the servers with the job API do
        if body.get("client_id"):
            extra["client_id"] = body["client_id"]
        number = self.number
        self.number += 1
        self.pending.append(Item(number, prompt_id, prompt, extra, good))
        self.timeline.append((prompt_id, "queued", time.time()))
        self.max_depth = max(self.max_depth, self._queue_remaining())
        await self._status()
        self._wake.set()
        if self.prompt_faults and self.prompt_faults.pop(0) == "500_after_queue":
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    def _err400(self, kind: str, message: str, details: str) -> web.Response:
        return web.json_response({"error": {"type": kind, "message": message, "details": details,
                                            "extra_info": {}}, "node_errors": {}}, status=400)

    def _validate(self, prompt: dict, node_id: str, errors: dict, seen: set) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        node = prompt[node_id]
        cls = node["class_type"]
        spec = self.node_info()[cls]["input"]
        inputs = node.get("inputs") or {}
        errs = []

        def err(kind, message, details, **extra):
            errs.append({"type": kind, "message": message, "details": details,
                         "extra_info": {"input_name": details.split(",")[0].split(":")[0], **extra}})

        for name, conf in (spec.get("required") or {}).items():
            if name not in inputs:
                err("required_input_missing", "Required input is missing", name)
        for section in ("required", "optional"):
            for name, conf in (spec.get(section) or {}).items():
                if name not in inputs:
                    continue
                value = inputs[name]
                kind = conf[0]
                opts = conf[1] if len(conf) > 1 and isinstance(conf[1], dict) else {}
                if isinstance(value, list):
                    src = str(value[0])
                    if src not in prompt:
                        errs.append({"type": "exception_during_validation",
                                     "message": "Exception when validating node", "details": f"'{src}'",
                                     "extra_info": {"exception_type": "KeyError", "traceback": []}})
                        continue
                    self._validate(prompt, src, errors, seen)
                    continue
                if cls == "LoadImage" and name == "image":
                    path = value.split(" [")[0]
                    if not (self.input_dir / path).is_file():
                        errs.append({"type": "custom_validation_failed",
                                     "message": "Custom validation failed for node",
                                     "details": f"image - Invalid image file: {value}",
                                     "extra_info": {"input_name": "image"}})
                    continue
                if kind in ("INT", "FLOAT"):
                    try:
                        num = int(value) if kind == "INT" else float(value)
                    except (TypeError, ValueError) as exc:
                        err("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                            f"{name}, {value}, {exc}", received_value=value)
                        continue
                    if "min" in opts and num < opts["min"]:
                        err("value_smaller_than_min", f"Value {num} smaller than min of {opts['min']}",
                            name, received_value=value)
                    if "max" in opts and num > opts["max"]:
                        err("value_bigger_than_max", f"Value {num} bigger than max of {opts['max']}",
                            name, received_value=value)
                elif isinstance(kind, list) and kind and value not in kind:
                    # classic combos are validated; v3 "COMBO" ones are not (as recorded)
                    err("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {kind}",
                        received_value=value)
        if errs:
            errors[node_id] = errs

    # -- execution ---------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            while not self.pending:
                self._wake.clear()
                await self._wake.wait()
            item = self.pending.pop(0)
            self.running = item
            try:
                await self._execute(item)
            finally:
                self.running = None

    async def _execute(self, item: Item) -> None:
        pid, sid = item.prompt_id, item.extra.get("client_id")
        messages: list = []

        async def event(kind: str, data: dict, keep: bool = False) -> None:
            data = {**data, "prompt_id": pid} if "prompt_id" not in data else data
            if keep:
                data["timestamp"] = int(time.time() * 1000)
                messages.append([kind, data])
            if sid:
                await self._send(kind, data, sid)

        prefixes = ",".join(sorted(str(n["inputs"].get("filename_prefix")) for n in item.prompt.values()
                                   if n.get("class_type") in SAVE_EXT))
        self.executions.append((pid, prefixes, "started"))
        self.timeline.append((pid, "started", time.time()))
        await self._status()
        await event("execution_start", {}, keep=True)
        await event("execution_cached", {"nodes": []}, keep=True)
        order = self._order(item.prompt, item.outputs)
        outputs: dict[str, dict] = {}
        executed: list[str] = []
        status = "success"
        for node_id in order:
            node = item.prompt[node_id]
            cls = node["class_type"]
            if item.interrupt:
                await event("execution_interrupted", {"node_id": node_id, "node_type": cls,
                                                      "executed": list(executed)}, keep=True)
                status = "error"
                break
            item.current_node = node_id
            await event("progress_state", {"nodes": {node_id: {"value": 0.0, "max": 1.0, "state": "running",
                                                              "node_id": node_id, "prompt_id": pid}}})
            await event("executing", {"node": node_id, "display_node": node_id})
            while self.gate is not None and not self.gate.is_set():
                self.gate_reached.set()
                await asyncio.sleep(0.01)
            if self.noise and sid:
                await self._send("crystools.monitor", {"cpu_utilization": 3.5}, sid)
                await self._send_bytes(struct.pack(">II", 1, 2) + media("png"), sid)
            latency = self.class_latency.get(cls, self.node_latency)
            if latency:
                await asyncio.sleep(latency)
            await self._held(item, cls)
            failure = self.fail_nodes.get(cls)
            if failure is None and cls == "SaveVideo" and node["inputs"].get("format") not in ("auto", "mp4"):
                failure = ("ValueError", f"'{node['inputs'].get('format')}' is not a valid VideoContainer\n")
            if failure is not None:
                await event("execution_error", {
                    "node_id": node_id, "node_type": cls, "executed": list(executed),
                    "exception_message": failure[1], "exception_type": failure[0],
                    "traceback": ["  File \"execution.py\", line 1, in execute\n"],
                    "current_inputs": {}, "current_outputs": list(order)}, keep=True)
                status = "error"
                break
            if cls in SAVE_EXT:
                ui = self._save(item.prompt, node_id)
                outputs[node_id] = ui
                await event("executed", {"node": node_id, "display_node": node_id, "output": ui})
            executed.append(node_id)
            await event("progress_state", {"nodes": {node_id: {"value": 1.0, "max": 1.0, "state": "finished",
                                                              "node_id": node_id, "prompt_id": pid}}})
        else:
            await event("execution_success", {}, keep=True)
        item.current_node = None
        # task_done: history is written, then the queue shrinks, then executing(null)
        self.history[pid] = {
            "prompt": item.as_list(),
            "outputs": outputs if status == "success" else {},
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                     for n in outputs},
        }
        self.executions.append((pid, prefixes, status))
        self.timeline.append((pid, status, time.time()))
        self.running = None
        await self._status()
        if sid:
            await self._send("executing", {"node": None, "prompt_id": pid}, sid)

    async def _held(self, item: Item, cls: str) -> None:
        """Wait while the test holds nodes of this class (ended by an interrupt too, as a
        real sampler checks for one between steps)."""
        gate = self.holds.get(cls)
        if gate is None:
            return
        item.held = True
        try:
            while not gate.is_set() and not item.interrupt:
                await asyncio.sleep(0.005)
        finally:
            item.held = False

    def _order(self, prompt: dict, outputs: list[str]) -> list[str]:
        order: list[str] = []

        def visit(nid: str) -> None:
            if nid in order:
                return
            for value in (prompt[nid].get("inputs") or {}).values():
                if isinstance(value, list) and str(value[0]) in prompt:
                    visit(str(value[0]))
            order.append(nid)

        for out in outputs:
            visit(out)
        return order

    def _source(self, prompt: dict, node_id: str) -> dict:
        """The EmptyImage/LoadImage feeding a node, for sizes and colours."""
        seen = set()
        stack = [node_id]
        while stack:
            nid = stack.pop()
            if nid in seen or nid not in prompt:
                continue
            seen.add(nid)
            node = prompt[nid]
            if node["class_type"] in ("EmptyImage", "LoadImage"):
                return node
            stack.extend(str(v[0]) for v in (node.get("inputs") or {}).values() if isinstance(v, list))
        return {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "color": 0}}

    def _save(self, prompt: dict, node_id: str) -> dict:
        node = prompt[node_id]
        cls = node["class_type"]
        ext = SAVE_EXT[cls]
        prefix = str(node["inputs"].get("filename_prefix") or "ComfyUI")
        subfolder, _, base = prefix.rpartition("/")
        folder = self.output_dir / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        # numbering is shared by every extension of a prefix and continues from files on disk
        pattern = re.compile(re.escape(base) + r"_(\d{5})_\.")
        counter = 1 + max([int(m.group(1)) for f in os.listdir(folder) if (m := pattern.match(f))] or [0])
        src = self._source(prompt, node_id)
        count = int(src["inputs"].get("batch_size", 1)) if cls == "SaveImage" else 1
        files = []
        for i in range(count):
            name = f"{base}_{counter + i:05}_.{ext}"
            if cls == "SaveImage" and src["class_type"] == "EmptyImage":
                data = _png(int(src["inputs"].get("width", 64)), int(src["inputs"].get("height", 64)),
                            int(src["inputs"].get("color", 0)))
            else:
                data = media(ext)
            (folder / name).write_bytes(data)
            files.append({"filename": name, "subfolder": subfolder, "type": "output"})
        ui: dict[str, Any] = {"images": [*self.hostile_outputs, *files]}
        if cls != "SaveImage":
            ui["animated"] = [True]
        return ui

    # -- queue and history -------------------------------------------------------------

    async def get_queue(self, request: web.Request) -> web.Response:
        return web.json_response({"queue_running": [self.running.as_list()] if self.running else [],
                                  "queue_pending": [i.as_list() for i in self.pending]})

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.pending.clear()
        for pid in body.get("delete") or []:
            self.pending = [i for i in self.pending if i.prompt_id != pid]
        await self._status()
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        body = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = {}
        run = self.running
        if run is not None and (not body.get("prompt_id") or body["prompt_id"] == run.prompt_id):
            run.interrupt = True
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        items = list(self.history.items())
        if "max_items" in request.query:
            items = items[-int(request.query["max_items"]):]
        return web.json_response(dict(items))

    async def get_history_one(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def post_history(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.history.clear()
        for pid in body.get("delete") or []:
            self.history.pop(pid, None)
        return web.Response(status=200)

    # -- the job API (ComfyUI since late 2025) ------------------------------------------

    @staticmethod
    def _job_of_queue_item(item: Item, status: str) -> dict:
        job = {"id": item.prompt_id, "status": status, "priority": item.number,
               "create_time": item.extra.get("create_time"), "outputs_count": 0}
        return {k: v for k, v in job.items() if v is not None}

    def _job_of_history(self, pid: str, entry: dict, full: bool) -> dict:
        status_info = entry.get("status") or {}
        status = "failed" if status_info.get("status_str") == "error" else "completed"
        start = end = error = None
        for name, data in status_info.get("messages") or []:
            if name == "execution_start":
                start = data.get("timestamp")
            elif name in ("execution_success", "execution_error", "execution_interrupted"):
                end = data.get("timestamp")
                if name == "execution_error":
                    error = data
        outputs = entry.get("outputs") or {}
        count = sum(len(v) for o in outputs.values() for k, v in o.items()
                    if k != "animated" and isinstance(v, list))
        number, _, prompt, extra, _ = entry["prompt"]
        job = {"id": pid, "status": status, "priority": number, "create_time": extra.get("create_time"),
               "execution_start_time": start, "execution_end_time": end, "execution_error": error,
               "outputs_count": count}
        job = {k: v for k, v in job.items() if v is not None}
        if full:
            job["outputs"] = outputs
            job["execution_status"] = status_info
            job["workflow"] = {"prompt": prompt, "extra_data": extra}
        return job

    async def get_jobs(self, request: web.Request) -> web.Response:
        if not self.jobs_api:
            raise web.HTTPNotFound()
        wanted = [s for s in request.query.get("status", "").split(",") if s] or \
            ["pending", "in_progress", "completed", "failed"]
        jobs = []
        if "in_progress" in wanted and self.running:
            jobs.append(self._job_of_queue_item(self.running, "in_progress"))
        if "pending" in wanted:
            jobs.extend(self._job_of_queue_item(i, "pending") for i in self.pending)
        for pid, entry in self.history.items():
            job = self._job_of_history(pid, entry, False)
            if job["status"] in wanted:
                jobs.append(job)
        offset = int(request.query.get("offset", 0))
        limit = int(request.query["limit"]) if "limit" in request.query else None
        page = jobs[offset:][:limit] if limit is not None else jobs[offset:]
        return web.json_response({"jobs": page, "pagination": {
            "offset": offset, "limit": limit, "total": len(jobs),
            "has_more": offset + len(page) < len(jobs)}})

    async def get_job(self, request: web.Request) -> web.Response:
        if not self.jobs_api:
            raise web.HTTPNotFound()
        pid = request.match_info["job_id"]
        if pid in self.history:
            return web.json_response(self._job_of_history(pid, self.history[pid], True))
        if self.running is not None and self.running.prompt_id == pid:
            return web.json_response(self._job_of_queue_item(self.running, "in_progress"))
        for item in self.pending:
            if item.prompt_id == pid:
                return web.json_response(self._job_of_queue_item(item, "pending"))
        return web.json_response({"error": "Job not found"}, status=404)

    # -- files -------------------------------------------------------------------------

    async def upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if image is None or not hasattr(image, "file"):
            return web.Response(status=400)
        subfolder = str(post.get("subfolder") or "")
        overwrite = str(post.get("overwrite") or "").lower() in ("true", "1")
        folder = (self.input_dir / subfolder).resolve()
        if os.path.commonpath([folder, self.input_dir.resolve()]) != str(self.input_dir.resolve()):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        data = image.file.read()
        name = os.path.basename(image.filename)
        stem, ext = os.path.splitext(name)
        i = 1
        while not overwrite and (folder / name).exists() and (folder / name).read_bytes() != data:
            name = f"{stem} ({i}){ext}"
            i += 1
        (folder / name).write_bytes(data)
        return web.json_response({"name": name, "subfolder": subfolder, "type": "input"})

    async def view(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        filename = q.get("filename", "")
        kind = q.get("type", "output")
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        base = {"output": self.output_dir, "input": self.input_dir, "temp": self.root / "temp"}.get(kind)
        if base is None:
            return web.Response(status=400)
        folder = (base / q.get("subfolder", "")).resolve()
        if os.path.commonpath([folder, base.resolve()]) != str(base.resolve()):
            return web.Response(status=403)
        path = folder / filename
        if not path.is_file():
            return web.Response(status=404)
        return web.Response(body=path.read_bytes(),
                            content_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                            headers={"Content-Disposition": f'filename="{filename}"'})

    def node_info(self) -> dict[str, Any]:
        """/object_info of this server: 0.3.64's classes and ``extra_nodes``."""
        return {**object_info(), **self.extra_nodes} if self.extra_nodes else object_info()

    async def get_object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.node_info())

    async def get_object_info_one(self, request: web.Request) -> web.Response:
        cls = request.match_info["cls"]
        info = self.node_info()
        return web.json_response({cls: info[cls]} if cls in info else {})

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"os": "posix", "comfyui_version": "0.3.64 (fake)"},
                                  "devices": []})


def main() -> None:  # python tests/comfy/fake_comfy.py [PORT] [NODE_LATENCY]: for manual runs and the bench
    import sys
    import tempfile

    fake = FakeComfy(Path(tempfile.mkdtemp(prefix="fake-comfy-")),
                     node_latency=float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
    fake.port = int(sys.argv[1]) if len(sys.argv) > 1 else 8188
    fake.start()
    print(f"fake ComfyUI on {fake.url} (files in {fake.root})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()
        shutil.rmtree(fake.root, ignore_errors=True)


if __name__ == "__main__":
    main()
