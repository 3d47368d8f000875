"""Issue 15 items 5 and 9: one cause, one line. A full disk while clips render, a read-only
session folder and a resume refused by the pre-flight check each end in one plain line that
names the folder and what to do; a refused resume changes nothing."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from framework.cli import cli
from framework.session import FAILED, SessionStore

sys.path.insert(0, str(Path(__file__).resolve().parent / "story_llm"))

from fake_llm import API_KEY, openai_error, serving  # noqa: E402

TINY = ["-o", "storyboard.width=160", "-o", "storyboard.height=96", "-o", "kenburns.width=160",
        "-o", "kenburns.height=96", "-o", "kenburns.fps=4", "-o", "shots=3", "-o", "target_seconds=3"]


def invoke(out: Path, *args: str):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)])


def lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# -- item 9: a resume the pre-flight check refuses changes nothing ---------------------------

def test_a_refused_resume_changes_nothing_and_says_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("REELFORGE_RETRY_BACKOFF", "0")
    out = tmp_path / "output"
    with serving() as server:
        server.enqueue(openai_error(400, "the model is overloaded with nonsense"))
        r = invoke(out, "run", "A cat relights a lighthouse", "--new", "--story-llm", "openai",
                   "--narrator", "none", "-o", f"openai.base_url={server.url}/v1",
                   "-o", "openai.model=fake-1", *TINY)
        assert r.exit_code == 1, r.output
    # The server is stopped now: nothing listens on its port.
    [sid] = SessionStore(out).ids()
    session_dir = SessionStore(out).path_for(sid)
    assert SessionStore(out).load(sid).meta.status == FAILED
    before = _files(session_dir)

    r = invoke(out, "resume", sid)
    assert r.exit_code != 0
    lines = lines_of(r.output)
    assert len(lines) == 1, r.output
    assert "could not reach OpenAI-compatible server" in lines[0], r.output
    assert _files(session_dir) == before  # meta and journal byte-identical, nothing added
    assert SessionStore(out).load(sid).meta.status == FAILED
