"""The kenburns renderer and the ffmpeg helpers, against the real bundled ffmpeg."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from reelforge.errors import StageError
from reelforge.protocols import ShotJob
from reelforge.records import Shot
from reelforge.plugins.kenburns import FFmpegCancelled, KenBurnsOptions, KenBurnsRenderer, camera_move
from reelforge.media.ffmpeg import assemble, probe, run_ffmpeg

SMALL = KenBurnsOptions(width=320, height=180, fps=25)


def make_shot(id=1, motion="slow push in", duration=1.0) -> Shot:
    return Shot(id=id, scene_id="s1", description="d", image_prompt=f"prompt {id}",
                motion_prompt=motion, duration_s=duration, seed=id)


def job_for(shot, work_dir, cancelled=None) -> ShotJob:
    return ShotJob(session_id="s", stage="videos", shot=shot, attempt=1, work_dir=work_dir,
                   checkpoint={}, cancelled=cancelled or threading.Event(), save=lambda d: None)


@pytest.fixture
def still(tmp_path):
    path = tmp_path / "still.png"
    im = Image.linear_gradient("L").resize((640, 360)).convert("RGB")
    im.paste((200, 40, 40), (100, 100, 220, 200))
    im.save(path)
    return path


def render(tmp_path, still, shot, options=SMALL):
    return KenBurnsRenderer(options).render(shot, still, job_for(shot, tmp_path / f"w{shot.id}"))


def test_renders_an_h264_mp4_of_the_shot_duration(tmp_path, still):
    out = render(tmp_path, still, make_shot(duration=1.0))
    assert out.suffix == ".mp4" and out.parent == tmp_path / "w1"
    assert not list(out.parent.glob("*partial*"))
    info = probe(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (320, 180)
    assert info["fps"] == 25
    assert info["duration"] == pytest.approx(1.0, abs=0.05)
    assert out.read_bytes()[4:8] == b"ftyp"


def test_duration_and_fps_follow_shot_and_options(tmp_path, still):
    out = render(tmp_path, still, make_shot(id=2, duration=1.6, motion="pan left"),
                 KenBurnsOptions(width=256, height=144, fps=10))
    info = probe(out)
    assert info["duration"] == pytest.approx(1.6, abs=0.11)
    assert (info["width"], info["height"], info["fps"]) == (256, 144, 10)


@pytest.mark.parametrize("motion, move", [
    ("slow push in, steady camera", "push in"), ("pull out", "pull out"), ("Pan Left slowly", "pan left"),
    ("pan right", "pan right"), ("tilt up, gentle", "tilt up"), ("zoom out", "pull out"),
])
def test_camera_move_from_motion_prompt(motion, move):
    assert camera_move(make_shot(motion=motion)) == move


def test_camera_move_without_a_keyword_is_deterministic():
    moves = {camera_move(make_shot(id=i, motion="handheld")) for i in range(1, 30)}
    assert len(moves) > 1
    assert camera_move(make_shot(id=5, motion="")) == camera_move(make_shot(id=5, motion=""))


def test_moves_give_different_motion(tmp_path, still):
    first_last = {}
    for i, motion in enumerate(("push in", "pan left", "pan right"), start=1):
        out = render(tmp_path, still, make_shot(id=i, motion=motion, duration=0.4))
        import imageio_ffmpeg
        gen = imageio_ffmpeg.read_frames(str(out))
        meta = next(gen)
        frames = [bytes(f) for f in gen]
        assert len(frames) == 10 and meta["size"] == (320, 180)
        assert frames[0] != frames[-1], f"{motion}: the picture moves"
        first_last[motion] = (frames[0], frames[-1])
    assert first_last["pan left"] != first_last["pan right"]


def test_cancelled_job_stops_ffmpeg(tmp_path, still):
    cancelled = threading.Event()
    shot = make_shot(duration=600.0)  # would take far longer than this test
    renderer = KenBurnsRenderer(KenBurnsOptions(width=1280, height=720))
    timer = threading.Timer(0.5, cancelled.set)
    timer.start()
    start = time.monotonic()
    with pytest.raises(FFmpegCancelled):
        renderer.render(shot, still, job_for(shot, tmp_path / "c", cancelled))
    assert time.monotonic() - start < 30  # the clip alone would take minutes to encode
    assert not list((tmp_path / "c").glob("*.mp4")), "no partial clip is left behind"


def test_ffmpeg_failure_is_a_stage_error_with_stderr(tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"this is not a PNG")
    shot = make_shot()
    with pytest.raises(StageError) as info:
        KenBurnsRenderer(SMALL).render(shot, bad, job_for(shot, tmp_path / "w"))
    assert "exited with code" in str(info.value)
    assert "not_an_image.png" in str(info.value) or "Invalid" in str(info.value)
    with pytest.raises(StageError, match="missing"):
        KenBurnsRenderer(SMALL).render(shot, tmp_path / "nope.png", job_for(shot, tmp_path / "w"))


def test_probe_rejects_non_video(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 100)
    with pytest.raises(StageError):
        probe(junk)
    with pytest.raises(StageError):
        probe(tmp_path / "missing.mp4")


@pytest.fixture
def clips(tmp_path, still):
    return [render(tmp_path, still, make_shot(id=i, motion=m, duration=d))
            for i, (m, d) in enumerate((("push in", 1.0), ("pan left", 0.8), ("pull out", 1.2)), start=1)]


def test_assemble_cut_copies_streams(tmp_path, clips):
    out = assemble(clips, tmp_path / "film.mp4")
    info = probe(out)
    total = sum(probe(c)["duration"] for c in clips)
    assert total == pytest.approx(3.0, abs=0.1)
    assert info["duration"] == pytest.approx(total, abs=0.1)
    assert (info["width"], info["height"], info["codec"]) == (320, 180, "h264")
    assert not list(tmp_path.glob("*.txt")), "the concat list is cleaned up"


def test_assemble_crossfade_shortens_by_the_overlaps(tmp_path, clips):
    out = assemble(clips, tmp_path / "film_xfade.tmp", transition="crossfade", crossfade_s=0.3)
    assert out.read_bytes()[4:8] == b"ftyp", "written as MP4 whatever the suffix"
    total = sum(probe(c)["duration"] for c in clips)
    assert probe(out)["duration"] == pytest.approx(total - 2 * 0.3, abs=0.1)


def test_assemble_mixed_inputs_reencodes_to_first_size(tmp_path, clips):
    webm = tmp_path / "other.webm"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=200x200:rate=15:duration=0.6",
                "-c:v", "libvpx-vp9", "-deadline", "realtime", "-y", str(webm)], what="making a webm")
    assert probe(webm)["codec"] == "vp9"
    out = assemble([clips[0], webm], tmp_path / "mixed.mp4")
    info = probe(out)
    assert (info["width"], info["height"], info["codec"], info["fps"]) == (320, 180, "h264", 25)
    assert info["duration"] == pytest.approx(1.0 + 0.6, abs=0.1)


def test_assemble_rejects_bad_requests(tmp_path, clips):
    with pytest.raises(StageError):
        assemble([], tmp_path / "x.mp4")
    with pytest.raises(StageError, match="transition"):
        assemble(clips, tmp_path / "x.mp4", transition="wipe")


# -- the storyboard card over the moving picture ----------------------------------------------

from PIL import ImageChops, ImageFilter  # noqa: E402

from reelforge.plugins.image_gen.storyboard import StoryboardGenerator, StoryboardOptions, card_overlay  # noqa: E402

CARD_SIZE = (640, 360)


def storyboard_shot(motion: str, duration: float = 1.2) -> Shot:
    return Shot(id=2, scene_id="s3", duration_s=duration, motion_prompt=motion, seed=4,
                description="Sweeping aerial view of the lighthouse gallery, gulls over the swell, and a caption "
                            "long enough to reach both edges of the caption band",
                image_prompt="aerial establishing shot of the lighthouse gallery, deep navy and lantern-gold palette")


def frames_of(clip) -> list[Image.Image]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(clip))
    meta = next(gen)
    return [Image.frombytes("RGB", meta["size"], bytes(f)) for f in gen]


def text_pixels(shot, size, seconds):
    """The card's solid text pixels (eroded, so codec blur at glyph edges does not count)."""
    text = card_overlay(shot, size, duration_s=seconds, layer="text")
    solid = text.getchannel("A").point(lambda a: 255 if a == 255 else 0).filter(ImageFilter.MinFilter(3))
    return text.convert("RGB"), solid


