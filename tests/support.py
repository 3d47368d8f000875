"""Helpers for the tests: a lifecycle observer that records every hook call, and a wait on a running reelforge."""

from __future__ import annotations

from reelforge import hookimpl


class Recorder:
    """A lifecycle observer that records every hook call."""

    def __init__(self):
        self.events = []

    @hookimpl
    def session_started(self, session):
        self.events.append(("session_started",))

    @hookimpl
    def session_completed(self, session):
        self.events.append(("session_completed",))

    @hookimpl
    def stage_started(self, session, stage):
        self.events.append(("stage_started", stage))

    @hookimpl
    def stage_finished(self, session, stage):
        self.events.append(("stage_finished", stage))

    @hookimpl
    def stage_failed(self, session, stage, error):
        self.events.append(("stage_failed", stage))

    @hookimpl
    def shot_started(self, session, stage, shot, attempt):
        self.events.append(("shot_started", stage, shot.id, attempt))

    @hookimpl
    def shot_completed(self, session, stage, shot, artifact):
        self.events.append(("shot_completed", stage, shot.id))

    @hookimpl
    def shot_skipped(self, session, stage, shot, reason):
        self.events.append(("shot_skipped", stage, shot.id, reason))

    @hookimpl
    def shot_failed(self, session, stage, shot, error):
        self.events.append(("shot_failed", stage, shot.id))

    @hookimpl
    def shot_progress(self, session, stage, shot, fraction, message):
        self.events.append(("shot_progress", stage, shot.id, fraction, message))

    @hookimpl
    def stage_progress(self, session, stage, fraction, message):
        self.events.append(("stage_progress", stage, fraction, message))


def wait_until(condition, what: str, timeout: float = 120, proc=None) -> None:
    """Poll ``condition`` (an event, not a time margin) with a generous deadline. With a
    running reelforge ``proc``, its ending first fails the test too, and the deadline kills it."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            if proc is not None:
                proc.kill()
                proc.wait(10)
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.02)


def wait_for_run(condition, proc, what: str, timeout: float = 120) -> None:
    """Poll ``condition`` in a running reelforge ``proc`` (see :func:`wait_until`)."""
    wait_until(condition, what, timeout, proc=proc)


def in_ci() -> bool:
    """Whether the suite runs in CI (``CI`` set to anything but empty, 0 or false, as CI
    services and .ci/run set it)."""
    import os

    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need_system_package(problem: str | None) -> None:
    """A test that needs a system package (Debian's chromium, postgresql) and ``problem``
    says it is missing: one line naming the package to install. Locally the test is
    skipped with that line (pytest's -ra lists it in the summary); in CI it fails, so a
    missing package is never skipped silently."""
    import pytest

    if problem is None:
        return
    if in_ci():
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


def wait_idle(client, session_id: str, timeout: float = 120.0) -> dict:
    """Poll a `reelforge serve` test client until the session's action has ended; its state."""
    seen: dict = {}

    def idle() -> bool:
        seen["state"] = client.get(f"/s/{session_id}/state.json").json()
        return not seen["state"]["action"]["running"]

    wait_until(idle, what="the action to finish", timeout=timeout)
    return seen["state"]


#: The read syscall's number, by machine (what /proc/PID/syscall shows first).
_READ_SYSCALL = {"x86_64": 0, "aarch64": 63, "arm64": 63}


def wait_reading_stdin(proc, timeout: float = 120) -> None:
    """Wait until ``proc`` is blocked reading its standard input (Linux: /proc/PID/syscall
    names read on fd 0). A test's Ctrl-C must come then, as a user's does at a waiting
    prompt: a SIGINT that arrives after the prompt is shown but before the read begins is
    handled by CPython before the read, which then blocks, and the process hangs. Where
    /proc does not tell (another system), it returns at once."""
    import platform

    number = _READ_SYSCALL.get(platform.machine())
    path = f"/proc/{proc.pid}/syscall"

    def reading() -> bool:
        assert proc.poll() is None, f"the process ended (exit {proc.returncode}) before it waited on its input"
        try:
            with open(path) as f:
                fields = f.read().split()
        except OSError:
            return True  # cannot tell here: go on as before
        return len(fields) > 1 and fields[0] == str(number) and int(fields[1], 16) == 0

    if number is None:
        return
    wait_until(reading, "the process to wait on its standard input", timeout=timeout)
