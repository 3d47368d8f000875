"""reelforge.engine.retry: one Retry-After parser for every client, and the deadline policy a
backend keeps inside itself (whatever a server asks, the waits stay bounded)."""

from __future__ import annotations

import email.utils
import threading
import time

import httpx
import pytest

from reelforge.errors import RetryableServiceError, ServiceError
from reelforge.engine.retry import MAX_RETRY_AFTER, deadline_retrying, parse_retry_after


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0),
    ("nan", None), ("inf", None), ("1e400", None), ("soon", None), ("", None),
    ("86400", MAX_RETRY_AFTER),  # a day is asked for: capped
])
def test_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_retry_after_http_dates():
    now = 1_800_000_000.0
    later = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(90, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 10 * 86400, usegmt=True), now=now) == MAX_RETRY_AFTER
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00", now=1445412480.0) == 0.0  # no zone: GMT
    assert parse_retry_after("Someday, 99 Foo 2015 07:28:00 GMT") is None


def test_retry_after_from_headers_any_case():
    headers = httpx.Headers({"Retry-After": "7", "Retry-After-Ms": "1500"})
    assert parse_retry_after(headers) == 1.5  # OpenAI's milliseconds win
    assert parse_retry_after(httpx.Headers({"Retry-After": "7"})) == 7.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "inf", "retry-after": "3"})) == 3.0
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    assert parse_retry_after({"retry-after": "5"}, cap=2.0) == 2.0


def test_the_comfy_client_and_the_llm_transport_read_it_alike(comfy):
    from reelforge.plugins.comfy_render.client import ComfyClient
    from reelforge.plugins.story_llm import transport

    assert transport.parse_retry_after is parse_retry_after
    comfy.hostile["prompt"] = "nan_retry"
    with pytest.raises(RetryableServiceError) as info:
        ComfyClient(comfy.url).queue_remaining()
    assert info.value.retry_after is None


class Clock:
    """A monotonic clock that moves when the policy sleeps (and a microsecond per look, as
    work takes time): the waits and the deadline are checked exactly, however loaded the
    machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 1e-6
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    import tenacity

    import reelforge.engine.retry

    fake = Clock()
    monkeypatch.setattr(reelforge.engine.retry, "time", fake)
    monkeypatch.setattr(tenacity, "time", fake)  # its start_time, for a deadline from the first attempt
    return fake


def _failing(times: list[float], error=None, clock=time):
    def call():
        times.append(clock.monotonic())
        raise error or RetryableServiceError("down")
    return call


def test_the_deadline_bounds_the_retries_not_a_count(clock):
    times: list[float] = []
    started = clock.monotonic()
    with pytest.raises(RetryableServiceError, match="down"):
        for attempt in deadline_retrying(deadline=0.5, initial=0.05, max_wait=0.1):
            with attempt:
                _failing(times, clock=clock)()
    spent = clock.monotonic() - started
    assert spent == pytest.approx(0.5, abs=1e-3) and len(times) >= 6  # waits of 0.05 to 0.1 s
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= 0.1 + 1e-3  # each wait within max_wait


def test_a_retry_after_is_honoured_but_never_past_the_deadline(clock):
    times: list[float] = []
    with pytest.raises(RetryableServiceError):
        for attempt in deadline_retrying(deadline=0.4, initial=0.01, max_wait=5.0):
            with attempt:
                _failing(times, RetryableServiceError("busy", retry_after=120.0), clock=clock)()
    assert len(times) == 2 and times[1] - times[0] == pytest.approx(0.4, abs=1e-3)


def test_the_deadline_counts_from_since_and_give_up_ends_it_at_once(clock):
    last_ok = [clock.monotonic()]
    times: list[float] = []

    def call():
        times.append(clock.monotonic())
        if len(times) % 3 == 0:
            last_ok[0] = clock.monotonic()  # an answer now and then: the deadline starts again
        raise RetryableServiceError("flaky")

    with pytest.raises(RetryableServiceError):
        for attempt in deadline_retrying(deadline=0.2, since=lambda: last_ok[0], initial=0.02,
                                         max_wait=0.05, attempts=12):
            with attempt:
                call()
    assert len(times) == 12  # kept going past 0.2 s in all, stopped by the attempt cap
    times.clear()
    with pytest.raises(RetryableServiceError):
        for attempt in deadline_retrying(deadline=60, give_up=lambda: len(times) >= 2, initial=0.01):
            with attempt:
                _failing(times)()
    assert len(times) == 2


def test_only_retryable_errors_are_retried_and_cancel_stops_the_wait():
    times: list[float] = []
    with pytest.raises(ServiceError):
        for attempt in deadline_retrying(deadline=5, initial=0.01):
            with attempt:
                _failing(times, ServiceError("for good"))()
    assert len(times) == 1
    cancelled = threading.Event()
    times.clear()

    def fail_then_cancel_from_elsewhere():
        if times:  # the second attempt never comes: the cancel ended the wait and the retries
            raise AssertionError("retried after the cancel")
        threading.Thread(target=cancelled.set).start()  # while the policy waits (or is about to)
        _failing(times)()

    started = time.monotonic()
    with pytest.raises(RetryableServiceError):
        for attempt in deadline_retrying(deadline=3600, initial=600.0, max_wait=600.0, cancelled=cancelled):
            with attempt:
                fail_then_cancel_from_elsewhere()
    assert len(times) == 1
    assert time.monotonic() - started < 300  # not the 600 s wait: the cancel ended it
