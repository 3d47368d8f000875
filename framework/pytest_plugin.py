"""pytest fixtures for reelforge plugin authors, registered through the ``pytest11`` entry
point, so they are available in any project that has reelforge installed:

- ``reelforge_output``: a fresh output folder (``tmp_path / "output"``);
- ``reelforge_fakes``: a fake story writer, image generator and renderer named ``fake``,
  registered for the test and removed after it (see :mod:`reelforge.testing`);
- ``reelforge_run``: a function that runs a session in ``reelforge_output`` with no retry
  backoff and returns the RunResult.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def reelforge_output(tmp_path):
    return tmp_path / "output"


@pytest.fixture
def reelforge_fakes():
    from reelforge.testing import fake_backends

    with fake_backends(shots=3) as fakes:
        yield fakes


@pytest.fixture
def reelforge_run(reelforge_output):
    from reelforge.testing import run_session

    def run(idea: str = "A test idea", **kwargs):
        return run_session(reelforge_output, idea, **kwargs)

    return run
