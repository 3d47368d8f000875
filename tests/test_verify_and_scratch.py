"""Issue 15, items 3 and 4: a run keeps all its scratch in the session's .work/ (nothing
under $TMPDIR, even when SIGKILLed in the middle of the mix), and `reelforge sessions
verify` finds damage that kept a file's size and mtime, which `resume` (size + mtime)
cannot see."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


from reelforge.store.sessions import SessionStore
from support import wait_for_run

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

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
    return [sys.executable, "-m", "reelforge", *args]


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
        wait_for_run(marker.exists, proc, "the film's mix")
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


# -- item 4: `reelforge sessions verify ID [--repair]` ----------------------------------------

def _invoke(out: Path, *args: str):
    from click.testing import CliRunner

    from reelforge.cli.core import cli

    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)], catch_exceptions=False)


def _clips_that_differ_by_attempt(renderer) -> None:
    """Each clip carries its attempt number (MP4 metadata, padded so the tiny fake clip is
    larger than the 4 KB the tests zero), so a clip made again has a new digest and the
    film, whose fingerprint holds the clips' digests, must follow."""
    import imageio_ffmpeg

    plain = renderer.render

    def render(shot, image, job):
        made = plain(shot, image, job)
        tagged = made.with_name("tagged.mp4")
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(made), "-c", "copy",
                        "-metadata", f"comment=attempt {job.attempt} " + "~" * 16000, str(tagged)], check=True)
        os.replace(tagged, made)
        return made

    renderer.render = render


def _files(session: Path) -> dict[str, tuple[int, str]]:
    """Every artifact file of the session: relative path -> (inode, sha256)."""
    found = {}
    for p in session.rglob("*"):
        rel = p.relative_to(session)
        if p.is_file() and not {".replaced", ".work"} & set(rel.parts) and rel.suffix != ".jsonl" \
                and not rel.name.endswith("_meta.json") and rel.name not in (".lock", "index.html"):
            found[rel.as_posix()] = (p.stat().st_ino, hashlib.sha256(p.read_bytes()).hexdigest())
    return found


def _zero_4k_keeping_mtime(path: Path) -> None:
    st = path.stat()
    assert st.st_size > 3 * 4096
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 2)
        fh.write(b"\0" * 4096)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_damage_that_keeps_size_and_mtime_is_found_by_verify_and_repair_remakes_exactly_it(out, fakes):
    from reelforge.testing import run_session

    _clips_that_differ_by_attempt(fakes.video)
    sid = run_session(out, "A lighthouse", backends=fakes.backends).session_id
    session = out / "sessions" / sid
    clip = session / "videos" / "shot_002.mp4"
    _zero_4k_keeping_mtime(clip)
    damaged = clip.read_bytes()

    # resume trusts size + mtime (documented): it skips the clip and keeps the film
    before = _files(session)
    calls = len(fakes.video.calls)
    assert run_session(out, "", backends=fakes.backends, resume=sid).ok
    assert len(fakes.video.calls) == calls and _files(session) == before

    r = _invoke(out, "sessions", "verify", sid)
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    assert lines[0] == ("BAD videos/shot_002.mp4 (shot 2 clip): damaged: its bytes do not match the recorded "
                        "sha256 (changed in place)")
    assert len(lines) == 2 and lines[1].startswith(f"verify: 1 of 10 recorded files of {sid} are missing or damaged")
    assert f"reelforge sessions verify {sid} --repair" in lines[1]
    assert clip.read_bytes() == damaged  # verify alone changes no file

    r = _invoke(out, "sessions", "verify", sid, "--repair")
    assert r.exit_code == 1, r.output
    (moved,) = (session / "videos" / ".replaced").iterdir()
    assert f"moved to videos/.replaced/{moved.name}" in r.output and moved.read_bytes() == damaged
    meta = SessionStore(out).load(sid).meta
    assert meta.shot(2).video.state == "todo" and meta.status == "IN_PROGRESS"
    assert meta.last_verify["bad"] == ["videos/shot_002.mp4"] and meta.last_verify["repaired"] is True

    assert run_session(out, "", backends=fakes.backends, resume=sid).ok
    assert [c[0] for c in fakes.video.calls[calls:]] == [2]  # exactly that clip, once
    after = _files(session)
    assert {k for k in before if after.get(k) != before[k]} == {"videos/shot_002.mp4", "film.mp4"}
    assert set(after) == set(before)
    r = _invoke(out, "sessions", "verify", sid)
    assert r.exit_code == 0 and r.output == f"verify: all 10 recorded files of {sid} match their sha256 " \
                                             f"({sum(os.path.getsize(session / k) for k in after if k not in ('story.json', 'scenes.json', 'shots.json')) / 1e6:,.1f} MB read).\n"


