"""The ComfyUI servers of a run, shared by the image and video backends: which are up,
how much work each has queued (in expected seconds, not in prompts), and where the next
prompt should go.

One :class:`ServerPool` per server set, process-wide (:func:`shared_pool`), so the image
generator and the renderer, when they use the same servers, see each other's work. Each
server's state lives in a per-URL registry, so two different sets that share a server
share what is known of it too.

Work is weighed by expected seconds: a running average of what the servers themselves
report as execution time (history timestamps, or the job API's times), per stage and
template, per unit of work (a frame for a clip, one for a still). A prompt not seen before
is estimated from the others' per-node average; with nothing measured yet, by its node
count. A server's backlog is what this process has queued there (the running prompt less
the time it has run) plus what others have queued (the rest of its queue, at the mean
estimate); the next prompt goes where the backlog ends soonest.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Callable, Iterable
from urllib.parse import urlsplit

import attrs

from reelforge.errors import RetryableServiceError
from reelforge.plugins.comfy_render.errors import ServerDown, ServersBusy, ServerUnavailable

if TYPE_CHECKING:
    from reelforge.plugins.comfy_render.client import ComfyClient

log = logging.getLogger("reelforge.comfyui")

#: How many recent prompts a running average follows (older ones fade out).
AVERAGE_OVER = 20
#: A server's queue depth (GET /prompt) is asked again after this many seconds; in between,
#: picks use the last answer and this process's own submissions since. Concurrent shots then
#: pick in microseconds, not one round of requests each, and see each other's picks.
DEPTH_TTL = 1.0


def normalise_url(url: str) -> str:
    """``HTTP://Host:8188/`` -> ``http://host:8188``: one spelling per server."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


@attrs.define(eq=False)
class Ticket:
    """One prompt of this process on a server, from the pick until it is finished or given up."""

    url: str
    key: str
    "Stage and template, e.g. 'video:video-basic': whose running average it feeds."
    units: float
    "Frames of a clip, 1 for a still."
    expected: float
    "Seconds it is expected to take on the server."
    submitted: bool = False
    "POST /prompt was answered: the server's queue counts it."
    running_since: float | None = None
    "When the server started executing it (monotonic), once known."
    _pool: "ServerPool | None" = attrs.field(default=None, repr=False)
    _release: Callable[[], None] | None = attrs.field(default=None, repr=False)
    "Frees the server slot held for it in a store shared by workers (reelforge.protocols.Places)."

    def remaining(self, now: float) -> float:
        if self.running_since is None:
            return self.expected
        return max(0.1 * self.expected, self.expected - (now - self.running_since))

    def submit(self) -> None:
        self.submitted = True

    def started(self) -> None:
        if self.running_since is None:
            self.running_since = time.monotonic()

    def finish(self) -> None:
        """The prompt is done, or given up: it no longer counts in its server's backlog."""
        if self._pool is not None:
            self._pool._finish(self)
            self._pool = None
        release, self._release = self._release, None
        if release is not None:
            release()


@attrs.define
class _Server:
    url: str
    down_since: float | None = None
    "When it stopped answering (monotonic); None while it answers."
    retry_at: float = 0.0
    "A down server is not asked again before this (unless every server is down)."
    reason: str = ""
    down_at: float = 0.0
    "When it was marked down (wall clock, for messages: 'down since 12:03:04')."
    tickets: list[Ticket] = attrs.Factory(list)
    depth: int = 0
    "Prompts in its queue at the last look (ours included)."
    ours_then: int = 0
    "How many of those were ours."
    looked_at: float = float("-inf")
    users: int = 0
    "Backends open on it now: what it told them (see facts) is kept while one is."
    facts: dict = attrs.Factory(dict)
    """What a check found, kept for the run: 'system' (the /system_stats answer), 'jobs_api',
    and 'nodes' (node class -> present). Forgotten when it goes down or its last user closes."""


@attrs.define
class _Average:
    value: float = 0.0
    count: int = 0
    nodes: int = 1

    def add(self, x: float) -> None:
        self.count += 1
        self.value += (x - self.value) / min(self.count, AVERAGE_OVER)


_lock = threading.RLock()
_servers: dict[str, _Server] = {}
_averages: dict[str, _Average] = {}
_pools: "weakref.WeakValueDictionary[tuple[str, ...], ServerPool]" = weakref.WeakValueDictionary()


def shared_pool(urls: Iterable[str], *, down_for: float = 60.0, grace: float = 180.0) -> "ServerPool":
    """The process's pool for this set of servers (in any order, any spelling)."""
    key = tuple(sorted({normalise_url(u) for u in urls}))
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ServerPool(tuple(normalise_url(u) for u in urls), down_for=down_for, grace=grace)
            _pools[key] = pool
        else:
            pool.down_for = min(pool.down_for, down_for)
            pool.grace = max(pool.grace, grace)
        return pool


def reset_shared_state() -> None:
    """Forget every server's state and every average (tests: ports get reused)."""
    with _lock:
        _servers.clear()
        _averages.clear()
        _pools.clear()


