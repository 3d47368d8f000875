"""Fake LLM servers that really listen on 127.0.0.1 and answer as OpenAI's
chat-completions API and Ollama's /api/chat do, and list their models as OpenAI's GET
/models (``{"object": "list", "data": [{"id", "object", "created", "owned_by"}]}``) and
Ollama's GET /api/tags (``{"models": [{"name", "model", ...}]}``) do."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import attrs

API_KEY = "sk-test-3b1f9c0ffee0d15ea5e5ecre7"


@attrs.define
class Canned:
    status: int = 200
    body: Any = None
    "A dict (sent as JSON) or a str (sent as is)."
    headers: dict[str, str] = attrs.Factory(dict)
    delay: float = 0.0
    hold: threading.Event | None = None
    "The answer waits until this is set (by the test, or by a later request's responder)."
    trickle_s: float = 0.0
    "Hostile: send the body one byte per this many seconds (with its Content-Length)."
    flood_bytes: int = 0
    "Hostile: send this many bytes of chunked junk instead of the body, with no length."
    content_type: str = "application/json"


@attrs.define
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.body["messages"]

    @property
    def user(self) -> str:
        return self.messages[1]["content"]


@contextlib.contextmanager
def serving() -> Iterator["FakeServer"]:
    """A FakeServer listening on 127.0.0.1 for the duration of the block."""
    server = FakeServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


class FakeServer:
    """Answers POSTs from a queue of canned replies; when the queue is empty, from
    ``responder(seen) -> Canned`` if set, else 500. GETs of a path ending in /models or
    /api/tags list ``models`` (or answer ``on_get`` when set)."""

    def __init__(self) -> None:
        self.queue: deque[Canned] = deque()
        self.requests: list[Seen] = []
        self.responder: Callable[[Seen], Canned] | None = None
        self.models: list[str] = ["gpt-4o-mini", "fake-1", "llama3.1:latest", "qwen2.5:7b"]
        "What GET /models and GET /api/tags list."
        self.owned_by = "openai"
        self.on_get: Canned | None = None
        "Answer every GET with this instead (an error, a page that is not JSON, ...)."
        self.gets: list[Seen] = []
        self.sent = 0
        "Body bytes the last hostile (trickled or flooded) answer got out before the client hung up."
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, {})
                server.gets.append(seen)
                canned = server.on_get
                if canned is None and self.path.rstrip("/").endswith("/models"):
                    canned = Canned(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 1732400000, "owned_by": server.owned_by}
                        for m in server.models]})
                elif canned is None and self.path.rstrip("/").endswith("/api/tags"):
                    canned = Canned(200, {"models": [
                        {"name": m, "model": m, "modified_at": "2026-11-24T03:00:00Z", "size": 4920753328,
                         "digest": "sha256:fake", "details": {"format": "gguf", "family": "llama"}}
                        for m in server.models]})
                elif canned is None:
                    canned = Canned(404, "404 page not found", content_type="text/plain")
                data = (canned.body if isinstance(canned.body, str) else json.dumps(canned.body)).encode()
                try:
                    self.send_response(canned.status)
                    self.send_header("Content-Type", canned.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in canned.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw))
                server.requests.append(seen)
                if server.queue:
                    canned = server.queue.popleft()
                elif server.responder:
                    canned = server.responder(seen)
                else:
                    canned = Canned(500, {"error": {"message": "no reply queued", "type": "server_error",
                                                    "code": None}})
                if canned.delay:
                    time.sleep(canned.delay)
                if canned.hold is not None:
                    canned.hold.wait(120)
                payload = canned.body if isinstance(canned.body, str) else json.dumps(canned.body)
                data = payload.encode()
                server.sent = 0
                try:
                    self.send_response(canned.status)
                    self.send_header("Content-Type", canned.content_type)
                    if canned.flood_bytes:
                        self.send_header("Transfer-Encoding", "chunked")
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    for k, v in canned.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    if canned.flood_bytes:
                        chunk = b'{"junk": "' + b"x" * 65000
                        while server.sent < canned.flood_bytes:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            server.sent += len(chunk)
                        self.wfile.write(b"0\r\n\r\n")
                    elif canned.trickle_s:
                        for i in range(len(data)):
                            self.wfile.write(data[i:i + 1])
                            self.wfile.flush()
                            server.sent += 1
                            time.sleep(canned.trickle_s)
                    else:
                        self.wfile.write(data)
                        server.sent = len(data)  # only once all of it got out
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *canned: Canned) -> None:
        self.queue.extend(canned)


# -- answers shaped like the real APIs --------------------------------------------------

def chat_completion(content: str | dict, finish_reason: str = "stop", **message: Any) -> Canned:
    if isinstance(content, dict):
        content = json.dumps(content)
    return Canned(200, {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1732400000, "model": "fake-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None,
                                              **message},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
        "system_fingerprint": "fp_fake",
    })


def openai_error(status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> Canned:
    return Canned(status, {"error": {"message": message, "type": type_, "param": param, "code": code}},
                  headers or {})


def echo_auth_401(seen: Seen) -> Canned:
    """A hostile or careless server: a 401 whose JSON body repeats the Authorization header."""
    auth = seen.headers.get("authorization", "")
    return openai_error(401, f"Incorrect API key provided: {auth}. You can find your API key "
                        f"at https://example.invalid/keys", "invalid_request_error", "invalid_api_key")


def echo_auth_500_html(seen: Seen) -> Canned:
    """A proxy's 500 page that dumps the request headers."""
    auth = seen.headers.get("authorization", "")
    return Canned(500, f"<html><head><title>500 Internal Server Error</title></head><body>"
                       f"<h1>Internal Server Error</h1><pre>Authorization: {auth}\n"
                       f"X-Api-Key: {auth.removeprefix('Bearer ')}</pre></body></html>",
                  content_type="text/html")


