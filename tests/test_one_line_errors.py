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

from reelforge.cli.core import cli
from reelforge.store.meta import FAILED
from reelforge.store.sessions import SessionStore

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


# -- item 5: a full disk while clips render is one line, and stops the run -------------------

OFFLINE = ["--narrator", "none", "-o", "storyboard.width=320", "-o", "storyboard.height=180",
           "-o", "shots=3", "-o", "shot_seconds=2"]
#: What ffmpeg 7 prints when its output's disk fills up (seen on a full tmpfs).
FFMPEG_ENOSPC = ("[out#0/mp4 @ 0x56521b8143c0] Error writing trailer: No space left on device\n"
                 "[out#0/mp4 @ 0x56521b8143c0] Error closing file: No space left on device\n")


def _awaiting_review(out: Path) -> tuple[str, Path]:
    """A session whose images are done and whose clips are still to make."""
    r = invoke(out, "run", "A cat relights a lighthouse", "--new", "--review", "images", *OFFLINE)
    assert r.exit_code == 0, r.output
    [sid] = SessionStore(out).ids()
    return sid, SessionStore(out).path_for(sid)


def _assert_one_disk_full_line(output: str, session_dir: Path, sid: str) -> None:
    lines = lines_of(output)
    said = [line for line in lines if "disk full" in line or "No space left" in line]
    assert said == [f"Error: disk full writing to {session_dir}: free space, then "
                    f"`reelforge resume {sid}`"], output
    assert "ffmpeg exited" not in output and "Error writing trailer" not in output
    assert "[FAILED]" not in output and "RuntimeWarning" not in output


def _no_clip_marked_failed(out: Path, sid: str) -> None:
    meta = SessionStore(out).load(sid).meta
    assert all(s.artifact("videos").state != "failed" for s in meta.shots)


def test_ffmpeg_reporting_a_full_disk_stops_the_run_with_one_line(tmp_path, monkeypatch):
    import reelforge.media.ffmpeg as ffmpeg

    out = tmp_path / "output"
    sid, session_dir = _awaiting_review(out)
    calls = tmp_path / "calls"
    fake = tmp_path / "ffmpeg"
    fake.write_text(f"#!/bin/sh\necho run >> '{calls}'\nprintf '%s' '{FFMPEG_ENOSPC}' >&2\nexit 228\n")
    fake.chmod(0o755)
    monkeypatch.setattr(ffmpeg, "ffmpeg_exe", lambda: str(fake))
    r = invoke(out, "approve", sid, "-o", "kenburns.width=320", "-o", "kenburns.height=180")
    assert r.exit_code == 1
    _assert_one_disk_full_line(r.output, session_dir, sid)
    _no_clip_marked_failed(out, sid)  # it stopped at the full disk: no shot failed one by one
    assert calls.read_text()  # the clips really went to (the fake) ffmpeg


@pytest.mark.parametrize("raised", ["oserror", "wrapped"])
def test_a_backend_hitting_a_full_disk_stops_the_run_with_one_line(out, fakes, raised):
    full = OSError(errno.ENOSPC, "No space left on device", "/somewhere/.work/videos/1/x.partial.mp4")
    if raised == "wrapped":  # a backend that wraps the OSError in its own error
        try:
            raise full
        except OSError as exc:
            try:
                raise RuntimeError("shot 1: could not write the clip") from exc
            except RuntimeError as wrapped:
                full = wrapped
    fakes.video.fail(1, full)
    fakes.video.fail(2, full)
    fakes.video.fail(3, full)
    fake_args = ["--story-llm", "fake", "--image-gen", "fake", "--renderer", "fake"]
    r = invoke(out, "run", "idea", "--new", *fake_args)
    assert r.exit_code == 1
    [sid] = SessionStore(out).ids()
    _assert_one_disk_full_line(r.output, SessionStore(out).path_for(sid), sid)
    _no_clip_marked_failed(out, sid)  # the first full disk stopped the run


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def _fill(disk: Path, leave: int) -> None:
    """Fill the file system of ``disk`` to the last byte, then free ``leave`` bytes."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))


def test_a_really_full_disk_while_clips_render_is_one_line_and_resume_finishes(tmp_path):
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "8m"):
        pytest.skip("needs root and a mountable tmpfs for a real full file system")
    try:
        out = disk / "output"
        sid, session_dir = _awaiting_review(out)
        _fill(disk, 12 * 1024)  # the meta fits; the clips do not
        r = invoke(out, "approve", sid, "-o", "kenburns.width=640", "-o", "kenburns.height=360",
                   "-o", "kenburns.fps=12")
        assert r.exit_code == 1
        _assert_one_disk_full_line(r.output, session_dir, sid)
        (disk / "filler").unlink()  # "free space", as the line says
        r = invoke(out, "resume", sid)
        assert r.exit_code == 0, r.output
        assert SessionStore(out).load(sid).meta.status == "COMPLETE"
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# -- item 5: a read-only session folder: one plain line naming the folder --------------------

@pytest.mark.parametrize("number", [errno.EACCES, errno.EROFS])
def test_a_read_only_session_folder_is_one_plain_line_naming_the_folder(out, fakes, monkeypatch, number):
    from reelforge.errors import StageError
    from reelforge.testing import run_session

    fakes.video.fail(3, StageError("boom"))
    first = run_session(out, "idea", backends=fakes.backends)
    with SessionStore(out).open(first.session_id) as s:  # as a kill leaves it: IN PROGRESS
        s.set_status("IN_PROGRESS")
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        # New files cannot be made in the session folder; the journal, which exists, can
        # still be appended to (what `chmod a-w` on the folder does for a non-root user).
        if os.fspath(path).endswith(".tmp") and Path(os.fspath(path)).parent == first.path:
            raise OSError(number, os.strerror(number), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    r = invoke(out, "resume", first.session_id, "--story-llm", "fake", "--image-gen", "fake",
               "--renderer", "fake")
    monkeypatch.setattr(os, "open", real_open)
    assert r.exit_code == 1
    assert "RuntimeWarning" not in r.output and ".py:" not in r.output, r.output
    assert ".tmp" not in r.output, r.output  # the folder is named, not the temporary file
    said = lines_of(r.output)[-1]
    assert str(first.path) in said and f"reelforge resume {first.session_id}" in said, r.output
    assert ("read-only" if number == errno.EROFS else "no permission") in said
