"""Issue 15, items 3 and 4: a run keeps all its scratch in the session's .work/ (nothing
under $TMPDIR, even when SIGKILLed in the middle of the mix), and `reelforge sessions
verify` finds damage that kept a file's size and mtime, which `resume` (size + mtime)
cannot see."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.session import DONE, SessionStore

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["--story-llm", "crashtest", "--image-gen", "crashtest", "--renderer", "crashtest",
            "--narrator", "crashtest"]


def _env(tmp_path: Path, tmpdir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("REELFORGE_OUTPUT_DIR", "REELFORGE_DISABLE_PLUGINS", "IMAGEIO_FFMPEG_EXE"):
        env.pop(key, None)
    env.update(REELFORGE_PLUGINS="crash_plugin", REELFORGE_FAKE_LOG=str(tmp_path / "calls.log"),
               REELFORGE_LOAD_PLUGINS="", REELFORGE_RETRY_BACKOFF="0", TMPDIR=str(tmpdir),
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")]),
               **extra)
    return env


def _reelforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "framework", *args]


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll ``condition`` (an event in the run, not a time margin) with a generous deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.02)


def _watching_ffmpeg(tmp_path: Path, *, hold_at_mix: bool) -> tuple[Path, Path, Path]:
    """An ffmpeg that runs the real one and, just before and after, writes what it sees
    under $TMPDIR to a log (so every moment an ffmpeg of the run is at work is looked at).
    With ``hold_at_mix``, once it has written the mix's float WAV (the first mix pass,
    pcm_f32le) it says so in a marker file and holds there until it is killed (it dies with
    the runner: reelforge starts ffmpeg with PR_SET_PDEATHSIG)."""
    import imageio_ffmpeg

    marker, seen = tmp_path / "mixing", tmp_path / "seen-under-tmpdir.log"
    script = tmp_path / "ffmpeg"
    hold = (f"case \" $* \" in *\" pcm_f32le \"*) echo $$ > '{marker}.tmp'; mv '{marker}.tmp' '{marker}'; "
            "exec sleep 600;; esac\n") if hold_at_mix else ""
    script.write_text(
        "#!/bin/sh\n"
        f"ls -A \"$TMPDIR\" >> '{seen}'\n"
        f"'{imageio_ffmpeg.get_ffmpeg_exe()}' \"$@\" || exit $?\n"
        f"ls -A \"$TMPDIR\" >> '{seen}'\n" + hold)
    script.chmod(0o755)
    return script, marker, seen


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_kill_during_the_mix_leaves_nothing_under_tmpdir(tmp_path):
    out, tmpdir = tmp_path / "output", tmp_path / "tmpdir"
    tmpdir.mkdir()
    fake_ffmpeg, marker, _ = _watching_ffmpeg(tmp_path, hold_at_mix=True)
    proc = subprocess.Popen(_reelforge("run", "A city of traders", "--new", *BACKENDS, "--output-dir", str(out)),
                            env=_env(tmp_path, tmpdir, IMAGEIO_FFMPEG_EXE=str(fake_ffmpeg)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(marker.exists, proc, "the film's mix")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if marker.exists():  # the held ffmpeg, should it have outlived its runner
            try:
                os.kill(int(marker.read_text()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
    assert _listing(tmpdir) == []
    (sid,) = SessionStore(out).ids()
    session = out / "sessions" / sid
    assert [p.name for p in (session / ".work").rglob("raw.wav")] == ["raw.wav"]  # the mix's scratch was here

    done = subprocess.run(_reelforge("resume", sid, "--output-dir", str(out)), env=_env(tmp_path, tmpdir),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert SessionStore(out).load(sid).meta.status == "COMPLETE"
    assert not (session / ".work").exists()
    assert _listing(tmpdir) == []


def test_a_whole_run_writes_nothing_under_tmpdir(tmp_path):
    out, tmpdir = tmp_path / "output", tmp_path / "tmpdir"
    tmpdir.mkdir()
    music = tmp_path / "music.wav"
    _tone(music, seconds=1.0)
    fake_ffmpeg, _, seen = _watching_ffmpeg(tmp_path, hold_at_mix=False)
    done = subprocess.run(_reelforge("run", "A city of traders", "--new", *BACKENDS, "--music", str(music),
                                     "--transition", "crossfade", "--output-dir", str(out)),
                          env=_env(tmp_path, tmpdir, IMAGEIO_FFMPEG_EXE=str(fake_ffmpeg)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (sid,) = SessionStore(out).ids()
    assert SessionStore(out).load(sid).meta.status == "COMPLETE"
    assert seen.exists()  # the watch ran
    assert seen.read_text() == ""  # $TMPDIR was empty whenever an ffmpeg started or ended
    assert _listing(tmpdir) == []
    assert not (out / "sessions" / sid / ".work").exists()


def _tone(path: Path, seconds: float) -> None:
    import math
    import struct
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(4000 * math.sin(i * 0.05)))
                               for i in range(int(8000 * seconds))))
