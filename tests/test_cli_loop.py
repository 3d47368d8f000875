"""Issue 18 items 5 and 6, through the real command line: real clip lengths beside the planned
ones, `shots list/show`, `export --force`, replaced files listed and pruned (a SIGKILL part-way
leaves a consistent session), exit codes, `run` with no idea, the review gate, Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner
from support import wait_reading_stdin

from reelforge.cli.core import cli
from reelforge.media import mp4info
from reelforge.media.checks import clip_seconds
from reelforge.store.meta import ABANDONED, DONE, ArtifactState
from reelforge.store.safefs import sha256_file
from reelforge.store.sessions import SessionStore

FAKE = ["--story-llm", "fake", "--image-gen", "fake", "--renderer", "fake", "--narrator", "none"]


def invoke(out, *args, input=None):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)], input=input)


@pytest.fixture
def film(out, fakes):
    """A finished three-shot session (fake backends: each clip is 0.4 s, the plan says more)."""
    r = invoke(out, "run", "A lighthouse", "--new", *FAKE)
    assert r.exit_code == 0, r.output
    return SessionStore(out).ids()[0]


def real_lengths(out, sid) -> dict[int, float]:
    path = out / "sessions" / sid
    return {n: round(mp4info.read_facts(path / "videos" / f"shot_{n:03d}.mp4")["duration"], 2) for n in (1, 2, 3)}


def edit_and_resume(out, sid, shot, prompt):
    """A new motion prompt and seed (the fake's picture follows the seed): a new image, clip and film."""
    seed = 1000 + shot + len(SessionStore(out).load(sid).meta.shot(shot).image.takes)
    r = invoke(out, "shots", "edit", sid, str(shot), "--motion-prompt", prompt, "--seed", str(seed))
    assert r.exit_code == 0, r.output
    r = invoke(out, "resume", sid, *FAKE)
    assert r.exit_code == 0, r.output


def replaced_on_disk(out, sid) -> list[str]:
    root = out / "sessions" / sid
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and ".replaced" in p.parts)


# -- item 5: the real length -------------------------------------------------------------------

def test_export_report_and_serve_show_the_clips_real_length_beside_the_planned_one(out, film):
    for shot in (1, 2, 3):  # planned longer than the fake renderer's clips (0.4 s at most)
        assert invoke(out, "shots", "edit", film, str(shot), "--duration", "1.5").exit_code == 0
    assert invoke(out, "resume", film, *FAKE).exit_code == 0
    plan = {s["id"]: s for s in json.loads((out / "sessions" / film / "shots.json").read_text())["shots"]}
    real = real_lengths(out, film)
    assert all(real[n] != plan[n]["duration_s"] for n in real)  # the plan is not the film
    r = invoke(out, "export", film, "--prompts")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["shots"]
    assert {row["shot"]: (row["duration_s"], row["clip_s"]) for row in rows} == \
        {n: (plan[n]["duration_s"], real[n]) for n in real}
    r = invoke(out, "export", film, "--prompts", "--format", "txt")
    assert f"{plan[1]['duration_s']:g} s planned, clip {real[1]:g} s, seed {plan[1]['seed']}" in r.output
    r = invoke(out, "report", film)
    assert r.exit_code == 0, r.output
    page = (out / "sessions" / film / "index.html").read_text()
    for n in real:
        assert f"{plan[n]['duration_s']:g} s planned · clip {real[n]:g} s" in page

    from starlette.testclient import TestClient

    from reelforge.web.app import create_app

    served = TestClient(create_app(out, csrf_token="t" * 20), base_url="http://127.0.0.1:8765")
    html = served.get(f"/s/{film}").text
    assert f"{plan[2]['duration_s']:g} s planned · clip {real[2]:g} s" in html
    state = served.get(f"/s/{film}/state.json").json()
    assert [s["clip_s"] for s in state["shots"]] == [real[1], real[2], real[3]]


def test_a_clip_recorded_without_its_length_is_read_from_the_file(out, film):
    session = SessionStore(out).load(film)
    art = session.meta.shot(2).video
    recorded = art.info["duration"]  # cached in the record when the clip was committed
    bare = ArtifactState(state=DONE, path=art.path, info={})  # as an older reelforge recorded it
    assert clip_seconds(session.path, bare) == pytest.approx(recorded)
    assert clip_seconds(session.path, ArtifactState()) is None  # no clip yet


# -- item 6: shots list / show -----------------------------------------------------------------

