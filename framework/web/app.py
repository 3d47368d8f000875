"""The `reelforge serve` web app (Starlette): the sessions, a live page per session, and
buttons for redo, use take and approve that call the Runner in a background thread.

Sessions are only read here (:meth:`SessionStore.load`, read-only); what changes a
session is the Runner, as on the command line, one action at a time per session. Media
are served only from inside a session folder: a stored path is checked to stay inside
it, and a link is never followed. Actions are POSTs that carry this process's CSRF token,
and requests must name this server's own host (a page elsewhere cannot post to it, nor
read it through a rebound DNS name).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from reelforge.errors import ReelforgeError, SessionCorruptError, SessionError, SessionLockedError
from reelforge.redact import redact
from reelforge.store.meta import AWAITING_REVIEW, COMPLETE, IN_PROGRESS
from reelforge.store.safefs import O_BINARY, O_NOFOLLOW, contained
from reelforge.store.session import Session
from reelforge.store.sessions import SessionStore
from reelforge.store.verify import VerifyReport
from reelforge.web.creator import session_data
from reelforge.web.report import relative_url, render

log = logging.getLogger("reelforge.web")

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
#: Where media may come from inside a session: the stage folders (and their takes/) and the film.
MEDIA_FOLDERS = ("images", "videos", "narration")
MEDIA_FILES = ("film.mp4", "film.srt", "film.vtt")
STAGES = ("image", "video", "narration")
STAGE_LABELS = {"image": "image", "video": "clip", "narration": "voice"}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
     b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
]


class Busy(ReelforgeError):
    """The session already has an action running in this server."""


# -- actions: one at a time per session, in a background thread ------------------------

class Actions:
    """Runs redo / use take / approve in background threads, one at a time per session,
    and remembers how the last one of each session ended."""

    def __init__(self, runner_factory: Callable[[], Any]):
        self.runner_factory = runner_factory
        self._lock = threading.Lock()
        self._running: dict[str, dict[str, Any]] = {}
        self._last: dict[str, dict[str, Any]] = {}

    def start(self, session_id: str, label: str, call: Callable[[Any], Any]) -> None:
        """Start ``call(runner)`` for ``session_id``; Busy if one is running for it."""
        with self._lock:
            running = self._running.get(session_id)
            if running is not None:
                raise Busy(f"session {session_id} is busy: {running['label']} is still running; "
                           f"wait for it to finish")
            entry = {"label": label, "started": time.time(), "runner": None}
            self._running[session_id] = entry
        thread = threading.Thread(target=self._run, args=(session_id, entry, call),
                                  name=f"reelforge-{session_id}", daemon=True)
        entry["thread"] = thread
        thread.start()

    def _run(self, session_id: str, entry: dict[str, Any], call: Callable[[Any], Any]) -> None:
        outcome: dict[str, Any] = {"label": entry["label"], "ok": False}
        try:
            runner = entry["runner"] = self.runner_factory()
            result = call(runner)
            status = getattr(result, "status", None)
            outcome["status"] = status
            if isinstance(result, VerifyReport):
                outcome.update(ok=result.ok, message=result.summary)
            elif status == COMPLETE:
                outcome.update(ok=True, message="done; the session is COMPLETE")
            elif status == AWAITING_REVIEW:
                outcome.update(ok=True, message="done; the session is AWAITING REVIEW")
            else:
                failed = "; ".join(getattr(result, "failed", ()) or ()) or "the session did not finish"
                outcome.update(message=f"{status}: {failed}")
        except SessionLockedError as exc:
            outcome["message"] = str(exc)
        except ReelforgeError as exc:
            outcome["message"] = str(exc)
        except Exception as exc:  # shown on the page; the traceback goes to the log
            log.exception("reelforge serve: %s of %s failed", entry["label"], session_id)
            outcome["message"] = f"unexpected error: {type(exc).__name__}: {exc}"
        finally:
            outcome["message"] = redact(outcome.get("message", ""))
            outcome["finished"] = time.time()
            with self._lock:
                self._last[session_id] = outcome
                self._running.pop(session_id, None)

    def status(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            running = self._running.get(session_id)
            last = self._last.get(session_id)
            return {"running": running["label"] if running else None,
                    "last": dict(last) if last else None}

    def busy(self) -> list[str]:
        with self._lock:
            return [f"{sid}: {e['label']}" for sid, e in self._running.items()]

    def shutdown(self, timeout: float = 60.0) -> list[str]:
        """Ask every running action to stop (the runner's cancel event; what finished is
        saved) and wait for them; returns those still running after ``timeout``."""
        with self._lock:
            entries = list(self._running.items())
        for _sid, entry in entries:
            runner = entry.get("runner")
            if runner is not None and getattr(runner, "cancel", None) is not None:
                runner.cancel.set()
        deadline = time.monotonic() + timeout
        for _sid, entry in entries:
            thread = entry.get("thread")
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        return self.busy()


# -- media: only files inside the session, never through a link --------------------------

_PROC_FD = "/proc/self/fd"


def file_response(path: Path, st: os.stat_result) -> Response:
    """Serve the checked file ``path`` (Starlette's FileResponse: ranges, ETag). Where the
    platform has /proc/self/fd, the file is opened here without following a link and must
    be the very file that was checked (device and inode); the response reads it through
    that descriptor, so a link swapped in after the check is never followed."""
    import mimetypes
    import weakref

    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.name.endswith(".vtt"):
        media_type = "text/vtt"
    headers = {"cache-control": "no-cache"}
    if not os.path.isdir(_PROC_FD):  # pragma: no cover - not Linux: the lstat check is all there is
        return FileResponse(str(path), stat_result=st, media_type=media_type, headers=headers)
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_BINARY)
    except OSError:
        raise HTTPException(404) from None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        raise HTTPException(404)
    response = FileResponse(f"{_PROC_FD}/{fd}", stat_result=opened, media_type=media_type, headers=headers)
    weakref.finalize(response, os.close, fd)  # once the response has been sent and dropped
    return response


#: Media that are text (the narration as subtitles): served with secrets masked.
SUBTITLE_SUFFIXES = {".vtt": "text/vtt", ".srt": "application/x-subrip"}
#: Larger subtitle files are not served (a film's cues are a few KB).
MAX_SUBTITLES = 8 << 20


def subtitle_response(session: Session, path: Path) -> Response:
    """A subtitle file, read without following a link, with the keys the environment holds
    for the backends masked (the lines are the narration an LLM wrote)."""
    from reelforge.engine.plugins import learn_secrets

    learn_secrets(session.meta)
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_BINARY)
    except OSError:
        raise HTTPException(404) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise HTTPException(404)
        data = fh.read(MAX_SUBTITLES + 1)
    if len(data) > MAX_SUBTITLES:
        raise HTTPException(404)
    text = redact(data.decode("utf-8", errors="replace"))
    return Response(text, media_type=SUBTITLE_SUFFIXES[path.suffix], headers={"cache-control": "no-cache"})


def media_file(session_path: Path, rel: str) -> tuple[Path, os.stat_result]:
    """The file ``rel`` names inside the session, checked: a stage folder's file (or one of
    its takes) or the film and its subtitles; no hidden or ``..`` part, no link on the
    way or at the end, a regular file. Anything else is a 404."""
    parts = rel.split("/")
    if rel in MEDIA_FILES:
        path = session_path / rel
    elif len(parts) >= 2 and parts[0] in MEDIA_FOLDERS and not any(p.startswith(".") for p in parts):
        try:
            path = contained(session_path, rel, under=MEDIA_FOLDERS)
        except SessionCorruptError:
            raise HTTPException(404) from None
    else:
        raise HTTPException(404)
    try:
        st = os.lstat(path)
    except OSError:
        raise HTTPException(404) from None
    if not stat.S_ISREG(st.st_mode):  # a link (never followed), a folder, a device...
        raise HTTPException(404)
    return path, st


# -- the app ----------------------------------------------------------------------------

def create_app(output_dir: str | os.PathLike, *, runner_factory: Callable[[], Any] | None = None,
               csrf_token: str | None = None, allowed_hosts: list[str] | None = None,
               poll_seconds: float = 1.0) -> Starlette:
    """The web app over the sessions in ``output_dir``. ``runner_factory()`` makes the
    Runner an action uses (default: ``Runner(output_dir)``, which runs a session with the
    backends it recorded). ``allowed_hosts``: the Host names requests may carry (default:
    this machine's loopback names; ``["*"]`` allows any)."""
    store = SessionStore(output_dir)
    if runner_factory is None:
        def runner_factory():
            from reelforge.engine.runner import Runner

            return Runner(output_dir)
    actions = Actions(runner_factory)
    token = csrf_token or secrets.token_urlsafe(32)

    def urls_for(sid: str | None = None) -> dict[str, str]:
        urls = {"home": "/", "css": "/static/style.css", "js": "/static/app.js"}
        if sid:
            base = f"/s/{sid}"
            urls.update(page=base, state=f"{base}/state.json", fragment=f"{base}/fragment",
                        redo=f"{base}/redo", use=f"{base}/use", approve=f"{base}/approve",
                        verify=f"{base}/verify")
        return urls

    def load(sid_text: str) -> Session:
        from reelforge.store.listing import resolve_session_id

        try:
            sid = resolve_session_id(store, sid_text)
            return store.load(sid)
        except SessionCorruptError as exc:
            raise HTTPException(500, redact(str(exc))) from None
        except SessionError as exc:
            raise HTTPException(404, redact(str(exc))) from None

    def data_of(session: Session) -> dict[str, Any]:
        def media(path: str | None, digest: str | None) -> str | None:
            url = relative_url(path, digest)
            return f"/s/{session.id}/media/{url}" if url else None

        data = session_data(session, media)
        data["action"] = actions.status(session.id)
        data["poll_seconds"] = poll_seconds
        data["active"] = bool(data["action"]["running"]) or data["status"] == IN_PROGRESS
        return data

    def context(data: dict[str, Any]) -> dict[str, Any]:
        return {"s": data, "live": True, "csrf": token, "urls": urls_for(data["id"]),
                "action": data["action"]}

    def html(name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("urls", urls_for())
        return HTMLResponse(render(name, **ctx), status_code=status_code,
                            headers={"cache-control": "no-store"})

    def message(title: str, text: str, status_code: int, back: str | None = None) -> HTMLResponse:
        return html("message.html", status_code, title=title, message=text, error=status_code >= 400, back=back)

    # -- pages
    def index(request: Request) -> Response:
        from reelforge.store import listing

        found = listing.newest_first(store)
        rows = []
        for entry in found:
            row = listing.session_summary(entry)
            if "error" not in row:
                row["url"] = urls_for(row["id"])["page"]
            else:
                row["error"] = redact(row["error"])
            rows.append(row)
        return html("index.html", sessions=rows, root=str(store.root))

    def sessions_json(request: Request) -> Response:
        from reelforge.store import listing

        found = listing.newest_first(store)
        return JSONResponse([listing.session_summary(e) for e in found], headers={"cache-control": "no-store"})

    def session_page(request: Request) -> Response:
        session = load(request.path_params["sid"])
        if session.id != request.path_params["sid"]:
            return RedirectResponse(urls_for(session.id)["page"], status_code=303)
        return html("session.html", **context(data_of(session)))

    def session_state(request: Request) -> Response:
        data = data_of(load(request.path_params["sid"]))
        if request.query_params.get("versions") == "1":  # what a polling page needs to see what changed
            data = {"id": data["id"], "status": data["status"], "version": data["version"],
                    "summary_version": data["summary_version"], "film": {"version": data["film"]["version"]},
                    "shots": [{"id": s["id"], "version": s["version"]} for s in data["shots"]],
                    "action": data["action"], "active": data["active"], "poll_seconds": data["poll_seconds"]}
        return JSONResponse(data, headers={"cache-control": "no-store"})

    def fragment(request: Request) -> Response:
        session = load(request.path_params["sid"])
        part = request.path_params["part"]
        data = data_of(session)
        ctx = context(data)
        if part == "summary":
            return html("_summary.html", **ctx)
        if part == "film":
            return html("_film.html", **ctx)
        if part == "shots":
            return html("_shots.html", **ctx)
        if part == "action":
            return html("_action.html", **ctx)
        if part.startswith("shot-") and part[5:].isascii() and part[5:].isdigit():
            shot = next((s for s in data["shots"] if s["id"] == int(part[5:])), None)
            if shot is not None:
                return html("_shot.html", shot=shot, **ctx)
        raise HTTPException(404)

    def media(request: Request) -> Response:
        session = load(request.path_params["sid"])
        path, st = media_file(session.path, request.path_params["path"])
        if path.suffix in SUBTITLE_SUFFIXES:
            return subtitle_response(session, path)
        return file_response(path, st)

    # -- actions
    async def act(request: Request, kind: str) -> Response:
        sid_text = request.path_params["sid"]
        wants_json = "application/json" in request.headers.get("accept", "")
        form = await request.form()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), token.encode()):
            return _refuse(wants_json, 403, "the form is stale or did not come from this page "
                                            "(missing or wrong CSRF token); reload the page and try again")
        if request.headers.get("sec-fetch-site") == "cross-site" or not _same_origin(request):
            return _refuse(wants_json, 403, "refused: the request came from another site")
        session = await run_in_threadpool(load, sid_text)
        sid = session.id
        try:
            label, call = _action(kind, form, session, store)
        except ValueError as exc:
            return _refuse(wants_json, 400, str(exc), back=urls_for(sid)["page"])
        try:
            actions.start(sid, label, call)
        except Busy as exc:
            return _refuse(wants_json, 409, str(exc), back=urls_for(sid)["page"])
        if wants_json:
            return JSONResponse({"ok": True, "message": f"{label}: started"}, status_code=202)
        return RedirectResponse(urls_for(sid)["page"], status_code=303)

    def _refuse(wants_json: bool, status_code: int, text: str, back: str | None = None) -> Response:
        if wants_json:
            return JSONResponse({"ok": False, "message": text}, status_code=status_code)
        return message("Not done", text, status_code, back=back)

    async def redo(request: Request) -> Response:
        return await act(request, "redo")

    async def use(request: Request) -> Response:
        return await act(request, "use")

    async def approve(request: Request) -> Response:
        return await act(request, "approve")

    async def verify(request: Request) -> Response:
        return await act(request, "verify")

    async def not_found(request: Request, exc: HTTPException) -> Response:
        text = exc.detail if exc.detail and exc.detail != "Not Found" else "There is nothing here."
        if request.url.path.endswith(".json") or "/media/" in request.url.path:
            return JSONResponse({"error": text}, status_code=exc.status_code)
        return message("Not found" if exc.status_code == 404 else "Error", text, exc.status_code, back="/")

    routes = [
        Route("/", index),
        Route("/sessions.json", sessions_json),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/s/{sid}", session_page),
        Route("/s/{sid}/state.json", session_state),
        Route("/s/{sid}/fragment/{part}", fragment),
        Route("/s/{sid}/media/{path:path}", media, methods=["GET", "HEAD"]),
        Route("/s/{sid}/redo", redo, methods=["POST"]),
        Route("/s/{sid}/use", use, methods=["POST"]),
        Route("/s/{sid}/approve", approve, methods=["POST"]),
        Route("/s/{sid}/verify", verify, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    hosts = allowed_hosts or list(LOCAL_HOSTS)
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
                                               Middleware(_SecurityHeaders)],
                    exception_handlers={HTTPException: not_found})
    app.state.actions = actions
    app.state.store = store
    app.state.csrf_token = token
    return app


