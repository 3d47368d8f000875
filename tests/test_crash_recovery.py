"""The seed's crash scenarios, for real: a `reelforge run` subprocess is SIGKILLed and
the next run is answered on its `Continue?` prompt."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from reelforge.store.meta import DONE


from reelforge.store.sessions import SessionStore
from support import wait_for_run

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["--story-llm", "crashtest", "--image-gen", "crashtest", "--renderer", "crashtest"]


def _env(log: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(REELFORGE_PLUGINS="crash_plugin", REELFORGE_FAKE_LOG=str(log),
               REELFORGE_LOAD_PLUGINS="", REELFORGE_RETRY_BACKOFF="0",
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _reelforge(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reelforge", "run", *args, *BACKENDS, "--output-dir", str(out)]


def _calls(log: Path) -> collections.Counter:
    if not log.exists():
        return collections.Counter()
    return collections.Counter(tuple(line.split()[:2]) for line in log.read_text().splitlines())


def _done(out: Path, stage: str) -> set[int]:
    store = SessionStore(out)
    ids = store.ids()
    if not ids:
        return set()
    try:
        meta = store.load(ids[-1]).meta
    except Exception:
        return set()
    return {s.id for s in meta.shots if s.artifact(stage).state == DONE}


def _kill_when(proc: subprocess.Popen, condition, timeout: float = 120) -> None:
    wait_for_run(condition, proc, "the crash point", timeout)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)


def _start(out: Path, log: Path, hold: str) -> subprocess.Popen:
    """A run whose ``hold`` (KIND:N, see tests/crash_plugin.py) lets N calls of KIND through
    and holds the rest for the kill: N shots of that stage get done, the others do not,
    whatever the machine's load."""
    return subprocess.Popen(_reelforge(out, "A city of traders", "--new"),
                            env={**_env(log), "REELFORGE_CRASH_HOLD": hold},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _answer(out: Path, log: Path, answer: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_reelforge(out, *args), env=_env(log), input=answer, capture_output=True,
                          text=True, timeout=120)


def test_scenario_1_crash_during_images(tmp_path):
    out, log = tmp_path / "output", tmp_path / "calls.log"
    proc = _start(out, log, "image:3")
    _kill_when(proc, lambda: len(_done(out, "images")) >= 3)
    done_before = _done(out, "images")
    assert len(done_before) == 3

    result = _answer(out, log, "y\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INCOMPLETE SESSION FOUND" in result.stdout
    assert "Continue? [Y/n]" in result.stdout
    calls = _calls(log)
    for shot in done_before:
        assert calls[("image", str(shot))] == 1, f"shot {shot} image was generated again"
    assert calls[("story", "write_story")] == 1 and calls[("story", "plan_shots")] == 1
    assert set(_done(out, "videos")) == set(range(1, 8))
    sid = SessionStore(out).ids()[-1]
    assert (out / "sessions" / sid / "film.mp4").is_file()
    assert len(SessionStore(out).ids()) == 1


def test_scenario_2_crash_during_videos(tmp_path):
    out, log = tmp_path / "output", tmp_path / "calls.log"
    proc = _start(out, log, "video:2")
    _kill_when(proc, lambda: len(_done(out, "videos")) >= 2)
    videos_before = _done(out, "videos")
    images_before = _done(out, "images")

    result = _answer(out, log, "y\n")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = _calls(log)
    for shot in videos_before:
        assert calls[("video", str(shot))] == 1, f"shot {shot} was rendered again"
    for shot in images_before:
        assert calls[("image", str(shot))] == 1
    assert "[SKIP]" in result.stderr
    assert _done(out, "videos") == set(range(1, 8))


def test_scenario_3_answer_no_starts_fresh_and_keeps_old_session(tmp_path):
    out, log = tmp_path / "output", tmp_path / "calls.log"
    proc = _start(out, log, "image:2")
    _kill_when(proc, lambda: len(_done(out, "images")) >= 2)
    old_id = SessionStore(out).ids()[0]
    old_dir = out / "sessions" / old_id
    # .work/ is scratch space; an orphaned ffmpeg of the killed run may still finish there.
    def files():
        return {p.relative_to(old_dir): p.read_bytes() for p in old_dir.rglob("*")
                if p.is_file() and ".work" not in p.parts}

    snapshot = files()

    time.sleep(1.05)  # a new timestamp, as the seed shows
    result = _answer(out, log, "n\n", "A different idea")
    assert result.returncode == 0, result.stdout + result.stderr
    ids = SessionStore(out).ids()
    assert len(ids) == 2 and ids[0] == old_id
    new = SessionStore(out).load(ids[1])
    assert new.meta.idea == "A different idea" and new.meta.status == "COMPLETE"
    assert files() == snapshot


def test_no_answer_and_no_flag_fails_clearly_instead_of_hanging(tmp_path):
    out, log = tmp_path / "output", tmp_path / "calls.log"
    proc = _start(out, log, "image:1")
    _kill_when(proc, lambda: len(_done(out, "images")) >= 1)
    result = subprocess.run(_reelforge(out), env=_env(log), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "pass --resume to continue it or --new" in result.stderr
    result = subprocess.run(_reelforge(out, "--resume"), env=_env(log), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_ctrl_c_stops_cleanly_and_saves_everything(tmp_path):
    out, log = tmp_path / "output", tmp_path / "calls.log"
    proc = _start(out, log, "image:2")  # the other images wait for the Ctrl-C
    deadline = time.monotonic() + 120
    while len(_done(out, "images")) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "two images were not done in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    sid = SessionStore(out).ids()[0]
    assert f"reelforge resume {sid}" in output
    session_dir = out / "sessions" / sid
    assert (session_dir / "journal.jsonl").read_bytes() == b""  # folded into the meta on exit
    meta = SessionStore(out).load(sid).meta
    assert meta.status == "IN_PROGRESS"
    done_before = {s.id for s in meta.shots if s.image.state == DONE}
    assert len(done_before) >= 2

    result = subprocess.run(
        [sys.executable, "-m", "reelforge", "resume", sid, "--output-dir", str(out)],
        env=_env(log), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    calls = _calls(log)
    for shot in done_before:
        assert calls[("image", str(shot))] == 1