def test_shots_list_has_one_line_per_shot_and_json(out, film):
    edit_and_resume(out, film, 2, "slow pan right")
    real = real_lengths(out, film)
    plan = json.loads((out / "sessions" / film / "shots.json").read_text())["shots"]
    r = invoke(out, "shots", "list", film)
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if re.match(r"\s+\d+\s+\[", line)]
    assert len(lines) == 3
    assert lines[1].split()[:6] == ["2", "[DONE]", f"{plan[1]['duration_s']:g}", "s", f"{real[2]:g}", "s"]
    assert str(plan[1]["seed"]) in lines[1] and plan[1]["image_prompt"].split()[0] in lines[1]
    r = invoke(out, "shots", "list", film, "--json")
    rows = json.loads(r.output)
    takes = {n: len(list((out / "sessions" / film).glob(f"*/takes/shot_{n:03d}.*"))) for n in (1, 2, 3)}
    assert takes[2] >= 1 and takes[1] == 0
    assert [(row["shot"], row["status"], row["takes"]) for row in rows] == \
        [(n, "DONE", takes[n]) for n in (1, 2, 3)]
    seed, count = re.match(r"\s*2\s+\[DONE\]\s+\S+ s\s+\S+ s\s+(\d+)\s+(\d+)\s", lines[1]).groups()
    assert (int(seed), int(count)) == (plan[1]["seed"], takes[2])
    assert rows[1]["clip_s"] == real[2] and rows[1]["seed"] == plan[1]["seed"]


