"""The narrated film through the runner: voice timing, subtitles, audio, cards and music,
resumed like every other stage (issue 10)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelforge.media import soundtrack
from reelforge.errors import StageError
from reelforge.media.ffmpeg import clip_facts, ffmpeg_exe
from reelforge.store.meta import DONE
from reelforge.store.safefs import sha256_file
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session

ROOT = Path(__file__).resolve().parent.parent


def streams(path: Path) -> str:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return proc.stderr


def test_a_narrated_film_has_audio_of_its_length_and_cues_on_the_voices(out, fakes):
    result = run_session(out, "A lighthouse", backends=fakes.narrated)
    assert result.ok, result.failed
    meta = SessionStore(out).load(result.session_id).meta
    film = clip_facts(result.film)
    assert film["has_audio"]
    info = streams(result.film)
    assert "Audio: aac" in info and "Subtitle: mov_text" in info  # soft subtitles by default
    # each shot lasts at least its line plus the pad (the fake voice says 0.1 s per word;
    # the fake renderer caps its clips at 0.4 s, so the film holds their last frames)
    lengths = [max(st.video.info["duration"], st.narration.info["duration"] + 0.5) for st in meta.shots]
    assert all(length >= 0.6 - 0.05 for length in lengths)
    # the cues start where each shot starts and last as long as its voice
    cues = soundtrack.read_cues(result.path / "film.srt")
    starts = soundtrack.clip_starts(lengths)
    assert [round(c.start, 1) for c in cues] == [round(s, 1) for s in starts]
    assert [round(c.end - c.start, 1) for c in cues] == [round(st.narration.info["duration"], 1)
                                                         for st in meta.shots]
    assert (result.path / "film.vtt").read_text().startswith("WEBVTT")
    assert film["duration"] == pytest.approx(sum(lengths), abs=0.2)
    assert sorted(c[0] for c in fakes.narration.calls) == [1, 2, 3]


def test_a_film_without_narration_still_has_a_silent_track(out, fakes):
    result = run_session(out, "A lighthouse", backends=fakes.backends)
    assert result.ok
    assert clip_facts(result.film)["has_audio"]
    assert "Subtitle" not in streams(result.film)
    assert not (result.path / "film.srt").exists()


def test_a_changed_line_redoes_only_that_voice_its_clip_and_the_film(out, fakes):
    result = run_session(out, "A lighthouse", backends=fakes.narrated)
    film_before = sha256_file(result.film)
    plan_path = result.path / "shots.json"
    plan = json.loads(plan_path.read_text())
    plan["shots"][1]["narration"] = "a much longer line " * 4  # 16 words: 1.6 s of voice
    plan_path.write_text(json.dumps(plan))
    for f in (fakes.image, fakes.video, fakes.narration):
        f.calls.clear()
    again = run_session(out, "", backends=fakes.narrated, resume=result.session_id)
    assert again.ok
    assert fakes.image.calls == []
    assert [c[0] for c in fakes.narration.calls] == [2]
    assert [c[0] for c in fakes.video.calls] == [2]  # its timing changed with the voice
    assert sha256_file(result.film) != film_before
    meta = SessionStore(out).load(result.session_id).meta
    assert meta.shot(2).narration.info["duration"] == pytest.approx(1.6, abs=0.01)
    cues = soundtrack.read_cues(result.path / "film.srt")
    assert cues[1].end - cues[1].start == pytest.approx(1.6, abs=0.05)
    assert [t["n"] for t in meta.shot(2).narration.takes] == [1]  # the old voice is a take


def test_a_silent_shot_needs_no_narrator_and_shows_no_cue(out, fakes):
    from reelforge.records import Scene, SceneGraph, Shot, ShotPlan, Story

    fakes.story.enqueue(Story(title="T", logline="l", synopsis="s"),
                        SceneGraph((Scene(id="s1", order=1, summary="x"),)),
                        ShotPlan((Shot(id=1, scene_id="s1", description="a", image_prompt="a",
                                       duration_s=0.4, narration="two words"),
                                  Shot(id=2, scene_id="s1", description="b", image_prompt="b",
                                       duration_s=0.4, narration=""))))
    result = run_session(out, "idea", backends=fakes.narrated)
    assert result.ok, result.failed
    assert [c[0] for c in fakes.narration.calls] == [1]
    assert len(soundtrack.read_cues(result.path / "film.srt")) == 1


def test_a_narrator_failure_fails_the_shot_clearly_and_its_clip_waits(out, fakes):
    fakes.narration.fail(2, StageError("the voice 'en' cannot read Cyrillic text"))
    result = run_session(out, "idea", backends=fakes.narrated)
    assert not result.ok
    assert any("shot 2 (narration)" in f and "Cyrillic" in f for f in result.failed)
    meta = SessionStore(out).load(result.session_id).meta
    assert meta.shot(2).video.state != DONE  # never rendered without its timing
    assert meta.shot(1).video.state == DONE
    again = run_session(out, "", backends=fakes.narrated, resume=result.session_id)
    assert again.ok
    assert sorted(c[0] for c in fakes.video.calls) == [1, 2, 3]


def test_cards_music_and_burnt_subtitles(out, fakes, tmp_path):
    music = tmp_path / "bed.wav"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=220:d=2",
                    "-y", str(music)], check=True)
    result = run_session(out, "A lighthouse", backends=fakes.narrated, cards=True, music=music,
                         subtitles="burn")
    assert result.ok, result.failed
    meta = SessionStore(out).load(result.session_id).meta
    assert meta.film_settings["cards"] is True and meta.film_settings["subtitles"] == "burn"
    assert (result.path / meta.film_settings["music"]).is_file()  # copied into the session
    total = 3.0 + sum(max(st.video.info["duration"], st.narration.info["duration"] + 0.5)
                      for st in meta.shots) + 3.0
    assert clip_facts(result.film)["duration"] == pytest.approx(total, abs=0.3)
    assert "Subtitle" not in streams(result.film)  # burnt in, not a track
    # resuming with no film flags keeps the recorded ones: nothing is rebuilt
    film = sha256_file(result.film)
    again = run_session(out, "", backends=fakes.narrated, resume=result.session_id)
    assert again.ok and sha256_file(result.film) == film


def test_a_kill_during_narration_resumes_without_redoing_finished_voices(tmp_path):
    out, log = tmp_path / "output", tmp_path / "calls.log"
    env = dict(os.environ, REELFORGE_PLUGINS="crash_plugin", REELFORGE_FAKE_LOG=str(log),
               REELFORGE_LOAD_PLUGINS="", REELFORGE_RETRY_BACKOFF="0",
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    args = ["--story-llm", "crashtest", "--image-gen", "crashtest", "--renderer", "crashtest",
            "--narrator", "crashtest", "--output-dir", str(out)]
    # two voices get spoken, the others wait for the kill (tests/crash_plugin.py)
    proc = subprocess.Popen([sys.executable, "-m", "reelforge", "run", "A city", "--new", *args],
                            env={**env, "REELFORGE_CRASH_HOLD": "narration:2"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def voices_done() -> set[int]:
        try:
            store = SessionStore(out)
            meta = store.load(store.ids()[0]).meta
        except Exception:
            return set()
        return {s.id for s in meta.shots if s.narration.state == DONE}

    deadline = time.monotonic() + 120
    while len(voices_done()) < 2:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no voice finished in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    before = voices_done()
    assert len(before) == 2
    done = subprocess.run([sys.executable, "-m", "reelforge", "run", "--resume", *args], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [line.split() for line in log.read_text().splitlines() if line.startswith("narration ")]
    for shot in before:
        assert sum(1 for c in calls if c[1] == str(shot)) == 1  # never spoken twice


# -- one text at the bottom at a time (issue 19 item 3) --------------------------------------------

def _report_tracks(out, session_id):
    from reelforge.web.report import render_report

    import html.parser

    class Tags(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.found = []

        def handle_starttag(self, tag, attrs):
            self.found.append((tag, dict(attrs)))

    session = SessionStore(out).load(session_id)
    parser = Tags()
    parser.feed(render_report(session))
    return session, parser.found


def test_burnt_subtitles_get_no_track_in_the_report_or_serve(out, fakes):
    from reelforge.web.creator import session_data

    result = run_session(out, "A lighthouse", backends=fakes.narrated, subtitles="burn")
    assert result.ok, result.failed
    session, found = _report_tracks(out, result.session_id)
    assert not [a for tag, a in found if tag == "track"], "burnt in: a player track would show them twice"
    links = [a["href"] for tag, a in found if tag == "a"]
    assert "film.srt" in links and "film.vtt" in links  # the files are still offered
    data = session_data(session, lambda path, digest: path)
    assert data["film"]["url"] and data["film"]["vtt"] is None and data["film"]["vtt_file"]
    # soft again: the track is back, on by default (no caption band under it)
    again = run_session(out, "", backends=fakes.narrated, resume=result.session_id, subtitles="soft")
    assert again.ok
    _, found = _report_tracks(out, result.session_id)
    [track] = [a for tag, a in found if tag == "track"]
    assert "default" in track
    assert "line:" not in (result.path / "film.vtt").read_text()


def test_soft_subtitles_stay_off_the_caption_band(out, fakes):
    fakes.image.subtitle_margin = 0.25  # the image generator draws a caption band: a quarter of the height
    result = run_session(out, "A lighthouse", backends=fakes.narrated)
    assert result.ok, result.failed
    vtt = (result.path / "film.vtt").read_text()
    blocks = [b.splitlines() for b in vtt.split("\n\n")[1:] if b.strip()]
    assert len(blocks) == 3
    for timing, *text in blocks:
        top = float(timing.split("line:")[1].rstrip("%")) / 100
        # the cue's last line ends above the band (a line is at most 6.5 % of the height)
        assert top + len(text) * 0.065 <= 0.75 + 1e-9 and top > 0.4, (timing, text)
    assert soundtrack.read_cues(result.path / "film.vtt") == soundtrack.read_cues(result.path / "film.srt")
    # and no mov_text track in the MP4: a desktop player would draw it over the band
    assert "Subtitle:" not in streams(result.film) and "Audio: aac" in streams(result.film)
    # the report's player shows this track (it is placed above the band)
    session, found = _report_tracks(out, result.session_id)
    [track] = [a for tag, a in found if tag == "track"]
    assert "default" in track and b"line:" in base64.b64decode(track["src"].split(",", 1)[1])


def _brightness(film: Path) -> list[float]:
    """Each frame's mean luma (16 is black, as H.264 stores it), by ffmpeg's signalstats."""
    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(film), "-an", "-vf",
                           "signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-", "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    return [float(line.split("=", 1)[1]) for line in proc.stdout.splitlines() if "YAVG=" in line]


@pytest.mark.parametrize("transition", ["cut", "crossfade"])
def test_the_film_fades_from_and_to_black_and_its_sound_lasts_as_long(out, fakes, transition):
    """The picture and the sound are made side by side: the film still fades in and out
    (a cut film through its faded first and last clips, a crossfade in its one encode) and
    its AAC track, encoded before the mux, is as long as the picture."""
    from reelforge.media.ffmpeg import probe

    result = run_session(out, "A lighthouse", backends=fakes.narrated, transition=transition)
    assert result.ok, result.failed
    luma = _brightness(result.film)
    assert luma[0] < 17 and luma[0] < luma[1] < luma[2]  # from black
    assert luma[-3] > luma[-2] > luma[-1] and luma[-1] < 0.5 * max(luma)  # to black
    info = streams(result.film)
    assert "Audio: aac" in info and "Subtitle: mov_text" in info
    audio = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(result.film), "-map", "0:a", "-f", "null", "-"],
                           capture_output=True, text=True)
    assert audio.returncode == 0 and not audio.stderr
    assert probe(result.film)["duration"] == pytest.approx(clip_facts(result.film)["duration"], abs=0.1)


def test_the_film_bar_follows_the_film_stages_steps(out, fakes):
    from support import Recorder

    rec = Recorder()
    result = run_session(out, "A lighthouse", backends=fakes.narrated, plugins=(rec,))
    assert result.ok, result.failed
    film = [(f, m) for e, stage, f, m in (x for x in rec.events if x[0] == "stage_progress") if stage == "assemble"]
    fractions = [f for f, _ in film]
    assert len(fractions) >= 6 and fractions == sorted(fractions) and 0 < fractions[-1] < 1
    said = " | ".join(m for _, m in film)
    for step in ("mixing the sound", "fading in", "fading out", "joining", "encoding the sound", "finishing",
                 "checking"):
        assert step in said, said
    assert rec.events.index(("stage_finished", "assemble")) > max(
        i for i, e in enumerate(rec.events) if e[0] == "stage_progress" and e[1] == "assemble")
