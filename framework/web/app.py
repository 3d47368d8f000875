"""The `reelforge serve` web app (Starlette): the sessions, a live page per session, and
buttons for redo, use take and approve that call the Runner in a background thread.

Sessions are only read here (:meth:`SessionStore.load`, read-only); what changes a
session is the Runner, as on the command line, one action at a time per session. (The one
file written here is the film's poster, a cache no record names: reelforge.web.poster.) Media
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
import urllib.parse
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from reelforge.errors import SessionCorruptError, SessionError
from reelforge.redact import redact
from reelforge.store.meta import IN_PROGRESS
from reelforge.store.session import Session
from reelforge.store.sessions import SessionStore
from reelforge.web.actions import STAGE_LABELS, STAGES, Actions, Busy  # noqa: F401  (the app's names)
from reelforge.web.follow import Followed
from reelforge.web.media import (  # noqa: F401  (file_response, media_file: imported from here too)
    MEDIA_FILES,
    MEDIA_FOLDERS,
    SUBTITLE_SUFFIXES,
    file_response,
    media_file,
    subtitle_response,
)
from reelforge.web.report import relative_url, render

log = logging.getLogger("reelforge.web")

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
     b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
]


def create_app(output_dir: str | os.PathLike, *, runner_factory: Callable[..., Any] | None = None,
               csrf_token: str | None = None, allowed_hosts: list[str] | None = None,
               poll_seconds: float = 1.0) -> Starlette:
    """The web app over the sessions in ``output_dir``. ``runner_factory(**settings)``
    makes the Runner an action uses (default: ``Runner(output_dir, **settings)``, which runs
    a session with the backends it recorded; a new film passes its choices as settings).
    ``allowed_hosts``: the Host names requests may carry (default: this machine's loopback
    names; ``["*"]`` allows any)."""
    from reelforge.web import actions as forms
    from reelforge.web.live import holder_of, stamp, working_step

    store = SessionStore(output_dir)
    if runner_factory is None:
        def runner_factory(**settings):
            from reelforge.engine.runner import Runner

            return Runner(output_dir, **settings)
    actions = Actions(runner_factory)
    token = csrf_token or secrets.token_urlsafe(32)
    cache: dict[str, tuple[str, dict[str, Any]]] = {}  # session id -> (stamp, its data)

    def media_for(sid: str) -> Callable[[str | None, str | None], str | None]:
        def media(path: str | None, digest: str | None) -> str | None:
            url = relative_url(path, digest)
            return f"/s/{sid}/media/{url}" if url else None
        return media

    followed = Followed(store, media_for)  # each session as last read

    def urls_for(sid: str | None = None) -> dict[str, str]:
        urls = {"home": "/", "css": "/static/style.css", "js": "/static/app.js", "new": "/new"}
        if sid:
            base = f"/s/{sid}"
            urls.update(page=base, state=f"{base}/state.json", fragment=f"{base}/fragment",
                        redo=f"{base}/redo", use=f"{base}/use", approve=f"{base}/approve",
                        verify=f"{base}/verify", edit=f"{base}/edit", resume=f"{base}/resume",
                        cast_redo=f"{base}/cast_redo", cast_set=f"{base}/cast_set",
                        bundle=f"{base}/download/bundle.zip", prompts=f"{base}/download/prompts")
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

    def resolve(sid_text: str) -> str:
        from reelforge.store.listing import resolve_session_id

        try:
            return resolve_session_id(store, sid_text)
        except SessionError as exc:
            raise HTTPException(404, redact(str(exc))) from None

    def live(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        """The parts of a session's data that change without its files changing: this
        server's action, the lock holder, the step at work."""
        action = actions.status(sid)
        holder = holder_of(store.path_for(sid), running_here=actions.running(sid))
        working = working_step(data["steps"], data["status"], holder is not None)
        out = {"action": action, "holder": holder, "working": working, "poll_seconds": poll_seconds,
               "active": bool(action["running"]) or data["status"] == IN_PROGRESS or holder is not None,
               "locked": holder is not None or bool(action["running"])}
        out["live_version"] = _digest(action, holder and holder["text"], working)
        # what the summary and the film parts show depends on the live parts too
        out["summary_key"] = _digest(data["summary_version"], working, holder and holder["text"], out["locked"])
        out["film_key"] = _digest(data["film"]["version"], working)
        return out

    def read_data(sid: str) -> dict[str, Any]:
        """The session's data from what changed since it was last read (see web.follow)."""
        try:
            return followed.data(sid)
        except SessionCorruptError as exc:
            raise HTTPException(500, redact(str(exc))) from None
        except SessionError as exc:
            raise HTTPException(404, redact(str(exc))) from None

    def data_for(sid: str) -> dict[str, Any]:
        """The session's data, read again only when its files changed since the last read."""
        folder = store.path_for(sid)
        now = stamp(folder, f"{sid}_meta.json")
        hit = cache.get(sid)
        if hit is not None and hit[0] == now:
            data = hit[1]
        else:
            data = read_data(sid)
            first = next((s for s in data["shots"] if s["stages"].get("image", {}).get("url")), None)
            data["film"]["first_image"] = first["stages"]["image"]["url"] if first else None
            # a frame of the film itself (made once per film, on its first request), else the first picture
            sha = data["film"].get("sha256")
            data["film"]["poster"] = (f"/s/{sid}/poster.jpg?v={sha[:16]}" if data["film"]["url"] and sha
                                      else data["film"]["first_image"])
            cache[sid] = (now, data)
            if len(cache) > 64:
                cache.pop(next(iter(cache)))
        return {**data, **live(sid, data)}

    def context(data: dict[str, Any]) -> dict[str, Any]:
        return {"s": data, "live": True, "csrf": token, "urls": urls_for(data["id"]),
                "action": data["action"], "holder": data["holder"], "locked": data["locked"]}

    def html(name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("urls", urls_for())
        return HTMLResponse(render(name, **ctx), status_code=status_code,
                            headers={"cache-control": "no-store"})

    def message(title: str, text: str, status_code: int, back: str | None = None) -> HTMLResponse:
        return html("message.html", status_code, title=title, message=text, error=status_code >= 400, back=back)

    def backend_names() -> dict[str, list[str]]:
        from reelforge.engine.backends import DEFAULT_BACKENDS, OPTIONAL_KINDS
        from reelforge.engine.plugins import KINDS, backends, load_plugins

        load_plugins()  # once per process: before any run has loaded them, the form would offer none
        names = {}
        for kind in KINDS:
            try:
                found = sorted(backends(kind))
            except Exception:  # a kind no plugin registers
                found = []
            if kind in OPTIONAL_KINDS:
                found.append("none")
            default = DEFAULT_BACKENDS.get(kind)
            if default in found:  # the default first: what the form sends untouched
                found.remove(default)
                found.insert(0, default)
            names[kind] = found
        return names

    # -- pages
    def index(request: Request) -> Response:
        from reelforge.engine.plugins import KINDS
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
        kinds = {kind: label for kind, (_hook, label) in KINDS.items()}
        return html("index.html", sessions=rows, root=str(store.root), csrf=token, backends=backend_names(),
                    kinds=kinds, transitions=forms.TRANSITIONS, subtitles=forms.SUBTITLES)

    def sessions_json(request: Request) -> Response:
        from reelforge.store import listing

        found = listing.newest_first(store)
        return JSONResponse([listing.session_summary(e) for e in found], headers={"cache-control": "no-store"})

    def session_page(request: Request) -> Response:
        sid = resolve(request.path_params["sid"])
        if sid != request.path_params["sid"]:
            return RedirectResponse(urls_for(sid)["page"], status_code=303)
        return html("session.html", **context(data_for(sid)))

    def session_state(request: Request) -> Response:
        """The session as JSON. ``?since=VERSION`` (the version of the last answer): only
        what changed since — ``{"unchanged": true}`` and the live parts when nothing did, a
        shot's full data only if it changed (the others as id and version)."""
        sid = resolve(request.path_params["sid"])
        hit = cache.get(sid)
        before = hit[1] if hit else None
        data = data_for(sid)
        version = _digest(data["version"], data["live_version"])
        headers = {"cache-control": "no-store"}
        live_part = {k: data[k] for k in ("action", "holder", "working", "active", "locked", "poll_seconds",
                                          "summary_key", "film_key")}
        since = request.query_params.get("since")
        brief = request.query_params.get("versions") == "1"
        if since is not None and since == version:
            return JSONResponse({"id": sid, "version": version, "unchanged": True, **live_part}, headers=headers)
        if brief or since is not None:
            out = {"id": sid, "status": data["status"], "version": version, "session_version": data["version"],
                   "summary_version": data["summary_version"], "film": {"version": data["film"]["version"]},
                   "shots": [{"id": s["id"], "version": s["version"]} for s in data["shots"]],
                   "steps": data["steps"], **live_part}
            if since is not None and before is not None and cache.get(sid, (None, before))[1] is not before:
                old = {s["id"]: s["version"] for s in before["shots"]}
                out["changed"] = [s for s in data["shots"] if old.get(s["id"]) != s["version"]]
            return JSONResponse(out, headers=headers)
        return JSONResponse({**data, "version": version, "session_version": data["version"]}, headers=headers)

    def fragment(request: Request) -> Response:
        part = request.path_params["part"]
        data = data_for(resolve(request.path_params["sid"]))
        ctx = context(data)
        if part in ("summary", "film", "shots", "action"):
            return html(f"_{part}.html", **ctx)
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

    async def poster(request: Request) -> Response:
        """The film's poster: a frame of film.mp4 (reelforge.web.poster, made once per film);
        the first shot's picture when there is no film or no frame can be taken."""
        from reelforge.store.meta import DONE
        from reelforge.web.poster import PosterError, film_poster

        session = await run_in_threadpool(load, request.path_params["sid"])
        film = session.meta.film
        try:
            if film.state != DONE or not film.sha256:
                raise PosterError("no film yet")
            path = await run_in_threadpool(film_poster, session.path, film.sha256)
            return file_response(path, os.lstat(path))
        except (PosterError, OSError) as exc:
            fallback = data_for(session.id)["film"].get("first_image")
            if fallback is None:
                raise HTTPException(404, f"no poster: {exc}") from None
            return RedirectResponse(fallback, status_code=307, headers={"cache-control": "no-store"})

    # -- downloads
    async def bundle(request: Request) -> Response:
        from reelforge.web.downloads import bundle_folder, zip_stream
        from reelforge.web.export import ExportError

        session = await run_in_threadpool(load, request.path_params["sid"])
        try:
            work = await run_in_threadpool(bundle_folder, session)
        except ExportError as exc:
            return message("Not exported", redact(str(exc)), 409, back=urls_for(session.id)["page"])
        return StreamingResponse(zip_stream(work, session.id), media_type="application/zip", headers={
            "content-disposition": f'attachment; filename="{session.id}.zip"', "cache-control": "no-store"})

    def prompts(request: Request) -> Response:
        from reelforge.web.downloads import PROMPT_FORMATS, prompts_text
        from reelforge.web.export import ExportError

        fmt = request.path_params["fmt"]
        if fmt not in PROMPT_FORMATS:
            raise HTTPException(404)
        session = load(request.path_params["sid"])
        try:
            text = prompts_text(session, fmt)
        except ExportError as exc:
            return message("Not exported", redact(str(exc)), 409, back=urls_for(session.id)["page"])
        return Response(text, media_type=PROMPT_FORMATS[fmt], headers={
            "content-disposition": f'attachment; filename="{session.id}_prompts.{fmt}"',
            "cache-control": "no-store"})

    # -- actions
    async def checked_form(request: Request) -> tuple[Any, bool, Response | None]:
        wants_json = "application/json" in request.headers.get("accept", "")
        form = await request.form()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), token.encode()):
            return form, wants_json, _refuse(wants_json, 403, "the form is stale or did not come from this page "
                                                              "(missing or wrong CSRF token); reload the page and try again")
        if request.headers.get("sec-fetch-site") == "cross-site" or not _same_origin(request):
            return form, wants_json, _refuse(wants_json, 403, "refused: the request came from another site")
        return form, wants_json, None

    def held_elsewhere(sid: str) -> str | None:
        """Why ``sid`` cannot be changed now (another process holds its lock), or None."""
        holder = holder_of(store.path_for(sid), running_here=actions.running(sid))
        if holder is not None and not holder["this_process"]:
            return (f"session {sid} is being run by {holder['text']}; its buttons come back when "
                    f"that process is done")
        return None

    async def act(request: Request, kind: str) -> Response:
        form, wants_json, refused = await checked_form(request)
        if refused is not None:
            return refused
        session = await run_in_threadpool(load, request.path_params["sid"])
        sid = session.id
        back = urls_for(sid)["page"]
        try:
            label, call, note = forms.shot_action(kind, form, session, store)
        except ValueError as exc:
            return _refuse(wants_json, 400, str(exc), back=back)
        held = held_elsewhere(sid)
        if held:
            return _refuse(wants_json, 409, held, back=back)
        try:
            actions.start(sid, label, call, note=note)
        except Busy as exc:
            return _refuse(wants_json, 409, str(exc), back=back)
        if wants_json:
            return JSONResponse({"ok": True, "message": f"{label}: started"}, status_code=202)
        return RedirectResponse(back, status_code=303)

    async def edit(request: Request) -> Response:
        """Change a shot's prompts, narration or look in shots.json (under the session's
        lock, at once); with ``remake`` (the form's default) the session then runs on in
        the background and remakes only what the change reaches."""
        from reelforge.engine.edits import edit_shot, saved_plan
        from reelforge.errors import ConfigError, SessionLockedError

        form, wants_json, refused = await checked_form(request)
        if refused is not None:
            return refused
        session = await run_in_threadpool(load, request.path_params["sid"])
        sid = session.id
        back = urls_for(sid)["page"]
        try:
            shot_id, changes = forms.edit_changes(form, session)
        except ValueError as exc:
            return _refuse(wants_json, 400, str(exc), back=back)
        held = held_elsewhere(sid)
        if held:
            return _refuse(wants_json, 409, held, back=back)
        if actions.running(sid):
            return _refuse(wants_json, 409, f"session {sid} is busy: {actions.status(sid)['running']} is "
                                            f"still running; wait for it to finish", back=back)

        def save() -> None:
            with store.open(sid) as opened:
                edit_shot(opened, saved_plan(opened), shot_id, changes)

        try:
            await run_in_threadpool(save)
        except SessionLockedError as exc:
            return _refuse(wants_json, 409, redact(str(exc)), back=back)
        except (ConfigError, SessionError) as exc:
            return _refuse(wants_json, 400, redact(str(exc)), back=back)
        text = f"shot {shot_id}: changed {', '.join(sorted(changes))}"
        if form.get("remake", "1") == "1":
            try:
                actions.start(sid, f"remake after editing shot {shot_id}", lambda runner: runner.resume(sid))
                text += "; remaking what it changes"
            except Busy as exc:
                text += f"; not remade: {exc}"
        if wants_json:
            return JSONResponse({"ok": True, "message": text, "changed": sorted(changes)}, status_code=202)
        return RedirectResponse(back, status_code=303)

    async def new_film(request: Request) -> Response:
        form, wants_json, refused = await checked_form(request)
        if refused is not None:
            return refused
        try:
            idea, settings = forms.new_film_settings(form, backend_names())
        except ValueError as exc:
            return _refuse(wants_json, 400, str(exc), back="/")
        job = actions.start_new(idea, settings)
        if wants_json:
            return JSONResponse({"ok": True, "message": "new film: started", "job": f"/new/{job}.json"},
                                status_code=202)
        return RedirectResponse("/", status_code=303)

    def new_job(request: Request) -> Response:
        info = actions.job(request.path_params["job"])
        if info is None:
            raise HTTPException(404, "no such new film here")
        if info["session"]:
            info["url"] = urls_for(info["session"])["page"]
        return JSONResponse(info, headers={"cache-control": "no-store"})

    def _refuse(wants_json: bool, status_code: int, text: str, back: str | None = None) -> Response:
        if wants_json:
            return JSONResponse({"ok": False, "message": text}, status_code=status_code)
        return message("Not done", text, status_code, back=back)

    def posting(kind: str):
        async def endpoint(request: Request) -> Response:
            return await act(request, kind)
        return endpoint

    async def not_found(request: Request, exc: HTTPException) -> Response:
        text = exc.detail if exc.detail and exc.detail != "Not Found" else "There is nothing here."
        if request.url.path.endswith(".json") or "/media/" in request.url.path:
            return JSONResponse({"error": text}, status_code=exc.status_code)
        return message("Not found" if exc.status_code == 404 else "Error", text, exc.status_code, back="/")

    routes = [
        Route("/", index),
        Route("/sessions.json", sessions_json),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/new", new_film, methods=["POST"]),
        Route("/new/{job}.json", new_job),
        Route("/s/{sid}", session_page),
        Route("/s/{sid}/state.json", session_state),
        Route("/s/{sid}/fragment/{part}", fragment),
        Route("/s/{sid}/media/{path:path}", media, methods=["GET", "HEAD"]),
        Route("/s/{sid}/poster.jpg", poster, methods=["GET", "HEAD"]),
        Route("/s/{sid}/download/bundle.zip", bundle),
        Route("/s/{sid}/download/prompts.{fmt}", prompts),
        Route("/s/{sid}/edit", edit, methods=["POST"]),
        *[Route(f"/s/{{sid}}/{kind}", posting(kind), methods=["POST"])
          for kind in ("redo", "use", "approve", "verify", "resume", "cast_redo", "cast_set")],
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    hosts = allowed_hosts or list(LOCAL_HOSTS)
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
                                               Middleware(_SecurityHeaders)],
                    exception_handlers={HTTPException: not_found})
    app.state.actions = actions
    app.state.store = store
    app.state.csrf_token = token
    app.state.followed = followed  # the sessions as last read (what a poll after a change reads on from)
    return app


def _digest(*parts: Any) -> str:
    import hashlib
    import json

    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