def echo_auth_400_json(seen: Seen) -> Canned:
    """A 400 that quotes the request back, headers included (vLLM-style ``detail``)."""
    auth = seen.headers.get("authorization", "")
    return Canned(400, {"detail": [{"msg": "bad request", "input": {"headers": {"Authorization": auth}},
                                    "key": auth.removeprefix("Bearer ")}]})


def ollama_chat(content: str | dict, done_reason: str = "stop") -> Canned:
    if isinstance(content, dict):
        content = json.dumps(content)
    return Canned(200, {
        "model": "llama3.1", "created_at": "2026-11-24T03:00:00.000000Z",
        "message": {"role": "assistant", "content": content},
        "done_reason": done_reason, "done": True, "total_duration": 4883583458,
        "load_duration": 1334875, "prompt_eval_count": 26, "prompt_eval_duration": 342546000,
        "eval_count": 282, "eval_duration": 4535599000,
    })


def ollama_error(status: int, message: str) -> Canned:
    return Canned(status, {"error": message})


# -- valid content for each stage -------------------------------------------------------

STORY = {
    "title": "The Lighthouse Keeper's Cat",
    "logline": "A lonely keeper's cat must relight the lamp before the ferry reaches the rocks.",
    "synopsis": "Storm night.\n\nThe keeper falls asleep; the cat climbs.",
    "characters": [
        {"name": "Mabel", "description": "a small ginger tabby with a white chest and green eyes"},
        {"name": "Old Tom", "description": "a bearded keeper in his seventies, navy wool sweater"},
    ],
    "style": "moody painterly watercolour, teal and amber palette, 35mm lens",
}

SCENES = {"scenes": [
    {"id": "s1", "order": 1, "summary": "The storm rises.", "setting": "lighthouse at dusk",
     "characters": ["Old Tom", "Mabel"]},
    {"id": "s2", "order": 2, "summary": "Mabel climbs the stairs.", "setting": "spiral stairs",
     "characters": ["Mabel"]},
    {"id": "s3", "order": 3, "summary": "The lamp is lit.", "setting": "lamp room",
     "characters": ["Mabel", "Old Tom"]},
]}


def shot(scene_id: str, n: int, **over: Any) -> dict[str, Any]:
    data = {
        "id": n, "scene_id": scene_id, "description": f"shot {n} in {scene_id}",
        "image_prompt": f"Mabel on the stairs, wide shot {n}", "motion_prompt": "slow push in",
        "negative_prompt": "", "duration_s": 3.0, "characters": ["mabel"],
        "narration": f"Mabel climbs towards the lamp, step {n} of the long night.",
    }
    data.update(over)
    return data


def shots_for(parts: list[tuple[str, int]], first_id: int = 1) -> dict[str, Any]:
    out, n = [], first_id
    for scene_id, count in parts:
        for _ in range(count):
            out.append(shot(scene_id, n))
            n += 1
    return {"shots": out}


def stage_of(seen: Seen) -> str:
    system = seen.messages[0]["content"]
    if '"image_prompt"' in system:
        return "shot_plan"
    if '"setting"' in system:
        return "scene_graph"
    return "story"


def parts_asked(seen: Seen) -> tuple[int, list[tuple[str, int]]]:
    """(first id, [(scene id, count)]) from a shot-plan request."""
    text = seen.user
    m = re.search(r"Plan only shots (\d+) to", text)
    first = int(m.group(1)) if m else 1
    line = next(l for l in text.split("\n\n") if "per scene:" in l or "for these scenes:" in l)
    return first, [(s, int(n)) for s, n in re.findall(r"\b(s\d+) \((\d+) shots?\)", line)]


def film_content(seen: Seen) -> dict[str, Any]:
    stage = stage_of(seen)
    if stage == "story":
        return STORY
    if stage == "scene_graph":
        return SCENES
    first, parts = parts_asked(seen)
    return shots_for(parts, first)


def openai_film(seen: Seen) -> Canned:
    return chat_completion(film_content(seen))


def ollama_film(seen: Seen) -> Canned:
    return ollama_chat(film_content(seen))