def text_matches(frame, text_rgb, solid) -> float:
    """Mean difference between the frame and the card's text, over the text's pixels."""
    diff = ImageChops.difference(frame, text_rgb).convert("L")
    hist = diff.histogram(mask=solid)
    n = sum(hist)
    return sum(i * c for i, c in enumerate(hist)) / max(1, n)


@pytest.mark.parametrize("motion", ["push in", "pull out", "pan left", "pan right", "tilt up", "tilt down"])
def test_caption_and_header_stay_whole_and_still_through_the_move(tmp_path, motion):
    shot = storyboard_shot(motion)
    plate = StoryboardGenerator(StoryboardOptions(*CARD_SIZE)).generate(shot, job_for(shot, tmp_path / "img"))
    clip = KenBurnsRenderer(KenBurnsOptions(width=CARD_SIZE[0], height=CARD_SIZE[1], zoom=1.6, caption_gap_s=0)).render(
        shot, plate, job_for(shot, tmp_path / "vid"))
    frames = frames_of(clip)
    text_rgb, solid = text_pixels(shot, CARD_SIZE, len(frames) / 25)
    box = solid.getbbox()
    assert box[0] > 0 and box[1] > 0 and box[2] < CARD_SIZE[0] and box[3] < CARD_SIZE[1], box
    first, middle, last = frames[0], frames[len(frames) // 2], frames[-1]
    assert first.tobytes() != last.tobytes(), "the picture moves"
    for name, frame in (("first", first), ("middle", middle), ("last", last)):
        # Every text pixel is where the card puts it, in the card's colour: nothing cropped,
        # scaled or moved by the zoom.
        assert text_matches(frame, text_rgb, solid) < 20, (motion, name)


def test_a_clip_without_the_card_has_no_text(tmp_path):
    shot = storyboard_shot("push in")
    plate = StoryboardGenerator(StoryboardOptions(*CARD_SIZE)).generate(shot, job_for(shot, tmp_path / "img"))
    off = KenBurnsOptions(width=CARD_SIZE[0], height=CARD_SIZE[1], captions="off")
    frames = frames_of(KenBurnsRenderer(off).render(shot, plate, job_for(shot, tmp_path / "off")))
    text_rgb, solid = text_pixels(shot, CARD_SIZE, len(frames) / 25)
    assert text_matches(frames[len(frames) // 2], text_rgb, solid) > 40
    # auto: an image that is not a storyboard plate gets no card.
    other = tmp_path / "photo.png"
    with Image.open(plate) as im:
        im.convert("RGB").save(other)  # same pixels, no plate marker
    assert not KenBurnsRenderer(KenBurnsOptions()).draws_card(other)
    assert KenBurnsRenderer(KenBurnsOptions(captions="on")).draws_card(other)


def test_caption_gap_keeps_text_off_the_clip_ends(tmp_path):
    shot = storyboard_shot("pan right", duration=2.0)
    plate = StoryboardGenerator(StoryboardOptions(*CARD_SIZE)).generate(shot, job_for(shot, tmp_path / "img"))
    gap = KenBurnsOptions(width=CARD_SIZE[0], height=CARD_SIZE[1], caption_gap_s=0.5)
    frames = frames_of(KenBurnsRenderer(gap).render(shot, plate, job_for(shot, tmp_path / "gap")))
    text_rgb, solid = text_pixels(shot, CARD_SIZE, len(frames) / 25)
    assert text_matches(frames[0], text_rgb, solid) > 40, "no text while a crossfade would run"
    assert text_matches(frames[25], text_rgb, solid) < 20
    assert text_matches(frames[-1], text_rgb, solid) > 40
    # The bands stay for the whole clip (so the frame does not flash as captions come and go).
    bands = card_overlay(shot, CARD_SIZE, layer="bands").getchannel("A")
    strip = (200, 0, 440, 6)  # the header band above and between its text
    assert bands.crop(strip).getextrema()[0] > 0
    from PIL import ImageStat

    levels = [ImageStat.Stat(f.crop(strip).convert("L")).mean[0] for f in (frames[0], frames[25], frames[-1])]
    assert max(levels) < 90 and max(levels) - min(levels) < 15, levels


# -- captions at the film's joins (issue 19 item 2) -----------------------------------------------

from types import SimpleNamespace  # noqa: E402

from reelforge.engine import fingerprints  # noqa: E402
from reelforge.plugins.image_gen.storyboard.card import card_layout  # noqa: E402


def _caption_shots():
    a = storyboard_shot("pan right", duration=1.2)
    b = Shot(id=3, scene_id="s4", duration_s=1.2, motion_prompt="push in", seed=5,
             description="Close on the keeper's hands winding the lamp, rain streaking the glass",
             image_prompt="close-up of weathered hands on brass, lamp light")
    return a, b


def _visibility(frame, mine, others, band_rows) -> float:
    """How strongly a shot's text shows in ``frame``: 1 is the text at full strength, 0 none.
    Measured on the text's own pixels (not another shot's) against the caption band around them."""
    from PIL import ImageStat

    grey = frame.convert("L")
    rows = Image.new("L", frame.size, 0)
    rows.paste(255, band_rows)
    mine, others = ImageChops.multiply(mine, rows), ImageChops.multiply(others, rows)  # the caption only
    only = ImageChops.subtract(mine, others.filter(ImageFilter.MaxFilter(5)))
    around = ImageChops.subtract(rows, ImageChops.lighter(mine, others).filter(ImageFilter.MaxFilter(9)))
    text_level = ImageStat.Stat(grey, only).mean[0]
    band_level = ImageStat.Stat(grey, around).mean[0]
    return max(0.0, (text_level - band_level) / (245 - band_level))


def _film_of_two(tmp_path, transition, overlap, options=None):
    a, b = _caption_shots()
    options = options or KenBurnsOptions(width=CARD_SIZE[0], height=CARD_SIZE[1])
    clips = []
    for shot in (a, b):
        plate = StoryboardGenerator(StoryboardOptions(*CARD_SIZE)).generate(
            shot, job_for(shot, tmp_path / f"i{shot.id}"))
        job = job_for(shot, tmp_path / f"v{shot.id}{transition}")
        job.film_overlap_s = overlap
        clips.append(KenBurnsRenderer(options).render(shot, plate, job))
    film = assemble(clips, tmp_path / f"{transition}.mp4", transition=transition, crossfade_s=overlap or 0.5)
    frames = frames_of(film)
    masks = [card_overlay(shot, CARD_SIZE, duration_s=len(frames_of(c)) / 25, layer="text").getchannel("A")
             .point(lambda v: 255 if v > 160 else 0) for shot, c in zip((a, b), clips)]
    w, h = CARD_SIZE
    rows = (4, h - card_layout(w, h).caption + 2, w - 4, h - 4)
    return frames, masks, rows


def test_the_default_caption_never_blinks_at_a_cut(tmp_path):
    frames, (ma, mb), rows = _film_of_two(tmp_path, "cut", 0.0)
    # Every frame of the film shows one shot's caption in full: the first clip's up to the
    # cut (frame 30), the second's from it.
    seen = [(_visibility(f, ma, mb, rows), _visibility(f, mb, ma, rows)) for f in frames]
    assert len(frames) == 60
    for i, (va, vb) in enumerate(seen):
        shown = va if i < 30 else vb
        assert shown > 0.8, (i, seen[i])


def test_an_explicit_caption_gap_still_leaves_the_ends_bare(tmp_path):
    options = KenBurnsOptions(width=CARD_SIZE[0], height=CARD_SIZE[1], caption_gap_s=0.4)
    frames, (ma, mb), rows = _film_of_two(tmp_path, "cut", 0.0, options)
    assert _visibility(frames[29], ma, mb, rows) < 0.1 and _visibility(frames[30], mb, ma, rows) < 0.1
    assert _visibility(frames[15], ma, mb, rows) > 0.8


def test_crossfaded_captions_never_show_two_at_once(tmp_path):
    frames, (ma, mb), rows = _film_of_two(tmp_path, "crossfade", 0.5)
    assert len(frames) == pytest.approx(60 - 12, abs=1)
    seen = [(_visibility(f, ma, mb, rows), _visibility(f, mb, ma, rows)) for f in frames]
    for i, (va, vb) in enumerate(seen):
        assert min(va, vb) < 0.1, (i, seen[i])
    # ... each caption shows in full between its clip's ends and the crossfade (the clip's
    # ends keep just over half a crossfade bare), and into the crossfade's own half.
    fade_start, gap = 30 - 12, 8
    assert all(va > 0.8 for va, _ in seen[gap:fade_start]), seen[:fade_start]
    assert all(vb > 0.8 for _, vb in seen[fade_start + 12:-gap]), seen[fade_start + 12:]
    assert seen[fade_start + 3][0] > 0.5 and seen[fade_start + 12 - 3][1] > 0.5


def test_caption_gap_follows_the_films_overlap():
    auto = KenBurnsRenderer(KenBurnsOptions(fps=25))
    assert auto.caption_gap(0.0) == 0.0
    assert auto.caption_gap(0.5) == pytest.approx(0.25 + 0.04)
    assert auto.caption_gap(1.0) == pytest.approx(0.5 + 0.04)
    assert KenBurnsRenderer(KenBurnsOptions(caption_gap_s=0.2)).caption_gap(0.5) == 0.2
    assert KenBurnsRenderer(KenBurnsOptions(caption_gap_s=0.0)).caption_gap(1.0) == 0.0


def test_a_changed_transition_renders_again_only_what_draws_over_the_clip():
    shot = make_shot()
    kb = SimpleNamespace(name="kenburns", fingerprint_options={}, instance=KenBurnsRenderer())
    other = SimpleNamespace(name="model", fingerprint_options={}, instance=object())
    for backend, follows in ((kb, True), (other, False)):
        cut = fingerprints.of_inputs("videos", shot, backend, "abc", 0.0)
        fades = {fingerprints.of_inputs("videos", shot, backend, "abc", s) for s in (0.5, 1.0)}
        assert (cut in fades) is not follows and len(fades) == (2 if follows else 1)
    meta = SimpleNamespace(film_settings={"transition": "crossfade", "crossfade_s": 0.8})
    assert fingerprints.film_overlap(SimpleNamespace(meta=meta)) == 0.8
    meta.film_settings = {"transition": "cut", "crossfade_s": 0.8}
    assert fingerprints.film_overlap(SimpleNamespace(meta=meta)) == 0.0
    meta.film_settings = {}
    assert fingerprints.film_overlap(SimpleNamespace(meta=meta)) == 0.0