def test_shots_show_has_prompts_seed_takes_and_files_with_sizes(out, film):
    edit_and_resume(out, film, 2, "slow pan right")
    root = out / "sessions" / film
    r = invoke(out, "shots", "show", film, "2", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["plan"]["motion_prompt"] == "slow pan right"
    video = data["stages"]["video"]
    assert video["path"] == "videos/shot_002.mp4" and video["size"] == os.path.getsize(root / video["path"])
    assert [(t["n"], t["size"]) for t in video["takes"]] == [(1, os.path.getsize(root / "videos/takes/shot_002.1.mp4"))]
    r = invoke(out, "shots", "show", film, "2")
    assert r.exit_code == 0, r.output
    assert "motion_prompt: slow pan right" in r.output and f"seed: {data['plan']['seed']}" in r.output
    assert "take 1: videos/takes/shot_002.1.mp4" in r.output and "video: videos/shot_002.mp4 (" in r.output


# -- item 6: exit codes ----------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["sessions", "view", "nosuch"], "not a session id"),
    (["sessions", "view", "session_20990101_000000"], "no session"),
    (["takes", "latest", "99"], "no shot 99"),
    (["takes", "latest", "99", "--prune", "--yes"], "no shot 99"),
    (["shots", "show", "latest", "99"], "no shot 99"),
    (["shots", "list", "2099"], "no session matches"),
    (["shots", "edit", "latest", "99", "--seed", "1"], "no shot 99"),
    (["use", "latest", "1", "--take", "9", *FAKE], "no image take 9"),
    (["use", "latest", "99", "--take", "1", *FAKE], "no shot 99"),
    (["redo", "latest", "--shot", "99", *FAKE], "no shot 99"),
    (["export", "nosuch", "--prompts"], "not a session id"),
    (["report", "nosuch"], "not a session id"),
    (["sessions", "prune", "nosuch"], "not a session id"),
    (["sessions", "rm", "2099", "--yes"], "no session matches"),
    (["resume", "2099", *FAKE], "no session matches"),
    (["resume", *FAKE], "no incomplete session"),
    (["run", "--resume", *FAKE], "no incomplete session"),
    (["takes", "latest", "one"], "is not a valid integer"),
])
def test_not_found_and_bad_input_are_usage_errors(out, film, args, message):
    before = sha256_file(out / "sessions" / film / "film.mp4")
    r = invoke(out, *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert SessionStore(out).ids() == [film] and sha256_file(out / "sessions" / film / "film.mp4") == before


def test_run_with_no_idea_answered_no_stops_and_says_how_to_give_one(out, fakes):
    from reelforge.errors import StageError

    fakes.video.fail(1, StageError("boom"))
    invoke(out, "run", "First idea", *FAKE)
    r = invoke(out, "run", *FAKE, input="n\nA lighthouse in a storm\n")
    assert r.exit_code == 2, r.output
    assert "Idea: A lighthouse" not in r.output and 'reelforge run "' in r.output and "--new" in r.output
    assert len(SessionStore(out).ids()) == 1


def test_the_review_gate_points_to_the_report(out, fakes):
    r = invoke(out, "run", "A lighthouse", "--new", "--review", "images", *FAKE)
    assert r.exit_code == 0, r.output
    sid = SessionStore(out).ids()[0]
    assert f"reelforge report {sid}" in r.output and "sessions view" not in r.output
    r = invoke(out, "sessions", "view", sid)
    assert f"reelforge report {sid}" in r.output


# -- item 6: export -o never overwrites silently -------------------------------------------------

def test_export_refuses_an_existing_file_without_force(out, film, tmp_path):
    target = tmp_path / "prompts.json"
    target.write_text("keep me")
    r = invoke(out, "export", film, "--prompts", "-o", str(target))
    assert r.exit_code == 2 and "exists; pass --force" in r.output
    assert target.read_text() == "keep me"
    timeline = tmp_path / "cut.otio"
    timeline.write_text("keep me too")
    r = invoke(out, "export", film, "--timeline", str(timeline))
    assert r.exit_code == 2 and timeline.read_text() == "keep me too"
    r = invoke(out, "export", film, "--prompts", "-o", str(target), "--force")
    assert r.exit_code == 0, r.output
    assert json.loads(target.read_text())["session"] == film
    r = invoke(out, "export", film, "--bundle", str(tmp_path / "b"), "--force")
    assert r.exit_code == 2 and "--force goes with" in r.output


# -- item 6: replaced files --------------------------------------------------------------------

def test_replaced_films_are_listed_and_pruned_leaving_the_session_whole(out, film, fakes):
    edit_and_resume(out, film, 1, "pan left")
    edit_and_resume(out, film, 2, "pan right")
    found = replaced_on_disk(out, film)
    assert len(found) >= 2 and all(p.startswith(".replaced/film.") for p in found)
    size = sum(os.path.getsize(out / "sessions" / film / p) for p in found)
    r = invoke(out, "sessions", "view", film, "--json")
    assert json.loads(r.output)["replaced"] == {"files": len(found), "bytes": size}
    r = invoke(out, "sessions", "view", film)
    assert f"Replaced: {len(found)} files" in r.output and f"reelforge sessions prune {film}" in r.output
    r = invoke(out, "takes", film, "1")
    assert f"Replaced: {len(found)} files" in r.output
    # asks first; n keeps everything
    r = invoke(out, "sessions", "prune", film, input="n\n")
    assert r.exit_code == 0 and "Nothing deleted." in r.output and replaced_on_disk(out, film) == found
    film_sum = sha256_file(out / "sessions" / film / "film.mp4")
    r = invoke(out, "sessions", "prune", film, input="y\n")
    assert r.exit_code == 0, r.output
    assert f"Deleted {len(found)} replaced files" in r.output and replaced_on_disk(out, film) == []
    assert (out / "sessions" / film / "videos" / "takes" / "shot_001.1.mp4").is_file()
    assert invoke(out, "sessions", "verify", film).exit_code == 0
    fakes.image.calls.clear()
    fakes.video.calls.clear()
    r = invoke(out, "resume", film, *FAKE)
    assert r.exit_code == 0, r.output
    assert fakes.image.calls == [] and fakes.video.calls == []  # nothing the session needed was deleted
    assert sha256_file(out / "sessions" / film / "film.mp4") == film_sum
    r = invoke(out, "sessions", "prune", film)
    assert r.exit_code == 0 and "has no replaced files" in r.output


def test_pruning_keeps_an_abandoned_session_abandoned_and_is_refused_while_locked(out, fakes):
    from reelforge.errors import StageError

    fakes.video.fail(3, StageError("boom"))
    invoke(out, "run", "A lighthouse", *FAKE)
    sid = SessionStore(out).ids()[0]
    aside = out / "sessions" / sid / "videos" / ".replaced"
    aside.mkdir(parents=True)
    (aside / "shot_003.20261205_000000.1.mp4").write_bytes(b"old")
    assert invoke(out, "sessions", "abandon", sid).exit_code == 0
    from reelforge.store.session import Session

    holder = Session(SessionStore(out), sid)
    holder.lock()
    try:
        r = invoke(out, "sessions", "prune", sid, "--yes")
        assert r.exit_code == 1 and "being run by another" in r.output
        assert (aside / "shot_003.20261205_000000.1.mp4").exists()
    finally:
        holder.close()
    r = invoke(out, "shots", "show", sid, "3")
    assert "replaced: videos/.replaced/shot_003.20261205_000000.1.mp4 (3 bytes)" in r.output
    r = invoke(out, "sessions", "prune", sid, "--yes")
    assert r.exit_code == 0 and "Deleted 1 replaced file (3 bytes)" in r.output
    assert SessionStore(out).load(sid).meta.status == ABANDONED


KILL_ON_SECOND_UNLINK = textwrap.dedent("""
    import os, signal, sys
    from reelforge.cli.core import cli
    real_unlink, seen = os.unlink, []
    def unlink(path, *a, **k):
        real_unlink(path, *a, **k)
        if ".replaced" in str(path):
            seen.append(path)
            if len(seen) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
    os.unlink = unlink
    cli(sys.argv[1:], prog_name="reelforge")
""")


def test_a_prune_killed_part_way_leaves_a_consistent_session(out, film, fakes):
    for shot in (1, 2, 3):
        edit_and_resume(out, film, shot, f"pan {shot}")
    found = replaced_on_disk(out, film)
    assert len(found) >= 3
    film_sum = sha256_file(out / "sessions" / film / "film.mp4")
    proc = subprocess.run([sys.executable, "-c", KILL_ON_SECOND_UNLINK, "sessions", "prune", film, "--yes",
                           "--output-dir", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = replaced_on_disk(out, film)
    assert len(left) == len(found) - 2 and set(left) < set(found)
    r = invoke(out, "sessions", "view", film, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["replaced"]["files"] == len(left)
    assert invoke(out, "sessions", "verify", film).exit_code == 0
    r = invoke(out, "sessions", "prune", film, "--yes")  # the lock died with the process
    assert r.exit_code == 0 and replaced_on_disk(out, film) == []
    fakes.video.calls.clear()
    r = invoke(out, "resume", film, *FAKE)
    assert r.exit_code == 0 and fakes.video.calls == []
    assert sha256_file(out / "sessions" / film / "film.mp4") == film_sum


# -- item 6: Ctrl-C ---------------------------------------------------------------------------

def _read_until(fd: int, wanted: str, proc, deadline_s: float = 120.0) -> str:
    """Read a pty until ``wanted`` shows (an event; the deadline only ends a hung test)."""
    seen = ""
    deadline = time.monotonic() + deadline_s
    while wanted not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, f"waiting for {wanted!r}, saw {seen!r}"
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            seen += os.read(fd, 4096).decode(errors="replace")
    return seen


def _read_rest(fd: int) -> str:
    rest = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        rest += chunk
    return rest.decode(errors="replace")


def test_ctrl_c_at_a_prompt_on_a_terminal_ends_with_one_line(out, film):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "reelforge", "sessions", "rm", film, "--output-dir", str(out)],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    try:
        shown = _read_until(master, "and all its files?", proc)
        wait_reading_stdin(proc)  # the prompt waits, as a user sees it before pressing Ctrl-C
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"no exit after Ctrl-C; the terminal showed: {shown!r}") from None
        assert code == 130
        tail = _read_rest(master)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    lines = [line for line in tail.replace("\r", "").splitlines() if line.strip()]
    assert lines == ["interrupted at the question; nothing was changed"], tail
    assert SessionStore(out).ids() == [film]


def test_ctrl_c_while_reading_an_answer_from_a_pipe_ends_with_one_line(out, film):
    class CtrlC(io.BytesIO):
        """Standard input on which the user presses Ctrl-C."""

        def read(self, size=-1):
            if size == 0:
                return b""
            raise KeyboardInterrupt

        read1 = readline = read

    r = CliRunner().invoke(cli, ["sessions", "rm", film, "--output-dir", str(out)], input=CtrlC())
    assert r.exit_code == 130 and "Aborted!" not in r.output
    assert r.output.rstrip().splitlines()[-1] == "interrupted at the question; nothing was changed"
    assert SessionStore(out).ids() == [film]


def test_ctrl_c_stops_serve_with_one_line(out):
    proc = subprocess.Popen([sys.executable, "-m", "reelforge", "serve", "--port", "0", "--output-dir", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the socket listens
        assert line.startswith("reelforge serve: http://127.0.0.1:"), line
        import urllib.request

        url = line.split()[2]
        with urllib.request.urlopen(url, timeout=120) as page:  # serving: Ctrl-C now reaches uvicorn
            assert page.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [x for x in err.splitlines() if x.strip()] == ["reelforge serve stopped"], err
