"""The crash-torture harness of issue 8 (bench/crash_torture.py): a small seeded run of real
SIGKILLs must pass every check, and every check must fire when it is fed a bad state."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import wait_until

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "crash_torture.py"

_spec = importlib.util.spec_from_file_location("crash_torture", BENCH)
ct = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("crash_torture", ct)
_spec.loader.exec_module(ct)

SMALL = ["-o", "shots=3", "-o", "storyboard.width=320", "-o", "storyboard.height=180",
         "-o", "kenburns.width=320", "-o", "kenburns.height=180", "-o", "kenburns.fps=12",
         "-o", "kenburns.preset=ultrafast"]
REQUESTED = {"story": ("offline", {"shots": 3}),
             "image": ("storyboard", {"width": 320, "height": 180}),
             "video": ("kenburns", {"width": 320, "height": 180, "fps": 12, "preset": "ultrafast"})}


def _torture(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--workdir", str(tmp_path / "work"),
                           "--json", str(report), *args],
                          env=ct.runner_env(), capture_output=True, text=True, timeout=300)
    assert report.exists(), proc.stdout + proc.stderr
    return proc, json.loads(report.read_text())


def test_fifteen_seeded_kills_across_the_stages_break_nothing(tmp_path):
    proc, rep = _torture(tmp_path, "--kills", "15", "--seed", "3")
    table = proc.stdout + proc.stderr
    assert rep["kills"] == 15, table
    landed = {stage for stage, n in rep["stages"].items() if n and stage in ct.TARGETS}
    assert len(landed) >= 4, table
    assert rep["ok"] and proc.returncode == 0, table
    assert rep["complete_rounds"] == rep["rounds"] >= 2, table


def test_the_harness_fails_and_keeps_evidence_when_a_done_artifact_is_damaged(tmp_path):
    proc, rep = _torture(tmp_path, "--kills", "3", "--seed", "1", "--tamper")
    assert proc.returncode == 1
    assert rep["checks"]["digest"] >= 1, proc.stdout
    assert "RESULT: FAIL" in proc.stdout
    assert rep["evidence"] and all(Path(p).is_dir() for p in rep["evidence"])
    assert rep["evidence"][0] in proc.stdout


# -- each check fed a bad state -------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_template(tmp_path_factory):
    """One real, uninterrupted offline run (a few shots, small frames)."""
    out = tmp_path_factory.mktemp("template") / "output"
    proc = subprocess.run([sys.executable, "-m", "reelforge", "run", ct.IDEA, "--new", "--output-dir",
                           str(out), *SMALL], env=ct.runner_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture
def finished(finished_template, tmp_path):
    out = tmp_path / "output"
    shutil.copytree(finished_template, out)
    sid = next((out / "sessions").iterdir()).name
    return out, sid


def _load(out: Path, sid: str):
    from reelforge.store.sessions import SessionStore

    return SessionStore(out).load(sid)


def _edit_meta(out: Path, sid: str, edit) -> None:
    path = out / "sessions" / sid / f"{sid}_meta.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_a_finished_session_passes_every_check(finished):
    out, sid = finished
    problems, session = ct.check_session(out, sid)
    assert problems == [] and session is not None
    assert ct.check_artifacts(session) == []
    assert ct.check_options(session, REQUESTED) == []
    assert ct.film_problems(session.film_path) is None
    assert ct.stage_at(out, sid) == "finished"
    ledger = ct.Ledger()
    assert ledger.check(session) == [] and len(ledger.entries) == 3 * 2 + 1
    assert ledger.check(_load(out, sid)) == []


def test_a_clip_damaged_in_place_with_the_same_size_is_a_digest_mismatch(finished):
    out, sid = finished
    clip = out / "sessions" / sid / "videos" / "shot_002.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    clip.write_bytes(bytes(data))
    problems = ct.check_artifacts(_load(out, sid))
    assert problems == ["shot 2 video: videos/shot_002.mp4 does not match its recorded sha256"]


def test_a_commit_cut_short_between_journal_and_rename_is_neither_missing_nor_redone(finished):
    """reelforge/session.py journals a done record (with its scratch name) before the rename;
    a kill in between leaves the bytes in .work/, and the next run finishes the rename."""
    out, sid = finished
    folder = out / "sessions" / sid
    ledger = ct.Ledger()
    clip, scratch = folder / "videos" / "shot_001.mp4", folder / ".work" / "videos" / "shot_001" / "c.mp4"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    os.replace(clip, scratch)
    _edit_meta(out, sid, lambda m: m["shots"][0]["video"].update(pending=".work/videos/shot_001/c.mp4"))
    assert ct.check_artifacts(_load(out, sid)) == []
    assert ledger.check(_load(out, sid)) == []
    os.replace(scratch, clip)  # the resume finishes the rename: same inode and mtime
    assert ledger.check(_load(out, sid)) == []
    os.replace(clip, scratch)
    scratch.unlink()
    assert ct.check_artifacts(_load(out, sid)) == ["shot 1 video: done but videos/shot_001.mp4 is missing"]


def test_missing_and_resized_artifacts_are_reported(finished):
    out, sid = finished
    (out / "sessions" / sid / "images" / "shot_001.png").unlink()
    with open(out / "sessions" / sid / "film.mp4", "ab") as fh:
        fh.write(b"x")
    problems = ct.check_artifacts(_load(out, sid))
    assert any(p.startswith("shot 1 image:") and "missing" in p for p in problems)
    assert any(p.startswith("film:") and "bytes, recorded" in p for p in problems)


def test_a_done_artifact_rewritten_with_the_same_bytes_counts_as_redone(finished):
    out, sid = finished
    ledger = ct.Ledger()
    assert ledger.check(_load(out, sid)) == []
    image = out / "sessions" / sid / "images" / "shot_003.png"
    tmp = image.with_suffix(".tmp")
    tmp.write_bytes(image.read_bytes())
    os.replace(tmp, image)  # a new inode, same content and digest: it was made again
    problems = ledger.check(_load(out, sid))
    assert len(problems) == 1 and problems[0].startswith("shot 3 image:") and "rewritten" in problems[0]
    assert ledger.check(_load(out, sid)) == []  # counted once


def test_a_reset_or_a_new_digest_counts_as_redone(finished):
    out, sid = finished
    ledger = ct.Ledger()
    ledger.check(_load(out, sid))

    def edit(meta):
        meta["shots"][0]["video"].update(state="todo", sha256=None, size=None)
        meta["shots"][1]["image"]["sha256"] = "0" * 64

    _edit_meta(out, sid, edit)
    problems = ledger.check(_load(out, sid))
    assert any(p.startswith("shot 1 video:") and "reset" in p for p in problems)
    assert any(p.startswith("shot 2 image:") and "re-made" in p for p in problems)
    assert len(problems) == 2


def test_changes_outside_the_session_are_reported(tmp_path):
    (tmp_path / "output" / "sessions" / "mine").mkdir(parents=True)
    (tmp_path / "sentinel").mkdir()
    (tmp_path / "sentinel" / "a.txt").write_text("aaaa")
    (tmp_path / "sentinel" / "b.txt").write_text("b")
    (tmp_path / "sentinel" / "c.txt").write_text("c")
    mine = tmp_path / "output" / "sessions" / "mine"
    before = ct.snapshot_tree(tmp_path, exclude=[mine])
    (mine / "film.mp4").write_bytes(b"inside: not reported")
    assert ct.diff_snapshots(before, ct.snapshot_tree(tmp_path, exclude=[mine])) == []

    st = (tmp_path / "sentinel" / "a.txt").stat()
    (tmp_path / "sentinel" / "a.txt").write_text("AAAA")           # same size, new content
    os.utime(tmp_path / "sentinel" / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))  # even the mtime kept
    (tmp_path / "sentinel" / "b.txt").unlink()
    (tmp_path / "output" / "sessions" / ".stray.tmp").write_text("")
    os.utime(tmp_path / "sentinel" / "c.txt", ns=(1, 1))            # only touched
    diff = ct.diff_snapshots(before, ct.snapshot_tree(tmp_path, exclude=[mine]))
    assert diff == ["added output/sessions/.stray.tmp", "changed sentinel/a.txt (content)",
                    "removed sentinel/b.txt", "changed sentinel/c.txt (mtime)"]


def test_an_unreadable_meta_fails_the_session_check(finished):
    out, sid = finished
    (out / "sessions" / sid / f"{sid}_meta.json").write_text("{ not json")
    problems, session = ct.check_session(out, sid)
    assert session is None
    assert any("SessionStore.load" in p for p in problems)
    assert any("UNREADABLE" in p for p in problems)
    assert any("sessions view" in p for p in problems)
    assert ct.stage_at(out, sid) == "unloadable"


def test_a_folder_left_by_a_kill_inside_create_is_accepted_only_if_not_unreadable(tmp_path):
    out = tmp_path / "output"
    sid = "session_20250101_000000"
    folder = out / "sessions" / sid
    folder.mkdir(parents=True)
    (folder / ".lock").write_text("")

    def listing(status):
        def cli(args):
            if args[:2] == ["sessions", "list"] and "--json" in args:
                return 0, json.dumps([{"id": sid, "status": status, "error": "meta file is missing"}])
            return 0, ""
        return cli

    assert ct.check_session(out, sid, cli=listing("ABANDONED"))[0] == []
    problems = ct.check_session(out, sid, cli=listing("UNREADABLE"))[0]
    assert len(problems) == 1 and "no meta" in problems[0] and "UNREADABLE" in problems[0]
    (folder / "story.json").write_text("{}")
    problems = ct.check_session(out, sid, cli=listing("ABANDONED"))[0]
    assert problems == [f"{sid} has no meta but holds story.json"]
    assert ct.stage_at(out, sid) == "create"


def test_options_not_as_requested_are_reported(finished):
    out, sid = finished

    def edit(meta):
        meta["backends"]["story"]["options"]["shots"] = 7
        meta["backends"]["video"]["options"]["width"] = 1280

    _edit_meta(out, sid, edit)
    problems = ct.check_options(_load(out, sid), REQUESTED)
    assert problems == ["story option shots is 7, asked for 3", "video option width is 1280, asked for 320"]


def test_where_a_kill_landed_is_read_from_the_session(finished):
    out, sid = finished

    def steps(meta):
        meta["steps"].update(shots="todo", images="todo", videos="todo", assemble="todo")
        meta["status"] = "IN_PROGRESS"
        meta["film"]["state"] = "todo"
        for shot in meta["shots"]:
            shot["video"]["state"] = "todo"

    _edit_meta(out, sid, steps)
    assert ct.stage_at(out, sid) == "shots"
    _edit_meta(out, sid, lambda m: m["steps"].update(shots="done"))
    assert ct.stage_at(out, sid) == "videos"
    _edit_meta(out, sid, lambda m: m.update(backends={}))
    assert ct.stage_at(out, sid) == "create"
    assert ct.stage_at(out, None) == "startup"


def test_a_film_that_does_not_decode_is_reported(finished, tmp_path):
    out, sid = finished
    film = out / "sessions" / sid / "film.mp4"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(film.read_bytes()[: film.stat().st_size * 2 // 3])
    assert ct.film_problems(film) is None
    assert ct.film_problems(cut) is not None
    assert ct.film_problems(tmp_path / "none.mp4") is not None


# -- check 5: ffmpeg of a killed runner -------------------------------------------------------

_RUNNER = """
import subprocess, sys, time
proc = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, start_new_session=True)
print(proc.pid, flush=True)
time.sleep(60)
"""


def _runner_with_ffmpeg(*ffmpeg_args: str) -> tuple[subprocess.Popen, int]:
    """A stand-in runner that starts ffmpeg in its own process session, as today's
    reelforge/ffmpeg.py does; returns (runner, ffmpeg pid)."""
    runner = subprocess.Popen([sys.executable, "-c", _RUNNER, ct.ffmpeg_exe(), "-nostdin", *ffmpeg_args],
                              stdout=subprocess.PIPE, text=True)
    return runner, int(runner.stdout.readline())


def _gone(pid: int) -> bool:
    st = ct._stat(pid)
    return st is None or st[1] in ("Z", "X")


def test_an_ffmpeg_still_running_after_the_grace_is_a_survivor_and_is_stopped():
    watch = ct.FfmpegWatch(grace=0.3, subreaper=False)
    runner, ff = _runner_with_ffmpeg("-re", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "60", "-f", "null", "-")
    wait_until(lambda: ff in ct.ffmpeg_processes(ppid=runner.pid), "ffmpeg running under its runner")
    watch.before_kill(runner.pid)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    watch.after_kill(runner.pid, "test kill", kill=1)
    problems = watch.poll(wait=True)
    assert len(problems) == 1 and problems[0][0] == 1
    assert f"ffmpeg {ff} " in problems[0][1] and "still running" in problems[0][1]
    deadline = time.monotonic() + 60  # returns as soon as it is gone
    while not _gone(ff) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(ff)


def test_a_writing_ffmpeg_that_outlives_its_runner_is_reported_even_within_the_grace(tmp_path):
    assert ct.set_child_subreaper(True)
    try:
        watch = ct.FfmpegWatch(grace=30, subreaper=True)
        out = tmp_path / "film.partial.mp4"
        runner, ff = _runner_with_ffmpeg("-re", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "1",
                                         "-f", "mp4", "-y", str(out))
        # paused until the watch has seen it: its one second cannot end first on a slow machine
        os.kill(ff, signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while ct._stat(ff)[1] not in ("T", "t"):
            assert time.monotonic() < deadline, "ffmpeg did not stop"
            time.sleep(0.01)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        watch.after_kill(runner.pid, "test kill", kill=2)
        os.kill(ff, signal.SIGCONT)
        problems = watch.poll(wait=True)
    finally:
        ct.set_child_subreaper(False)
    assert problems == [(2, f"ffmpeg {ff} (writing film.partial.mp4) was not killed with its runner "
                            f"(test kill): it ran on and exited with code 0")]
    assert out.is_file()


def test_aim_names_a_known_target_and_trigger():
    assert ct.parse_aim("shots:file:shots.json") == ("shots", "file:shots.json")
    assert ct.parse_aim("videos") == ("videos", None)
    with pytest.raises(SystemExit, match="unknown target"):
        ct.parse_aim("film")
    with pytest.raises(SystemExit, match="no trigger"):
        ct.parse_aim("story:folder")


# -- issue 15: $TMPDIR and the journal's own done records ------------------------------------

def test_anything_under_the_runners_tmpdir_is_reported_once_and_kept_as_evidence(tmp_path):
    tmpdir, evidence = tmp_path / "tmpdir", tmp_path / "evidence"
    tmpdir.mkdir()
    assert ct.check_tmpdir(tmpdir, evidence) == []
    (tmpdir / "reelforge-mix-abc").mkdir()
    (tmpdir / "reelforge-mix-abc" / "raw.wav").write_bytes(b"\0" * 1000)
    (tmpdir / "stray.txt").write_text("x")
    problems = ct.check_tmpdir(tmpdir, evidence)
    assert sorted(problems) == ["$TMPDIR holds reelforge-mix-abc (1,000 bytes)", "$TMPDIR holds stray.txt (1 bytes)"]
    assert sorted(p.name for p in evidence.iterdir()) == ["reelforge-mix-abc", "stray.txt"]
    assert ct.check_tmpdir(tmpdir, evidence) == []  # counted once


def test_the_runners_get_the_harness_tmpdir(tmp_path):
    env = ct.runner_env(tmp_path)
    assert env["TMPDIR"] == env["TMP"] == env["TEMP"] == str(tmp_path)


def _journal_done(folder: Path, seq: int, shot: int, stage: str, rel: str, pending: str | None = None) -> dict:
    path = folder / (pending if pending and not (folder / rel).exists() else rel)
    fields = {"state": "done", "path": rel, "sha256": ct.sha256_file(path), "size": path.stat().st_size,
              "mtime_ns": path.stat().st_mtime_ns, "pending": pending}
    with open(folder / "journal.jsonl", "a") as fh:
        fh.write(json.dumps({"seq": seq, "t": "2026-12-04T00:00:00", "op": "shot", "shot": shot,
                             "stage": stage, "set": fields}) + "\n")
    return fields


def test_a_done_record_still_only_in_the_journal_is_checked_against_its_file(finished):
    out, sid = finished
    folder = out / "sessions" / sid
    seq = json.loads((folder / f"{sid}_meta.json").read_text())["journal_seq"]
    _journal_done(folder, seq + 1, 2, "videos", "videos/shot_002.mp4")
    problems, journal_only = ct.check_journal(folder, _load(out, sid))
    assert problems == [] and journal_only == 1
    clip = folder / "videos" / "shot_002.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    clip.write_bytes(bytes(data))
    problems, _ = ct.check_journal(folder, None)
    assert problems == [f"journal seq {seq + 1} (shot 2 videos, not yet in the meta): videos/shot_002.mp4 "
                        f"does not match its journalled sha256"]


def test_a_journalled_done_record_the_session_does_not_replay_is_reported(finished):
    out, sid = finished
    folder = out / "sessions" / sid
    seq = json.loads((folder / f"{sid}_meta.json").read_text())["journal_seq"]
    _journal_done(folder, seq + 1, 1, "images", "images/shot_001.png")
    session = _load(out, sid)
    session.shot_state(1).image.sha256 = "0" * 64  # as if the replay had lost the record
    problems, _ = ct.check_journal(folder, session)
    assert problems == [f"journal seq {seq + 1} (shot 1 images, not yet in the meta): the loaded session "
                        f"does not have this done record"]


def test_a_torn_last_journal_line_and_a_pending_rename_are_not_problems(finished):
    out, sid = finished
    folder = out / "sessions" / sid
    seq = json.loads((folder / f"{sid}_meta.json").read_text())["journal_seq"]
    clip, scratch = folder / "videos" / "shot_001.mp4", folder / ".work" / "videos" / "shot_001" / "c.mp4"
    scratch.parent.mkdir(parents=True)
    os.replace(clip, scratch)
    _journal_done(folder, seq + 1, 1, "videos", "videos/shot_001.mp4", pending=".work/videos/shot_001/c.mp4")
    with open(folder / "journal.jsonl", "a") as fh:
        fh.write('{"seq": 99, "op": "shot", "sh')
    problems, journal_only = ct.check_journal(folder, None)
    assert problems == [] and journal_only == 1
    scratch.unlink()
    problems, _ = ct.check_journal(folder, None)
    assert problems == [f"journal seq {seq + 1} (shot 1 videos, not yet in the meta): videos/shot_001.mp4 is missing"]
