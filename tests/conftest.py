"""Shared fixtures. Installed third-party plugins are not loaded; retries do not wait."""

from __future__ import annotations

import os
import signal

os.environ["REELFORGE_LOAD_PLUGINS"] = ""
os.environ["REELFORGE_RETRY_BACKOFF"] = "0"
os.environ.pop("REELFORGE_PLUGINS", None)
os.environ.pop("REELFORGE_OUTPUT_DIR", None)

import pytest  # noqa: E402

# A suite started in the background by a non-interactive shell (`cmd &` in a script)
# inherits SIGINT ignored, and so would every `reelforge run` a test starts: the Ctrl-C tests
# would wait for an exit that never comes. A handled signal is reset to the default at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The fixtures plugin authors get through the pytest11 entry point; imported here too so
# the suite also runs from a checkout that is not pip-installed.
from reelforge.pytest_plugin import reelforge_fakes, reelforge_output, reelforge_run  # noqa: E402,F401


@pytest.fixture
def fakes(reelforge_fakes):
    return reelforge_fakes


@pytest.fixture
def out(reelforge_output):
    return reelforge_output


@pytest.fixture
def done(out, fakes):
    """A finished narrated session on the fakes ("A harbour city"), loaded from the store."""
    from reelforge.store.sessions import SessionStore
    from reelforge.testing import run_session

    result = run_session(out, "A harbour city", backends=fakes.narrated)
    assert result.ok, result.failed
    return SessionStore(out).load(result.session_id)
