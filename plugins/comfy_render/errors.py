"""What can go wrong with a ComfyUI server, as typed errors: the one vocabulary the client,
the backend and the pool raise and catch.

ServerDown (no answer at all), RetryableServiceError (a transient status, a timeout),
NotComfyUI (something answers, but not ComfyUI's API: permanent), ComfyError (a refusal or
failure for good); ServerGone when a shot's deadline passed with no server answering.
"""

from __future__ import annotations

from typing import Any, Mapping

from reelforge.errors import RetryableServiceError, ServiceError
from reelforge.redact import redact


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


class ServersBusy(ServerUnavailable):
    """Every answering server's slots are held by renders of other workers (an engine with
    workers shares them, reelforge.protocols.Places): wait for one to free."""


class Cancelled(Exception):
    """The user cancelled (Ctrl-C) while we waited."""



def unreachable(base_url: str, exc: Exception, url: str) -> ServerDown:
    """The ServerDown for a connection that could not be made: refused, unknown host, other."""
    text = str(exc).lower()
    if "refused" in text:
        return ServerDown(f"ComfyUI at {base_url} refused the connection", reason=REFUSED, url=url)
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return ServerDown(f"ComfyUI at {base_url} cannot be reached (the host name does not resolve)",
                          reason=NO_SUCH_HOST, url=url)
    detail = redact(str(exc)[:200]) or type(exc).__name__
    return ServerDown(f"ComfyUI at {base_url} cannot be reached ({detail})", reason=REFUSED, url=url)
