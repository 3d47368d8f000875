"""JSON over HTTP for the LLM backends: explicit timeouts, typed errors, per-request retries.

Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried here, per
request, with the reelforge's RetryPolicy; once the policy gives up the error is re-raised
as a plain (non-retryable) ServiceError, so the runner does not retry the whole stage on top
of it. A shot plan asked for in batches therefore never redoes the batches that succeeded.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping

import httpx

from reelforge.errors import RetryableServiceError, ServiceError
from reelforge.http import MIB, BodyTooLarge, bounded_client, deadline, fetch
from reelforge.redact import redact, redact_data
from reelforge.engine.retry import RetryPolicy, parse_retry_after  # noqa: F401  (re-exported)

log = logging.getLogger("reelforge.story_llm")

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def error_message(response: httpx.Response) -> tuple[str, str | None]:
    """The server's own words from an error response (at most 500 characters, secrets
    masked: a server may echo the API key), and its error code if it gave one.

    Understands OpenAI's ``{"error": {"message", "type", "code"}}``, Ollama's
    ``{"error": "..."}`` and FastAPI-style ``{"detail": ...}`` (vLLM), else the raw body."""
    message, code = _error_message(response)
    return redact(_cut(message)), (redact(_cut(code, 100)) if code is not None else None)


def _cut(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        text = response.text.strip()
        return (text[:500] or response.reason_phrase or f"HTTP {response.status_code}"), None
    if isinstance(body, dict):
        err = body.get("error", body.get("detail"))
        if isinstance(err, dict):
            message = err.get("message") or json.dumps(err)[:500]
            code = err.get("code") or err.get("type")
            return str(message), (str(code) if code is not None else None)
        if err is not None:
            return str(err)[:500], None
        if "message" in body:
            return str(body["message"])[:500], None
    return json.dumps(body)[:500], None


def preview(data: Any, limit: int = 200) -> str:
    """The start of a server's JSON answer for an error message, secrets masked."""
    try:
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    except (RecursionError, ValueError, TypeError):
        text = f"<{type(data).__name__}>"
    return redact(_cut(text, limit))


class BadRequest(ServiceError):
    """A 400 (or 422) answer: the request itself was refused (kept separate so the OpenAI backend
    can recognise a server that does not support ``json_schema``)."""

    def __init__(self, message: str, *, status_code: int | None = None, url: str | None = None,
                 body: str = "", server_message: str = ""):
        super().__init__(message, status_code=status_code, url=url)
        self.body = body
        "The response body as text (the server's message, error type, code and param)."
        self.server_message = server_message
        "Just the server's own message."


