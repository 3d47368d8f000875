"""Bounded HTTP for backends: an overall deadline per request and a cap on body sizes.

httpx's timeouts apply to each network operation, so a server that answers one byte a
second never trips them (encode/httpx#1450 asks for a total timeout; there is none yet).
:func:`bounded_client` returns an ``httpx.Client`` whose network reads, writes and connects
are clamped to the deadline of the :func:`deadline` block the calling thread is in, headers
included; :func:`read_limited` reads a streamed body and stops as soon as it passes a cap,
before anything more is buffered.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

import httpx

MIB = 1024 * 1024

_local = threading.local()


class BodyTooLarge(Exception):
    """A response body is (or announces itself as) larger than the cap."""

    def __init__(self, limit: int, seen: int, *, announced: bool = False):
        self.limit = limit
        self.seen = seen
        self.announced = announced
        if announced:
            text = f"the answer announced {_size(seen)}, over the {_size(limit)} limit"
        else:
            text = f"the answer passed the {_size(limit)} limit; stopped reading it there"
        super().__init__(text)


def _size(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} bytes"


class Deadline:
    """One ``with deadline(seconds)`` block: ``expired`` says whether its time ran out."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + max(0.0, seconds)

    @property
    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end

    def left(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[Deadline]:
    """Every request (and body read) of a bounded client made by this thread inside the
    block must finish within ``seconds``; past it, the next network operation raises an
    httpx timeout. Nested blocks keep the earlier end."""
    current = Deadline(seconds)
    outer = getattr(_local, "deadline", None)
    if outer is not None and outer.end is not None and (current.end is None or outer.end < current.end):
        current.end = outer.end
    _local.deadline = current
    try:
        yield current
    finally:
        _local.deadline = outer


def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
    current = getattr(_local, "deadline", None)
    left = current.left() if current is not None else None
    if left is None:
        return timeout
    if left <= 0:
        raise error(f"the deadline of {current.seconds:g}s passed")
    return left if timeout is None else min(timeout, left)


def _wrap_backend(inner: Any) -> Any:
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, stream: Any):
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._stream.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context, server_hostname=None, timeout=None):
            return DeadlineStream(self._stream.start_tls(
                ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        def __init__(self, backend: Any):
            self._backend = backend

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            return DeadlineStream(self._backend.connect_tcp(
                host, port, _clamp(timeout, httpcore.ConnectTimeout), local_address, socket_options))

        def connect_unix_socket(self, path, timeout=None, socket_options=None):
            return DeadlineStream(self._backend.connect_unix_socket(
                path, _clamp(timeout, httpcore.ConnectTimeout), socket_options))

        def sleep(self, seconds: float) -> None:
            self._backend.sleep(seconds)

    return DeadlineBackend(inner)


def bounded_client(**kwargs: Any) -> httpx.Client:
    """An ``httpx.Client(**kwargs)`` that honours :func:`deadline` blocks.

    httpx builds its connection pools (the direct one and one per proxy from the
    environment) without a way to pass httpcore a network backend, so the pools' backend
    is wrapped after construction. Should a future httpx lay its pools out differently,
    this raises at once (the test suite says so) rather than silently losing deadlines."""
    client = httpx.Client(**kwargs)
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_network_backend"):
            client.close()
            raise RuntimeError(f"httpx {httpx.__version__}: cannot bound requests of "
                               f"{type(transport).__name__}; pin httpx<0.29 or update reelforge/http.py")
        pool._network_backend = _wrap_backend(pool._network_backend)
    return client


def read_limited(response: httpx.Response, limit: int | None) -> bytes:
    """The (decoded) body of a streamed response, refusing more than ``limit`` bytes: an
    announced Content-Length over the cap is refused before reading, a longer body as soon
    as the cap is passed (chunked answers included)."""
    announced = response.headers.get("content-length")
    if limit is not None and announced and announced.isdigit() and int(announced) > limit \
            and "content-encoding" not in response.headers:
        raise BodyTooLarge(limit, int(announced), announced=True)
    parts: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if limit is not None and total > limit:
            raise BodyTooLarge(limit, total)
        parts.append(chunk)
    return b"".join(parts)


def fetch(client: httpx.Client, method: str, url: str, *, limit: int | None,
          on_headers: Any = None, **kwargs: Any) -> httpx.Response:
    """``client.request(...)`` with the body read under ``limit``: the returned response is
    fully read (``.content``, ``.text``, ``.json()`` work). Call it inside a
    :func:`deadline` block to bound its time. ``on_headers()`` is called once the status
    line and headers have arrived (a timeout before it means the server said nothing)."""
    with client.stream(method, url, **kwargs) as streamed:
        if on_headers is not None:
            on_headers()
        body = read_limited(streamed, limit)
    # the body is decoded already: drop the headers that would make httpx decode it again
    headers = [(k, v) for k, v in streamed.headers.multi_items()
               if k.lower() not in ("content-encoding", "transfer-encoding", "content-length")]
    return httpx.Response(streamed.status_code, headers=headers, content=body,
                          request=streamed.request, extensions={
                              k: v for k, v in streamed.extensions.items() if k in ("http_version", "reason_phrase")})
