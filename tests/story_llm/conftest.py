"""Fixtures for the story LLM backends: a fake server on 127.0.0.1, no retry backoff."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The tests import the fakes as `fake_llm`, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_llm import API_KEY, serving  # noqa: E402


@pytest.fixture
def fake_server():
    with serving() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setenv("REELFORGE_RETRY_BACKOFF", "0")
    monkeypatch.delenv("REELFORGE_RETRY_ATTEMPTS", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