class JSONClient:
    """POSTs JSON to one server and returns the decoded JSON answer.

    ``label`` names the server in error messages ("OpenAI-compatible server at ...").
    Headers are never logged nor put into error messages (they may hold an API key).
    """

    def __init__(self, base_url: str, *, label: str, timeout: float,
                 headers: Mapping[str, str] | None = None, policy: RetryPolicy | None = None,
                 max_answer: int = 8 * MIB):
        self.base_url = base_url.rstrip("/")
        self.label = label
        self.policy = policy or RetryPolicy.from_env()
        self.timeout = timeout
        "Overall deadline of one request, the answer's body included."
        self.max_answer = max_answer
        "Largest answer read, in bytes; checked while it streams in."
        self._client = bounded_client(
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        )

    def close(self) -> None:
        self._client.close()

    def post(self, path: str, payload: dict[str, Any], *,
             refused: Callable[[int, str], bool] | None = None) -> dict[str, Any]:
        """POST ``payload`` and return the JSON answer. ``refused(status, body)`` may mark an
        error answer as a refusal of the request (raised as BadRequest, never retried) even
        when its status says otherwise (old llama.cpp servers answer 500 to an unsupported
        ``response_format``)."""
        url = f"{self.base_url}{path}"
        retrying = self.policy.retrying()
        try:
            for attempt in retrying:
                with attempt:
                    return self._post_once(url, payload, refused)
        except RetryableServiceError as exc:
            attempts = retrying.statistics.get("attempt_number", self.policy.attempts)
            raise ServiceError(
                f"{exc} (gave up after {attempts} attempt{'s' if attempts != 1 else ''}; "
                f"run `reelforge resume` to try this stage again)",
                status_code=exc.status_code, url=exc.url,
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, *, timeout: float | None = None) -> tuple[int, Any, str]:
        """One GET, made once (a pre-flight look, not work): (status, decoded JSON or None
        when the body is not JSON, the server's own words for an error answer). A server
        that cannot be reached raises ServiceError."""
        url = f"{self.base_url}{path}"
        limit = min(self.timeout, timeout) if timeout is not None else self.timeout
        try:
            with deadline(limit):
                response = fetch(self._client, "GET", url, limit=self.max_answer,
                                 timeout=httpx.Timeout(limit, connect=min(5.0, limit)))
        except BodyTooLarge as exc:
            raise ServiceError(f"{self.label} at {self.base_url}: refusing its answer to GET {path}: "
                               f"{exc}", url=url) from exc
        except httpx.TimeoutException as exc:
            raise ServiceError(f"{self.label} at {self.base_url} did not answer GET {path} within "
                               f"{limit:g}s ({type(exc).__name__})", url=url) from exc
        except httpx.TransportError as exc:
            raise ServiceError(redact(
                f"could not reach {self.label} at {self.base_url}: {exc or type(exc).__name__}; "
                f"is it running and is base_url right?"), url=url) from exc
        status = response.status_code
        words = error_message(response)[0] if status >= 400 else ""
        try:
            data = response.json()
        except (ValueError, RecursionError):
            data = None
        return status, data, words

    def _post_once(self, url: str, payload: dict[str, Any],
                   refused: Callable[[int, str], bool] | None) -> dict[str, Any]:
        log.debug("POST %s", url)
        try:
            with deadline(self.timeout):
                response = fetch(self._client, "POST", url, json=payload, limit=self.max_answer)
        except BodyTooLarge as exc:
            raise ServiceError(
                f"{self.label} at {self.base_url}: refusing its answer: {exc}; raise the "
                f"max_answer_mib option if such answers are expected", url=url) from exc
        except httpx.TimeoutException as exc:
            raise RetryableServiceError(
                f"{self.label} at {self.base_url} did not answer within {self.timeout:g}s "
                f"({type(exc).__name__}); raise the `timeout` option if the model is slow",
                url=url) from exc
        except httpx.TransportError as exc:
            raise RetryableServiceError(redact(
                f"could not reach {self.label} at {self.base_url}: {exc or type(exc).__name__}; "
                f"is it running and is base_url right?"), url=url) from exc
        status = response.status_code
        if status >= 400:
            message, code = error_message(response)
            text = f"{self.label} at {self.base_url} answered {status}: {message}"
            if status in (400, 422) or (refused is not None and refused(status, response.text)):
                raise BadRequest(text, status_code=status, url=url, body=redact(response.text[:20000]),
                                 server_message=message)
            # OpenAI answers 429 both for rate limits (wait and retry) and for an exhausted
            # quota (retrying cannot help).
            if status in RETRYABLE_STATUS and code != "insufficient_quota":
                log.debug("%s answered %s, will retry if attempts remain", url, status)
                raise RetryableServiceError(text, status_code=status, url=url,
                                            retry_after=parse_retry_after(response.headers))
            if status in (401, 403):
                text += "; check the API key and the environment variable the backend reads it from"
            elif status == 404:
                text += "; check base_url and the model name"
            raise ServiceError(text, status_code=status, url=url)
        try:
            data = response.json()
        except ValueError as exc:
            raise RetryableServiceError(redact(
                f"{self.label} at {self.base_url} answered {status} with a body that is not JSON: "
                f"{response.text[:200]!r}"), status_code=status, url=url) from exc
        except RecursionError:
            raise ServiceError(f"{self.label} at {self.base_url} answered with JSON nested too "
                               f"deeply to read", status_code=status, url=url) from None
        if not isinstance(data, dict):
            raise ServiceError(f"{self.label} at {self.base_url} answered with JSON that is not an "
                               f"object: {preview(data)}", status_code=status, url=url)
        # The one door every LLM answer comes in by: a server (or a model) that echoes the API
        # key in a 200 answer must not get it into a story, a checkpoint, a log or a page, so
        # secrets are masked here, before the answer is read, checked or saved.
        return redact_data(data)
