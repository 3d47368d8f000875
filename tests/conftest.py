"""Shared fixtures. Installed third-party plugins are not loaded; retries do not wait."""

from __future__ import annotations

import os

os.environ["REELFORGE_LOAD_PLUGINS"] = ""
os.environ["REELFORGE_RETRY_BACKOFF"] = "0"
os.environ.pop("REELFORGE_PLUGINS", None)
os.environ.pop("REELFORGE_OUTPUT_DIR", None)

import pytest  # noqa: E402

from framework.testing import fake_backends  # noqa: E402


@pytest.fixture
def fakes():
    with fake_backends(shots=3) as f:
        yield f


@pytest.fixture
def out(tmp_path):
    return tmp_path / "output"
