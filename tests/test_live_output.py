"""Issue 9 item 5: the live output of `reelforge run` tells the truth. Shot lines sit under
their own stage, skipped shots are one line per stage, Images is ✓ when all images are
done, a retried shot shows its whole time, a failure's error is printed once, and the
kenburns renderer reports ffmpeg's real progress."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner
from PIL import Image

from reelforge.cli.core import cli
from reelforge.errors import StageError, TransientError
from reelforge.media.ffmpeg import FFmpegProgress, run_ffmpeg
from reelforge.cli.progress import RichProgress, shot_ranges
from reelforge.protocols import ShotJob
from reelforge.records import Shot
from reelforge.store.meta import ArtifactState, Meta, ShotState
from reelforge.plugins.kenburns import KenBurnsOptions, KenBurnsRenderer

FAKE = ["--story-llm", "fake", "--image-gen", "fake", "--renderer", "fake"]


def invoke(out, *args, input=None):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)], input=input, catch_exceptions=False)


def headers_of(output: str) -> list[tuple[str, str]]:
    """(stage header in force, line) for every shot line of the live output."""
    header, found, live = None, [], False
    for line in output.splitlines():
        if re.match(r"Session session_\S+ \(", line):  # session_started: the live output begins
            live = True
        if not live:
            continue
        if line.startswith("→ "):
            header = line[2:]
        elif line.startswith("  [") and "Shot" in line or line.startswith("  [SKIP]"):
            found.append((header, line))
    return found


def check_stages(output: str) -> None:
    for header, line in headers_of(output):
        if line.startswith("  [IMG]") or re.search(r" images? ", line):
            assert header == "Images", (header, line)
        elif line.startswith("  [VOICE]") or re.search(r" (voice|narrations?) ", line):
            assert header == "Voice", (header, line)
        else:
            assert header == "Videos", (header, line)


# -- a fake session and clock for driving the observer directly -------------------------

@attrs.define
class FakeSession:
    id: str
    meta: Meta


def fake_session(n: int) -> FakeSession:
    return FakeSession("session_20261201_000000",
                       Meta(id="session_20261201_000000", idea="x", shots=[ShotState(id=i) for i in range(1, n + 1)]))


def shot(i: int) -> Shot:
    return Shot(id=i, scene_id="s1", description=f"shot {i}", image_prompt="p")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def observe(capsys, n=3):
    session, clock = fake_session(n), Clock()
    return RichProgress(clock=clock), session, clock


def lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_interleaved_shot_lines_each_sit_under_their_own_stage(capsys):
    p, s, _ = observe(capsys)
    p.stage_started(session=s, stage="images")
    p.shot_completed(session=s, stage="images", shot=shot(1), artifact=ArtifactState(seconds=1))
    p.stage_started(session=s, stage="videos")  # the pipeline: videos start after the first image
    p.shot_completed(session=s, stage="images", shot=shot(2), artifact=ArtifactState(seconds=1))
    p.shot_completed(session=s, stage="videos", shot=shot(1), artifact=ArtifactState(seconds=1))
    p.shot_completed(session=s, stage="images", shot=shot(3), artifact=ArtifactState(seconds=1))
    p.stop()
    out = lines(capsys)
    assert [line.split("Shot")[0].strip() if "Shot" in line else line for line in out] == [
        "→ Images", "[IMG]", "[IMG]", "→ Videos", "[DONE]", "→ Images", "[IMG]"]
    check_stages("\n".join(out))


def test_narration_lines_sit_under_their_own_header(capsys):
    p, s, _ = observe(capsys)
    for stage in ("images", "narration"):
        p.stage_started(session=s, stage=stage)
    p.shot_completed(session=s, stage="narration", shot=shot(1), artifact=ArtifactState(seconds=1))
    p.shot_completed(session=s, stage="images", shot=shot(1), artifact=ArtifactState(seconds=1))
    p.shot_skipped(session=s, stage="narration", shot=shot(2), reason="done")
    p.stop()
    assert lines(capsys) == ["→ Voice", "  [VOICE]  Shot 1 voice   1.0s  shot 1",
                             "→ Images", "  [IMG]    Shot 1 image   1.0s  shot 1",
                             "→ Voice", "  [SKIP]   1 narration already done (shot 2)"]


def test_skipped_shots_are_one_line_per_stage(capsys):
    p, s, _ = observe(capsys, n=1000)
    p.stage_started(session=s, stage="images")
    p.stage_started(session=s, stage="videos")
    for i in range(1, 1001):
        p.shot_skipped(session=s, stage="images", shot=shot(i), reason="done")
        if i not in (500, 501):
            p.shot_skipped(session=s, stage="videos", shot=shot(i), reason="done")
    p.shot_skipped(session=s, stage="videos", shot=shot(500), reason="adopted")
    p.shot_completed(session=s, stage="videos", shot=shot(501), artifact=ArtifactState(seconds=1))
    p.stop()
    assert lines(capsys) == [
        "→ Images",
        "  [SKIP]   1,000 images already done (shots 1-1000)",
        "→ Videos",
        "  [SKIP]   998 clips already done (shots 1-499, 502-1000)",
        "  [SKIP]   1 clip found complete on disk after a crash, adopted (shot 500)",
        "  [DONE]   Shot  501 clip    1.0s  shot 501",  # not seen starting: the artifact's own time
    ]


def test_shot_ranges():
    assert shot_ranges([3, 1, 2, 5, 7, 8, 8]) == "1-3, 5, 7-8"
    assert shot_ranges(range(1, 40, 2), limit=3) == "1, 3, 5, and 17 more"


def test_images_show_done_as_soon_as_every_image_is(capsys):
    p, s, _ = observe(capsys, n=3)
    p.stage_started(session=s, stage="images")
    images = p.tasks["images"]

    def status():
        return p.progress.tasks[images].fields["status"], p.progress.tasks[images].completed

    p.shot_skipped(session=s, stage="images", shot=shot(1), reason="done")
    p.shot_completed(session=s, stage="images", shot=shot(2), artifact=ArtifactState(seconds=1))
    assert status() == ("", 2)
    p.stage_started(session=s, stage="videos")
    p.shot_completed(session=s, stage="images", shot=shot(3), artifact=ArtifactState(seconds=1))
    assert status() == ("✓", 3)  # while videos are still being made: stage_finished comes at the end
    p.stop()


def test_a_retried_shot_shows_its_whole_time_and_attempts(capsys):
    p, s, clock = observe(capsys)
    p.stage_started(session=s, stage="videos")
    p.shot_started(session=s, stage="videos", shot=shot(2), attempt=4)  # attempts count across runs
    clock.now += 5
    p.shot_started(session=s, stage="videos", shot=shot(2), attempt=5)
    clock.now += 2.5
    p.shot_completed(session=s, stage="videos", shot=shot(2), artifact=ArtifactState(seconds=2.5))
    p.stop()
    assert lines(capsys)[-1] == "  [DONE]   Shot 2 clip    7.5s  shot 2 (2 attempts)"


def test_a_failed_shot_line_names_it_but_leaves_the_error_to_the_summary(capsys):
    p, s, clock = observe(capsys)
    p.stage_started(session=s, stage="images")
    p.shot_started(session=s, stage="images", shot=shot(3), attempt=1)
    clock.now += 1.25
    p.shot_failed(session=s, stage="images", shot=shot(3), error=StageError("the secret reason"))
    p.stop()
    out = "\n".join(lines(capsys))
    assert "  [FAILED] Shot 3 image   1.2s  1 attempt; the error is in the summary" in out
    assert "the secret reason" not in out


# -- end to end through the CLI --------------------------------------------------------------

def test_a_run_prints_each_failure_once_and_every_line_under_its_stage(out, fakes):
    fakes.video.fail(3, StageError("render broke at frame 12"))
    fakes.image.fail(2, TransientError("server busy"))
    r = invoke(out, "run", "An idea", *FAKE)
    assert r.exit_code == 1
    assert r.output.count("render broke at frame 12") == 1  # in the summary only
    assert "  - shot 3 (videos): render broke at frame 12" in r.output
    assert "[FAILED] Shot 3 clip" in r.output
    shot2 = next(line for line in r.output.splitlines() if line.startswith("  [IMG]    Shot 2 "))
    assert shot2.endswith("(2 attempts)")
    check_stages(r.output)
    assert headers_of(r.output)


def test_a_resume_sums_up_the_skipped_shots(out, fakes):
    fakes.story.options = fakes.story.Options(shots=12)
    fakes.video.fail(3, StageError("boom"))
    invoke(out, "run", "An idea", *FAKE)
    r = invoke(out, "run", "--resume", *FAKE)
    assert r.exit_code == 0, r.output
    skips = [line for line in r.output.splitlines() if "[SKIP]" in line]
    assert skips == ["  [SKIP]   12 images already done (shots 1-12)",
                     "  [SKIP]   12 narrations already done (shots 1-12)",
                     "  [SKIP]   11 clips already done (shots 1-2, 4-12)"]
    assert "  [DONE]   Shot  3 clip " in r.output
    check_stages(r.output)


# -- ffmpeg progress and kenburns --------------------------------------------------------------

def test_run_ffmpeg_reports_progress_from_the_real_binary(tmp_path):
    reports: list[FFmpegProgress] = []
    # -re reads the test source in real time: about 1.2 s, so there are reports on the way
    run_ffmpeg(["-re", "-f", "lavfi", "-i", "testsrc=size=64x36:rate=25", "-frames:v", "30",
                "-f", "null", "-"], what="t", progress=reports.append)
    assert reports and reports[-1].done and reports[-1].frame == 30
    assert not any(r.done for r in reports[:-1])
    frames = [r.frame for r in reports]
    assert frames == sorted(frames) and len(reports) >= 2
    assert any(r.out_time_s is not None and r.out_time_s > 0 for r in reports)


def test_run_ffmpeg_with_progress_still_reports_ffmpeg_errors_and_survives_a_bad_callback(tmp_path, caplog):
    with pytest.raises(StageError, match="ffmpeg exited with code") as info:
        run_ffmpeg(["-i", str(tmp_path / "missing.png"), "-f", "null", "-"], what="t",
                   progress=lambda p: None)
    assert "missing.png" in str(info.value)  # the stderr tail, as without progress

    def broken(_p):
        raise RuntimeError("observer bug")

    out = tmp_path / "ok.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=64x36:rate=25", "-frames:v", "5", "-y", str(out)],
               what="t", progress=broken)
    assert out.stat().st_size > 0
    assert "progress callback failed: observer bug" in caplog.text


def test_kenburns_reports_frames_as_ffmpeg_renders_them(tmp_path):
    still = tmp_path / "still.png"
    Image.new("RGB", (320, 180), (90, 30, 30)).save(still)
    seen: list[tuple[float, str]] = []
    s = Shot(id=1, scene_id="s1", description="d", image_prompt="p", motion_prompt="slow push in", duration_s=2.0)
    job = ShotJob(session_id="s", stage="videos", shot=s, attempt=1, work_dir=tmp_path / "w",
                  checkpoint={}, cancelled=threading.Event(), save=lambda d: None,
                  progress=lambda f, m: seen.append((f, m)))
    clip = KenBurnsRenderer(KenBurnsOptions(width=320, height=180, fps=25, preset="ultrafast")).render(s, still, job)
    assert Path(clip).is_file()
    assert seen[0] == (0.0, "push in") and seen[-1] == (1.0, "rendered")
    framed = [(f, m) for f, m in seen if m.endswith(" frames")]
    assert framed and framed[-1][1] == "push in 50/50 frames"  # ffmpeg's own count of the whole clip
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and all(0 < f < 1 for f, _ in framed)
