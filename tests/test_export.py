"""Issue 11 item 4: `reelforge export` — prompts (json, csv, txt), a bundle for an editor with
a manifest of digests, and an OpenTimelineIO timeline. The session is only read."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.records import Shot, ShotPlan
from reelforge.store.safefs import sha256_file
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session


def invoke(out, *args):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)], catch_exceptions=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its digest (links as their target text)."""
    found = {}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            p = Path(root) / name
            found[str(p.relative_to(folder))] = os.readlink(p) if p.is_symlink() else digest(p)
    return found


PLAN = ShotPlan(shots=(
    Shot(id=1, scene_id="s1", description="Dawn over the harbour", image_prompt="a harbour at dawn, \"gold\"",
         motion_prompt="slow push in", negative_prompt="blur", duration_s=0.4, seed=11,
         narration="The city wakes."),
    Shot(id=2, scene_id="s2", description="Market, noon", image_prompt="a crowded market,\nnoon light",
         motion_prompt="pan left", duration_s=0.4, seed=22, narration=""),
))


@pytest.fixture
def session(out, fakes):
    fakes.story.enqueue(PLAN)
    result = run_session(out, "A trading city", backends=fakes.narrated)
    assert result.ok, result.failed
    return SessionStore(out).load(result.session_id)


# -- prompts -----------------------------------------------------------------------------

def test_prompts_as_json_are_the_shot_plan(out, session):
    r = invoke(out, "export", "latest", "--prompts")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["session"] == session.id and data["idea"] == "A trading city"
    assert [s["shot"] for s in data["shots"]] == [1, 2]
    first = data["shots"][0]
    assert first == {"shot": 1, "scene": "s1", "description": "Dawn over the harbour",
                     "image_prompt": 'a harbour at dawn, "gold"', "motion_prompt": "slow push in",
                     "negative_prompt": "blur", "narration": "The city wakes.", "duration_s": 0.4, "seed": 11}