def test_verify_names_each_missing_or_damaged_file_and_a_bad_story_file(out, fakes):
    from reelforge.testing import run_session

    sid = run_session(out, "A lighthouse", backends=fakes.backends).session_id
    session = out / "sessions" / sid
    (session / "images" / "shot_001.png").unlink()
    with open(session / "film.mp4", "ab") as fh:
        fh.write(b"x")
    (session / "scenes.json").write_text("{not json")
    r = _invoke(out, "sessions", "verify", sid)
    assert r.exit_code == 1
    bad = [line for line in r.output.splitlines() if line.startswith("BAD ")]
    assert bad[0].startswith("BAD scenes.json (scenes.json): ")
    assert bad[1:] == ["BAD images/shot_001.png (shot 1 image): missing",
                       f"BAD film.mp4 (film): damaged: {(session / 'film.mp4').stat().st_size:,} bytes, "
                       f"recorded {(session / 'film.mp4').stat().st_size - 1:,}"]
    assert "3 of 10 recorded files" in r.output.splitlines()[-1]


def test_verify_is_refused_while_a_run_holds_the_session(out, fakes):
    from reelforge.testing import run_session

    sid = run_session(out, "A lighthouse", backends=fakes.backends).session_id
    held = SessionStore(out).open(sid)
    try:
        for extra in ((), ("--repair",)):
            r = _invoke(out, "sessions", "verify", sid, *extra)
            assert r.exit_code == 1 and "being run by another reelforge process" in r.output
    finally:
        held.close()
    assert SessionStore(out).load(sid).meta.last_verify is None


def test_the_report_shows_the_last_verify_or_how_to_run_it(out, fakes):
    from reelforge.web.report import write_report
    from reelforge.testing import run_session

    _clips_that_differ_by_attempt(fakes.video)
    sid = run_session(out, "A lighthouse", backends=fakes.backends).session_id
    page = write_report(SessionStore(out).load(sid)).read_text()
    assert 'data-verify="never"' in page and f"reelforge sessions verify {sid}" in page
    _zero_4k_keeping_mtime(out / "sessions" / sid / "videos" / "shot_003.mp4")
    assert _invoke(out, "sessions", "verify", sid).exit_code == 1
    page = write_report(SessionStore(out).load(sid)).read_text()
    assert 'data-verify="bad"' in page and "1 bad (videos/shot_003.mp4)" in page
    assert "Verify files</button>" not in page  # a file page has no buttons


def test_serve_has_a_verify_button_that_runs_verify_and_shows_the_result(out, fakes):
    from starlette.testclient import TestClient

    from reelforge.engine.runner import Runner
    from reelforge.testing import run_session
    from reelforge.web.app import create_app

    _clips_that_differ_by_attempt(fakes.video)
    sid = run_session(out, "A lighthouse", backends=fakes.backends).session_id
    _zero_4k_keeping_mtime(out / "sessions" / sid / "videos" / "shot_001.mp4")
    token = "test-token-0123456789"
    c = TestClient(create_app(out, csrf_token=token, runner_factory=lambda: Runner(out)),
                   base_url="http://127.0.0.1:8765")
    page = c.get(f"/s/{sid}").text
    assert f'action="/s/{sid}/verify" data-action="verify"' in page and 'data-verify="never"' in page
    assert c.post(f"/s/{sid}/verify", data={"csrf": "wrong"}).status_code == 403
    r = c.post(f"/s/{sid}/verify", data={"csrf": token}, headers={"Accept": "application/json"})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while (state := c.get(f"/s/{sid}/state.json").json())["action"]["running"]:
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    last = state["action"]["last"]
    assert last["ok"] is False and "1 of 10 recorded files" in last["message"], last
    page = c.get(f"/s/{sid}").text
    assert 'data-verify="bad"' in page and "videos/shot_001.mp4" in page
    assert SessionStore(out).load(sid).meta.shot(1).video.state == "done"  # the button never repairs


def test_a_repaired_image_made_again_with_the_same_bytes_leaves_its_clip_and_the_film(out, fakes):
    """The fingerprints decide what follows a repair: the fake image generator draws the same
    picture again, so the clip's inputs (the image's digest) are unchanged and so is the film."""
    from reelforge.testing import run_session

    sid = run_session(out, "A lighthouse", backends=fakes.backends).session_id
    session = out / "sessions" / sid
    image = session / "images" / "shot_003.png"
    st = image.stat()
    image.write_bytes(b"\0" * st.st_size)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = _files(session)
    images, clips = len(fakes.image.calls), len(fakes.video.calls)
    r = _invoke(out, "sessions", "verify", sid, "--repair")
    assert r.exit_code == 1 and r.output.startswith("BAD images/shot_003.png (shot 3 image): damaged")
    assert run_session(out, "", backends=fakes.backends, resume=sid).ok
    assert [c[0] for c in fakes.image.calls[images:]] == [3] and len(fakes.video.calls) == clips
    after = _files(session)
    assert {k for k in before if after[k] != before[k]} == {"images/shot_003.png"}
    assert after["images/shot_003.png"][1] != before["images/shot_003.png"][1]  # the good picture is back
    assert _invoke(out, "sessions", "verify", sid).exit_code == 0
