"""Fixtures for the hostile-input tests: the fake ComfyUI and the fake LLM servers (both
really listening on 127.0.0.1), switched to hostile answers by each test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "story_llm"))  # the LLM fakes are imported as `fake_llm`

from comfy.conftest import JobFactory, comfy, jobs, make_comfy, shot, still  # noqa: E402,F401
from fake_llm import serving  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("REELFORGE_RETRY_BACKOFF", "0")
    monkeypatch.delenv("REELFORGE_RETRY_ATTEMPTS", raising=False)
    for name in ("REELFORGE_COMFY_URL", "REELFORGE_COMFY_AUTH", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def llm():
    with serving() as server:
        yield server


def files_holding(root: Path, *needles: str) -> list[str]:
    """Every file under ``root`` whose bytes contain one of ``needles``."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n[:12]}..." for n in needles if n and n.encode() in data]
    return hits
