"""The HTTP side of talking to one ComfyUI server: timeouts, size limits, the auth header,
and one request made once with its failure sorted into the errors of errors.py.

Transport owns the httpx client (bounded: reelforge.http) and knows nothing of prompts;
ComfyClient builds ComfyUI's calls on it. Nothing here retries: that is the backend's one
policy with a deadline (reelforge.engine.retry.deadline_retrying).
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

import attrs
import httpx

from reelforge.engine.retry import parse_retry_after
from reelforge.errors import RetryableServiceError
from reelforge.http import MIB, BodyTooLarge, bounded_client, deadline, fetch
from reelforge.plugins.comfy_render.errors import NOT_ANSWERING, ComfyError, NotComfyUI, ServerDown, unreachable
from reelforge.redact import redact

#: HTTP statuses worth another try: the server is busy, restarting or overloaded.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


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



class Transport:
    """The HTTP connection to one server: one request at a time, made once, its answer read
    within the limits. Thread-safe (httpx.Client is)."""

    def __init__(self, base_url: str, *, timeouts: Timeouts, limits: Limits, headers: Mapping[str, str]):
        self.base_url = base_url
        self.timeouts = timeouts
        self.limits = limits
        self.http = bounded_client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
            headers=dict(headers),
        )  # HTTP(S)_PROXY and NO_PROXY apply, as for any HTTP client

    def close(self) -> None:
        self.http.close()


    # -- plumbing ----------------------------------------------------------------------

    def send(self, method: str, path: str, *, request_timeout: float | None = None,
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
                resp = fetch(self.http, method, path, limit=self.limits.answer,
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
            raise unreachable(self.base_url, exc, url) from exc
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

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.send("GET", path, **kw)

    def json(self, resp: httpx.Response, what: str) -> Any:
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
