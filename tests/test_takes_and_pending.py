"""Issue 18 items 1, 2 and 4: a take carries the inputs that made it and `use` puts them back;
a redo asks for something new (a new seed, said out loud) and never keeps a duplicate; a
session with edits not yet in its film says so (IN PROGRESS, [EDIT], the film stale)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import attrs
from click.testing import CliRunner
from support import wait_for_run

from reelforge.cli.core import cli
from reelforge.store.meta import COMPLETE, DONE, IN_PROGRESS
from reelforge.store.safefs import sha256_file
from reelforge.store.sessions import SessionStore

ROOT = Path(__file__).resolve().parent.parent
#: The offline defaults (offline planner, storyboard, kenburns, espeak), small and quick.
SMALL = ["-o", "shots=3", "-o", "storyboard.width=320", "-o", "storyboard.height=180",
         "-o", "kenburns.width=320", "-o", "kenburns.height=180", "-o", "kenburns.fps=12",
         "-o", "kenburns.preset=ultrafast"]
FAKE = ["--story-llm", "fake", "--image-gen", "fake", "--renderer", "fake", "--narrator", "none"]


def invoke(out: Path, *args: str):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)])


def new_session(out: Path, *backend_args: str) -> str:
    r = invoke(out, "run", "A lighthouse keeper at dusk", "--new", *backend_args)
    assert r.exit_code == 0, r.output
    return SessionStore(out).ids()[0]


def plan(out: Path, sid: str) -> dict[int, dict]:
    return {s["id"]: s for s in json.loads((out / "sessions" / sid / "shots.json").read_text())["shots"]}


def meta(out: Path, sid: str):
    return SessionStore(out).load(sid).meta


# -- 1. a take is recorded with the inputs that made it ------------------------------------------

def test_a_take_keeps_its_own_prompt_and_use_brings_picture_and_prompt_back(out):
    sid = new_session(out, *SMALL)
    folder = out / "sessions" / sid
    first_prompt, first_seed = plan(out, sid)[2]["image_prompt"], plan(out, sid)[2]["seed"]
    first_image = sha256_file(folder / "images" / "shot_002.png")
    r = invoke(out, "shots", "edit", sid, "2", "--image-prompt", "a brass telescope on the gallery rail at noon")
    assert r.exit_code == 0, r.output
    r = invoke(out, "resume", sid, *SMALL)
    assert r.exit_code == 0, r.output
    assert sha256_file(folder / "images" / "shot_002.png") != first_image

    take = meta(out, sid).shot(2).image.takes[0]
    assert take["inputs"]["image_prompt"] == first_prompt and take["prompt"] == first_prompt
    assert take["inputs"]["seed"] == take["seed"] == first_seed and take["inputs"]["options"] == {"width": 320, "height": 180}
    r = invoke(out, "takes", sid, "2")
    assert r.exit_code == 0, r.output
    take_line = next(line for line in r.output.splitlines() if "take 1: images/" in line)
    assert first_prompt[:40] in take_line and "telescope" not in take_line
    assert "a brass telescope on the gallery rail" in next(line for line in r.output.splitlines() if line.startswith("image:"))

    r = invoke(out, "use", sid, "2", "--take", "1", *SMALL)
    assert r.exit_code == 0, r.output
    assert "image take 1 brought back, with its image_prompt back in shots.json" in r.output
    assert "adopted" not in r.output
    assert sha256_file(folder / "images" / "shot_002.png") == first_image
    assert plan(out, sid)[2]["image_prompt"] == first_prompt  # the prompt that made the picture
    m = meta(out, sid)
    assert m.status == COMPLETE and m.edited == []
    assert m.shot(2).image.inputs["image_prompt"] == first_prompt
    # the gull picture is a take now, with the gull prompt; nothing was lost or doubled
    assert [(t["n"], t["inputs"]["image_prompt"]) for t in m.shot(2).image.takes] == [
        (2, "a brass telescope on the gallery rail at noon")]


def test_a_take_an_older_version_kept_says_inputs_not_recorded_and_use_restores_only_its_seed(out, fakes):
    sid = new_session(out, *FAKE)
    folder = out / "sessions" / sid
    r = invoke(out, "redo", sid, "--shot", "2", "--seed", "77", *FAKE)
    assert r.exit_code == 0, r.output
    r = invoke(out, "shots", "edit", sid, "2", "--image-prompt", "the replacing prompt")
    assert r.exit_code == 0, r.output
    # As an older version wrote it: no inputs, and the prompt of the edit that replaced it.
    meta_file = folder / f"{sid}_meta.json"
    data = json.loads(meta_file.read_text())
    for take in data["shots"][1]["image"]["takes"]:
        take.pop("inputs", None)
        take["prompt"] = "the replacing prompt"
    meta_file.write_text(json.dumps(data))
    r = invoke(out, "takes", sid, "2")
    assert r.exit_code == 0, r.output
    take_line = next(line for line in r.output.splitlines() if "take 1: images/" in line)
    assert "(inputs not recorded)" in take_line and "replacing" not in take_line
    r = invoke(out, "use", sid, "2", "--take", "1", *FAKE)
    assert r.exit_code == 0, r.output
    assert "image take 1 brought back, with its seed back" in r.output and "were not recorded" in r.output
    shot = plan(out, sid)[2]
    assert shot["seed"] == 2 and shot["image_prompt"] == "the replacing prompt"


# -- 2. a redo asks for something new -------------------------------------------------------------

def test_redo_gives_a_new_seed_says_which_and_makes_a_new_picture(out):
    sid = new_session(out, *SMALL)
    folder = out / "sessions" / sid
    image, clip = (sha256_file(folder / "images" / "shot_001.png"), sha256_file(folder / "videos" / "shot_001.mp4"))
    first_seed = plan(out, sid)[1]["seed"]
    r = invoke(out, "redo", sid, "--shot", "1", *SMALL)
    assert r.exit_code == 0, r.output
    seed = plan(out, sid)[1]["seed"]
    assert seed != first_seed and f"Shot 1: new seed {seed} (was {first_seed})" in r.output
    assert sha256_file(folder / "images" / "shot_001.png") != image
    assert sha256_file(folder / "videos" / "shot_001.mp4") != clip
    m = meta(out, sid)
    takes = m.shot(1).image.takes
    assert [(t["n"], t["seed"], t["rejected"]) for t in takes] == [(1, first_seed, True)]
    assert takes[0]["sha256"] == image != m.shot(1).image.sha256
    assert m.status == COMPLETE

    # A redo of the clip keeps the picture and moves the camera otherwise.
    image, clip = m.shot(1).image.sha256, m.shot(1).video.sha256
    r = invoke(out, "redo", sid, "--shot", "1", "--stage", "video", "--seed", "4242", *SMALL)
    assert r.exit_code == 0, r.output
    assert "Shot 1: new seed 4242" in r.output
    m = meta(out, sid)
    assert m.shot(1).image.sha256 == image and m.shot(1).video.sha256 != clip
    assert len({t["sha256"] for t in m.shot(1).video.takes} | {m.shot(1).video.sha256}) == len(
        m.shot(1).video.takes) + 1

    # The same seed again, and a voice (eSpeak says a line the same whatever the seed): refused.
    r = invoke(out, "redo", sid, "--shot", "1", "--seed", "4242", *SMALL)
    assert r.exit_code == 2 and "already has seed 4242" in r.output
    r = invoke(out, "redo", sid, "--shot", "1", "--stage", "narration", *SMALL)
    assert r.exit_code == 2 and "espeak makes the same voice" in r.output and "--narration" in r.output
    assert meta(out, sid).shot(1).narration.takes == []


def test_a_redo_that_makes_the_same_bytes_as_a_take_keeps_them_once_and_says_so(out, fakes, monkeypatch):
    sid = new_session(out, *FAKE)
    folder = out / "sessions" / sid
    before = sha256_file(folder / "images" / "shot_001.png")
    # A backend that says it uses the seed but makes the same picture whatever it is.
    generate = fakes.image.generate
    monkeypatch.setattr(fakes.image, "generate", lambda shot, job: generate(attrs.evolve(shot, seed=1), job))
    r = invoke(out, "redo", sid, "--shot", "1", "--seed", "257", *FAKE)
    assert r.exit_code == 0, r.output
    assert "made the same image as take 1" in r.output
    m = meta(out, sid)
    assert m.shot(1).image.sha256 == before and m.shot(1).image.takes == []
    assert not list((folder / "images" / "takes").iterdir())
    assert m.shot(1).image.seed == 257 and m.status == COMPLETE


# -- 4. pending work is shown -------------------------------------------------------------------------

def test_an_edit_makes_the_session_in_progress_with_the_shot_marked_until_the_film_is_remade(out, fakes):
    sid = new_session(out, *FAKE)
    r = invoke(out, "shots", "edit", sid, "2", "--image-prompt", "a gull on the rail")
    assert r.exit_code == 0, r.output
    m = meta(out, sid)
    assert m.status == IN_PROGRESS and m.edited == [2]
    r = invoke(out, "sessions", "list")
    row = next(line for line in r.output.splitlines() if line.startswith(sid))
    assert "IN PROGRESS" in row and "stale" in row and "COMPLETE" not in row
    r = invoke(out, "sessions", "view", sid)
    assert "Status: IN PROGRESS" in r.output and "[EDIT]   Shot 2:" in r.output
    assert "[DONE]   Shot 1:" in r.output and "stale" in r.output
    r = invoke(out, "resume", sid, *FAKE)
    assert r.exit_code == 0, r.output
    assert f"Session {sid} (IN PROGRESS)" in r.output and "(COMPLETE)" not in r.output
    m = meta(out, sid)
    assert m.status == COMPLETE and m.edited == []
    r = invoke(out, "sessions", "view", sid)
    assert "[EDIT]" not in r.output and "stale" not in r.output


def test_an_edit_the_film_does_not_show_completes_without_remaking_the_film(out, fakes):
    sid = new_session(out, *FAKE)
    film = sha256_file(out / "sessions" / sid / "film.mp4")
    # The fake image generator and renderer draw no description: nothing is made again.
    r = invoke(out, "shots", "edit", sid, "3", "--description", "a quieter line for the list")
    assert r.exit_code == 0 and meta(out, sid).status == IN_PROGRESS
    fakes.image.calls.clear()
    r = invoke(out, "resume", sid, *FAKE)
    assert r.exit_code == 0, r.output
    assert fakes.image.calls == [] and sha256_file(out / "sessions" / sid / "film.mp4") == film
    m = meta(out, sid)
    assert m.status == COMPLETE and m.edited == []


# -- a redo killed after its take was archived -----------------------------------------------------

def _env(log: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(REELFORGE_PLUGINS="crash_plugin", REELFORGE_FAKE_LOG=str(log), REELFORGE_LOAD_PLUGINS="",
               REELFORGE_RETRY_BACKOFF="0",
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")]), **extra)
    return env


def _reelforge(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reelforge", *args, "--story-llm", "crashtest", "--image-gen", "crashtest",
            "--renderer", "crashtest", "--narrator", "none", "--output-dir", str(out)]


def test_a_redo_killed_after_archiving_its_take_resumes_with_nothing_lost_and_no_duplicate(tmp_path):
    out, log = tmp_path / "output", tmp_path / "calls.log"
    done = subprocess.run(_reelforge(out, "run", "A city of traders", "--new"), env=_env(log),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    sid = SessionStore(out).ids()[0]
    folder = out / "sessions" / sid
    old = meta(out, sid).shot(2).image
    # Every image call is held: the redo archives the old image, gives a new seed, starts
    # making the new image, and is killed there.
    proc = subprocess.Popen(_reelforge(out, "redo", sid, "--shot", "2", "--seed", "99"),
                            env=_env(log, REELFORGE_CRASH_HOLD="image:0"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def started() -> bool:
        try:
            return SessionStore(out).load(sid).meta.shot(2).image.attempts > old.attempts
        except Exception:
            return False

    wait_for_run(started, proc, "the new image of shot 2 started")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    m = meta(out, sid)
    assert m.status == IN_PROGRESS and m.edited == [2] and plan(out, sid)[2]["seed"] == 99
    take = m.shot(2).image.takes[0]
    assert take["sha256"] == old.sha256 and take["inputs"]["seed"] == 2
    assert sha256_file(folder / take["path"]) == old.sha256  # the old picture is safe
    r = invoke(out, "sessions", "view", sid)
    assert "[EDIT]" in r.output and "IN PROGRESS" in r.output

    again = subprocess.run(_reelforge(out, "resume", sid), env=_env(log), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    m = meta(out, sid)
    assert m.status == COMPLETE and m.edited == [] and m.shot(2).image.state == DONE
    assert m.shot(2).image.seed == 99 and m.shot(2).image.sha256 != old.sha256
    assert [t["n"] for t in m.shot(2).image.takes] == [1]  # archived once, not twice
    assert sorted(p.name for p in (folder / "images" / "takes").iterdir()) == ["shot_002.1.png"]
    assert sha256_file(folder / "images" / "takes" / "shot_002.1.png") == old.sha256