class ServerPool:
    """Health, load and picking over one set of servers (see the module docstring)."""

    def __init__(self, urls: tuple[str, ...], *, down_for: float = 60.0, grace: float = 180.0):
        self.urls = tuple(dict.fromkeys(normalise_url(u) for u in urls))
        self.down_for = down_for
        self.grace = grace
        "server_grace_s: how long a shot waits for a server to come back (said when one goes down)."
        with _lock:
            self._servers = {u: _servers.setdefault(u, _Server(u)) for u in self.urls}

    # -- what a check found, kept for the run --------------------------------------------

    def open(self) -> None:
        """A backend of this set starts: what the servers' checks find is kept until the
        last backend using them closes (a run's image and video backends, and the
        pre-flight check before it, then ask each server once)."""
        with _lock:
            for server in self._servers.values():
                server.users += 1

    def close(self) -> None:
        with _lock:
            for server in self._servers.values():
                server.users = max(0, server.users - 1)
                if not server.users:
                    server.facts = {}

    def facts(self, url: str) -> dict:
        """The checks' findings on ``url`` for this run (a dict the caller may fill in)."""
        return self._server(url).facts

    # -- health ------------------------------------------------------------------------

    def mark_down(self, url: str, reason: str = "", *, grace: float | None = None) -> None:
        """No answer from ``url``: skipped for down_for seconds. Said once per outage, with
        how long a shot waits for it (``grace``, default the pool's server_grace_s)."""
        server = self._server(url)
        with _lock:
            now = time.monotonic()
            first = server.down_since is None
            if first:
                server.down_since = now
                server.down_at = time.time()
                server.reason = reason
            server.retry_at = now + self.down_for
            server.facts = {}  # a server that comes back may be another version: check it again
        if first:
            others = [u for u in self.urls if u != server.url and not self.is_down(u)]
            wait = self.grace if grace is None else grace
            then = (f"its shots go to {', '.join(others)}" if others else
                    f"waiting up to {wait:g} s for it to come back (server_grace_s)")
            log.warning("ComfyUI at %s is down%s; %s", server.url, f" ({reason})" if reason else "", then)

    def down_cause(self, url: str) -> str | None:
        """``ComfyUI at URL down since 12:03:04 (refused the connection)``, or None while it
        answers: the same words for every shot the outage fails, so they are said once."""
        server = self._server(url)
        if server.down_since is None:
            return None
        since = time.strftime("%H:%M:%S", time.localtime(server.down_at))
        return f"ComfyUI at {server.url} down since {since}" + (f" ({server.reason})" if server.reason else "")

    def down_reason(self, url: str) -> str:
        return self._server(url).reason

    def mark_up(self, url: str) -> None:
        """``url`` answered. Said once when it comes back."""
        server = self._server(url)
        with _lock:
            was = server.down_since
            server.down_since = None
            server.retry_at = 0.0
        if was is not None:
            log.warning("ComfyUI at %s is answering again (it was down for %.0fs)", server.url,
                        time.monotonic() - was)

    def is_down(self, url: str) -> bool:
        """Down and not due for another look."""
        server = self._server(url)
        return server.down_since is not None and server.retry_at > time.monotonic()

    def was_down(self, url: str) -> bool:
        """Down at its last look (whether or not it is due for another)."""
        return self._server(url).down_since is not None

    def all_down_for(self) -> float | None:
        """Seconds every server of the set has been down, or None while one answers."""
        with _lock:
            since = [s.down_since for s in self._servers.values()]
        if any(s is None for s in since):
            return None
        return time.monotonic() - max(since)

    def any_other_up(self, url: str, exclude: Iterable[str] = ()) -> bool:
        skip = {normalise_url(u) for u in exclude} | {normalise_url(url)}
        return any(u not in skip and not self.was_down(u) for u in self.urls)

    # -- load --------------------------------------------------------------------------

    def estimate(self, key: str, units: float = 1.0, nodes: int = 1) -> float:
        """Expected seconds of a prompt of ``key``: its running average per unit, else the
        per-node average of the others times its nodes, else its node count."""
        with _lock:
            avg = _averages.get(key)
            if avg is not None and avg.count:
                return avg.value * units
            known = [a for a in _averages.values() if a.count]
            per_node = (sum(a.value / max(1, a.nodes) for a in known) / len(known)) if known else 1.0
        return per_node * max(1, nodes) * units

    def record(self, key: str, seconds: float, units: float = 1.0, nodes: int = 1) -> None:
        if seconds is None or not seconds >= 0 or units <= 0:
            return
        with _lock:
            avg = _averages.setdefault(key, _Average(nodes=max(1, nodes)))
            avg.add(seconds / units)

    def backlog(self, url: str) -> float:
        """Expected seconds until ``url`` is through its queue: this process's prompts there
        (the running one less the time it has run) plus others' prompts (its queue depth at
        the last look, less ours then) at the mean estimate."""
        server = self._server(url)
        now = time.monotonic()
        with _lock:
            mine = list(server.tickets)
            known = [a.value for a in _averages.values() if a.count]
            foreign = max(0, server.depth - server.ours_then)
        ours = sum(t.remaining(now) for t in mine)
        if not foreign:
            return ours
        mean = (sum(t.expected for t in mine) / len(mine)) if mine else (
            sum(known) / len(known) if known else 1.0)
        return ours + foreign * mean

    def _stale(self, url: str) -> bool:
        server = self._server(url)
        return not (time.monotonic() - server.looked_at < DEPTH_TTL and server.down_since is None)

    def _look_all(self, urls: list[str], client: Callable[[str], ComfyClient]) -> dict[str, Exception | None]:
        """Each server's queue depth, asked (of the stale ones) at the same time: a pick then
        waits one round trip, not one a server. What each look raised, by server."""
        def look(url: str) -> Exception | None:
            try:
                self._look(url, client)
            except (ServerDown, RetryableServiceError) as exc:
                return exc
            return None

        stale = [u for u in urls if self._stale(u)]
        if len(stale) < 2:
            return {u: look(u) for u in urls}
        with cf.ThreadPoolExecutor(min(8, len(stale)), thread_name_prefix="comfy-look") as ex:
            asked = dict(zip(stale, ex.map(look, stale)))
        return {u: asked[u] if u in asked else look(u) for u in urls}

    def _look(self, url: str, client: Callable[[str], ComfyClient]) -> None:
        """Ask ``url`` its queue depth unless the last answer is recent (DEPTH_TTL)."""
        server = self._server(url)
        if not self._stale(url):
            return
        with _lock:
            ours = sum(1 for t in server.tickets if t.submitted)
        depth = client(url).queue_remaining()
        with _lock:
            server.depth, server.ours_then, server.looked_at = depth, ours, time.monotonic()

    # -- picking -----------------------------------------------------------------------

    def pick(self, client: Callable[[str], ComfyClient], *, key: str, units: float, expected: float,
             exclude: Iterable[str] = (), grace: float | None = None,
             claim: Callable[[str], Callable[[], None] | None] | None = None) -> Ticket:
        """A ticket on the server whose backlog ends soonest, among those not excluded and
        not down (every one of them when all are down: a restarted server is found again).
        Asks each its queue depth (GET /prompt) at most once a DEPTH_TTL. Raises
        ServerUnavailable when none answers; NotComfyUI and other permanent errors pass
        through."""
        skip = {normalise_url(u) for u in exclude}
        candidates = [u for u in self.urls if u not in skip] or list(self.urls)
        up = [u for u in candidates if not self.is_down(u)]
        loads: dict[str, float] = {}
        errors: list[str] = []
        for url, exc in self._look_all(up or candidates, client).items():
            if isinstance(exc, ServerDown):
                self.mark_down(url, exc.reason, grace=grace)
                errors.append(str(exc))
                continue
            if exc is not None:  # busy or slow: not this time
                errors.append(str(exc))
                continue
            self.mark_up(url)
            loads[url] = 0.0
        if not loads:
            raise ServerUnavailable("; ".join(errors) or f"no ComfyUI server is answering "
                                                         f"({', '.join(self.urls)})")
        order = {u: i for i, u in enumerate(self.urls)}
        if claim is None:
            with _lock:  # judged and reserved at once: concurrent picks see each other
                best = min(loads, key=lambda u: (self.backlog(u), order[u]))
                return self._add(best, key, units, expected)
        # Servers shared with other workers: the least busy one with a slot we can hold.
        with _lock:
            ranked = sorted(loads, key=lambda u: (self.backlog(u), order[u]))
        for url in ranked:
            release = claim(url)
            if release is not None:
                with _lock:
                    ticket = self._add(url, key, units, expected)
                ticket._release = release
                return ticket
        raise ServersBusy(f"every slot of the answering ComfyUI servers is held by another worker's render "
                          f"({', '.join(ranked)})")

    def track(self, url: str, *, key: str, units: float, expected: float, submitted: bool = True,
              running: bool = False) -> Ticket:
        """A ticket for a prompt already on ``url`` (a reattached one)."""
        with _lock:
            ticket = self._add(normalise_url(url), key, units, expected)
        ticket.submitted = submitted
        if running:
            ticket.started()
        return ticket

    def _add(self, url: str, key: str, units: float, expected: float) -> Ticket:
        ticket = Ticket(url, key, units, expected, pool=self)
        self._server(url).tickets.append(ticket)
        return ticket

    def _finish(self, ticket: Ticket) -> None:
        with _lock:
            server = _servers.get(ticket.url)
            if server is not None and ticket in server.tickets:
                server.tickets.remove(ticket)

    def _server(self, url: str) -> _Server:
        url = normalise_url(url)
        server = self._servers.get(url)
        if server is None:  # a server outside the set (a recorded one): tracked all the same
            with _lock:
                server = _servers.setdefault(url, _Server(url))
        return server