def test_prompts_as_csv_round_trip_through_a_csv_reader(out, session):
    r = invoke(out, "export", session.id[len("session_"):], "--prompts", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert list(rows[0]) == ["shot", "scene", "description", "image_prompt", "motion_prompt",
                             "negative_prompt", "narration", "duration_s", "seed"]
    assert rows[1]["image_prompt"] == "a crowded market,\nnoon light"  # a newline inside a cell survives
    assert rows[0]["seed"] == "11" and rows[1]["narration"] == ""


def test_prompts_as_text_name_every_shot_and_prompt(out, session):
    r = invoke(out, "export", "latest", "--prompts", "--format", "txt")
    assert r.exit_code == 0, r.output
    assert "Shot 1 (scene s1, 0.4 s, seed 11)" in r.output
    assert "  Image prompt: a crowded market,\n    noon light" in r.output
    assert "  Narration: The city wakes." in r.output
    assert "Negative prompt" in r.output.split("Shot 2")[0] and "Negative prompt" not in r.output.split("Shot 2")[1]


def test_prompts_to_a_file_and_never_into_the_session(out, session, tmp_path):
    target = tmp_path / "prompts.csv"
    r = invoke(out, "export", "latest", "--prompts", "--format", "csv", "-o", str(target))
    assert r.exit_code == 0, r.output
    assert target.read_text().startswith("shot,scene,description")
    before = snapshot(session.path)
    r = invoke(out, "export", "latest", "--prompts", "-o", str(session.path / "prompts.json"))
    assert r.exit_code == 1 and "never writes into a session" in r.output
    assert snapshot(session.path) == before


def test_export_needs_exactly_one_kind(out, session):
    r = invoke(out, "export", "latest")
    assert r.exit_code == 2 and "give one of --prompts, --bundle DIR or --timeline FILE" in r.output
    r = invoke(out, "export", "latest", "--prompts", "--bundle", "x")
    assert r.exit_code == 2 and "not --prompts and --bundle" in r.output


def test_export_of_a_session_with_no_plan_says_so(out):
    store = SessionStore(out)
    s = store.create("Just started")
    s.close()
    r = invoke(out, "export", "latest", "--prompts")
    assert r.exit_code == 1 and "has no shot plan yet" in r.output


# -- the bundle ---------------------------------------------------------------------------

def test_the_bundle_holds_copies_with_a_manifest_of_their_digests(out, session, tmp_path):
    before = snapshot(session.path)
    dest = tmp_path / "edit" / "city"
    r = invoke(out, "export", "latest", "--bundle", str(dest))
    assert r.exit_code == 0, r.output
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["format"] == "reelforge-bundle" and manifest["session"] == session.id
    listed = {f["path"]: f for f in manifest["files"]}
    expected = {"film.mp4", "film.srt", "film.vtt", "story.json", "scenes.json", "shots.json", "timeline.otio",
                "images/shot_001.png", "images/shot_002.png", "clips/shot_001.mp4", "clips/shot_002.mp4",
                "narration/shot_001.wav", "narration/shot_002.wav"}  # shot 2's is silence
    assert set(listed) == expected
    on_disk = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert on_disk == expected | {"manifest.json"}
    for path, entry in listed.items():
        assert entry["sha256"] == digest(dest / path) and entry["size"] == (dest / path).stat().st_size
    # copies of the session's files, byte for byte; the session is untouched
    meta = session.meta
    assert digest(dest / "clips/shot_002.mp4") == meta.shot(2).video.sha256
    assert digest(dest / "film.mp4") == meta.film.sha256
    assert (dest / "shots.json").read_bytes() == (session.path / "shots.json").read_bytes()
    assert listed["clips/shot_001.mp4"]["kind"] == "clip" and listed["clips/shot_001.mp4"]["shot"] == 1
    assert "shot 1's clip" in listed["clips/shot_001.mp4"]["what"]
    assert manifest["missing"] == []
    assert snapshot(session.path) == before
    assert not list(dest.parent.glob(".city.partial-*"))


def test_the_bundle_folder_must_be_new_or_empty_and_outside_the_sessions(out, session, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    r = invoke(out, "export", "latest", "--bundle", str(full))
    assert r.exit_code == 1 and "is not empty" in r.output
    assert [p.name for p in full.iterdir()] == ["keep.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke(out, "export", "latest", "--bundle", str(empty)).exit_code == 0
    assert (empty / "manifest.json").is_file()

    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    r = invoke(out, "export", "latest", "--bundle", str(link))
    assert r.exit_code == 1 and "symbolic link" in r.output
    assert not (tmp_path / "elsewhere").exists()

    before = snapshot(session.path)
    for inside in (session.path / "bundle", session.path.parent / "bundle", session.path):
        r = invoke(out, "export", "latest", "--bundle", str(inside))
        assert r.exit_code == 1 and "never writes into a session" in r.output, inside
    assert snapshot(session.path) == before
    assert not (session.path.parent / "bundle").exists()


def test_a_damaged_clip_stops_the_bundle_and_leaves_nothing(out, session, tmp_path):
    clip = session.path / "videos" / "shot_002.mp4"
    data = bytearray(clip.read_bytes())
    data[-10] ^= 0xFF
    clip.write_bytes(bytes(data))
    dest = tmp_path / "bundle"
    r = invoke(out, "export", "latest", "--bundle", str(dest))
    assert r.exit_code == 1
    assert "videos/shot_002.mp4" in r.output and "does not match the session's record" in r.output
    assert not dest.exists() and not list(tmp_path.glob(".bundle.partial-*"))


def test_a_link_in_the_session_is_never_followed_into_the_bundle(out, session, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the editor")
    clip = session.path / "videos" / "shot_001.mp4"
    clip.unlink()
    clip.symlink_to(secret)
    dest = tmp_path / "bundle"
    r = invoke(out, "export", "latest", "--bundle", str(dest))
    assert r.exit_code == 1 and "videos/shot_001.mp4" in r.output
    assert not dest.exists()
    assert not any("not for the editor" in p.read_text(errors="replace")
                   for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and p != secret)


def test_an_unfinished_session_bundles_what_there_is_and_lists_the_rest(out, fakes, tmp_path):
    from reelforge.errors import StageError

    fakes.video.fail(2, *[StageError("no clip")] * 5)
    result = run_session(out, "Half done", backends=fakes.backends)
    assert not result.ok
    dest = tmp_path / "half"
    r = CliRunner().invoke(cli, ["export", "latest", "--bundle", str(dest), "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((dest / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert "clips/shot_001.mp4" in paths and "clips/shot_002.mp4" not in paths and "film.mp4" not in paths
    assert "shot 2 clip (failed)" in manifest["missing"]
    assert any(m.startswith("film.mp4") for m in manifest["missing"])
    assert "not in the bundle: shot 2 clip (failed)" in r.output


# -- the timeline -------------------------------------------------------------------------

def test_the_timeline_has_the_clips_in_order_and_the_narration_at_its_shot(out, session, tmp_path):
    otio = pytest.importorskip("opentimelineio")
    target = tmp_path / "city.otio"
    r = invoke(out, "export", "latest", "--timeline", str(target))
    assert r.exit_code == 0, r.output
    timeline = otio.adapters.read_from_file(str(target))
    video, audio = timeline.tracks
    assert video.kind == otio.schema.TrackKind.Video and audio.kind == otio.schema.TrackKind.Audio
    meta = session.meta
    clips = [c for c in video if isinstance(c, otio.schema.Clip) and not c.effects]
    assert [c.metadata["reelforge"]["shot"] for c in clips] == [1, 2]
    for clip, st in zip(clips, meta.shots):
        assert clip.media_reference.target_url == (session.path / st.video.path).absolute().as_uri()
        assert abs(clip.duration().to_seconds() - st.video.info["duration"]) <= 1 / clip.duration().rate
    # shot 1's line (0.3 s of fake voice) + 0.5 s is longer than its 0.4 s clip: the film
    # holds its last frame, and so does the timeline
    held = [c for c in video if isinstance(c, otio.schema.Clip) and c.effects]
    assert len(held) == 1 and isinstance(held[0].effects[0], otio.schema.FreezeFrame)
    voice = meta.shot(1).narration.info["duration"]
    first_len = voice + 0.5
    assert abs(video.range_of_child_at_index(2).start_time.to_seconds() - first_len) < 0.05
    lines = [c for c in audio if isinstance(c, otio.schema.Clip)]
    assert len(lines) == 1 and lines[0].metadata["reelforge"]["line"] == "The city wakes."
    assert audio.range_of_child_at_index(0).start_time.to_seconds() == 0
    assert abs(lines[0].duration().to_seconds() - voice) < 0.05
    assert audio.duration() == video.duration()


def test_the_bundles_timeline_points_at_the_bundles_own_files(out, session, tmp_path):
    otio = pytest.importorskip("opentimelineio")
    dest = tmp_path / "bundle"
    assert invoke(out, "export", "latest", "--bundle", str(dest)).exit_code == 0
    timeline = otio.adapters.read_from_file(str(dest / "timeline.otio"))
    urls = [c.media_reference.target_url for c in timeline.find_clips()]
    assert urls[:1] == ["clips/shot_001.mp4"] and "narration/shot_001.wav" in urls
    for url in urls:
        assert (dest / url).is_file()
    assert sha256_file(dest / "clips/shot_001.mp4") == session.meta.shot(1).video.sha256