def _action(kind: str, form, session: Session, store: SessionStore) -> tuple[str, Callable[[Any], Any]]:
    """(label, call(runner)) for a posted action; ValueError for a bad form."""
    sid = session.id
    if kind == "verify":  # reads every file: a background action like the others, never --repair
        return "verify", lambda runner: store.verify(sid)
    if kind == "approve":
        if session.meta.status != AWAITING_REVIEW:
            raise ValueError(f"session {sid} is not awaiting review (it is {session.meta.status})")
        return "approve", lambda runner: runner.approve(sid)
    shot_id = _int_field(form, "shot")
    if shot_id not in {s.id for s in session.meta.shots}:
        raise ValueError(f"session {sid} has no shot {shot_id}")
    stage = form.get("stage")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}")
    if kind == "redo":
        return (f"redo shot {shot_id} {STAGE_LABELS[stage]}",
                lambda runner: runner.redo(sid, shot_id, stage=stage))
    take = _int_field(form, "take")
    return (f"use take {take} of shot {shot_id} {STAGE_LABELS[stage]}",
            lambda runner: runner.use_take(sid, shot_id, stage, take))


def _int_field(form, name: str) -> int:
    value = form.get(name)
    # ASCII digits only: str.isdigit() and int() also take '٣' or '³', which no form sends.
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 9:
        raise ValueError(f"{name} must be a whole number (digits 0-9)")
    return int(value)


def _same_origin(request: Request) -> bool:
    """An Origin header, when the browser sends one, must be this server's own."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    host = request.headers.get("host", "")
    return urllib.parse.urlsplit(origin).netloc == host


class _SecurityHeaders:
    """Adds the security headers (CSP, nosniff, no framing, no referrer) to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in SECURITY_HEADERS if k not in names)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
