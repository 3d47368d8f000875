"""The storyboard image generator: deterministic, prompt-dependent 1280x720 PNG cards."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from PIL import Image, ImageChops, ImageStat

from framework.protocols import ShotJob
from framework.records import Shot
from plugins.image_gen.storyboard import StoryboardGenerator, StoryboardOptions, font


def make_shot(**kw) -> Shot:
    base = dict(id=3, scene_id="s2", description="Wide shot of the harbour quays at dusk, sails crowding the water",
                image_prompt="wide shot of the harbour quays, amber palette", motion_prompt="pan left, slow camera",
                characters=("Mira",), seed=42)
    base.update(kw)
    return Shot(**base)


def job_for(shot: Shot, tmp_path) -> ShotJob:
    return ShotJob(session_id="s", stage="images", shot=shot, attempt=1, work_dir=tmp_path,
                   checkpoint={}, cancelled=threading.Event(), save=lambda d: None)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writes_a_png_of_the_requested_size_under_work_dir(tmp_path):
    shot = make_shot()
    out = StoryboardGenerator().generate(shot, job_for(shot, tmp_path))
    assert out.parent == tmp_path and out.suffix == ".png"
    assert not list(tmp_path.glob("*partial*"))
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1280, 720)
        # Not a flat image: the card has a picture on it.
        assert max(ImageStat.Stat(im.convert("RGB")).stddev) > 10
    small = StoryboardGenerator(StoryboardOptions(width=640, height=360))
    with Image.open(small.generate(shot, job_for(shot, tmp_path / "small"))) as im:
        assert im.size == (640, 360)


def test_same_shot_same_pixels_different_prompt_different_picture(tmp_path):
    gen = StoryboardGenerator()
    shot = make_shot()
    a = gen.generate(shot, job_for(shot, tmp_path / "a"))
    b = gen.generate(shot, job_for(shot, tmp_path / "b"))
    assert sha(a) == sha(b)
    other = make_shot(image_prompt="close-up of a lantern on black rocks, navy palette")
    c = gen.generate(other, job_for(other, tmp_path / "c"))
    with Image.open(a) as ia, Image.open(c) as ic:
        diff = ImageChops.difference(ia.convert("RGB"), ic.convert("RGB"))
        # The sky/palette differs, not only the caption.
        assert diff.getbbox() is not None
        assert max(ImageStat.Stat(diff.crop((0, 60, 1280, 560))).mean) > 5


def test_card_text_changes_with_shot_number(tmp_path):
    gen = StoryboardGenerator()
    a, b = gen.draw(make_shot(id=1)), gen.draw(make_shot(id=2))
    header = ImageChops.difference(a.crop((0, 0, 400, 54)), b.crop((0, 0, 400, 54)))
    assert header.getbbox() is not None, "the shot number is drawn in the header"
    body = ImageChops.difference(a.crop((0, 60, 1280, 560)), b.crop((0, 60, 1280, 560)))
    assert body.getbbox() is None, "the picture depends on the prompt, not the number"


def test_embedded_font_scales():
    # The embedded TrueType font renders at different sizes (bitmap fallback would not).
    pytest.importorskip("PIL._imagingft")
    assert font(40).getbbox("SHOT")[2] > font(20).getbbox("SHOT")[2]


def test_fast_enough(tmp_path):
    gen = StoryboardGenerator()
    shots = [make_shot(id=i, image_prompt=f"prompt number {i}") for i in range(1, 8)]
    gen.draw(shots[0])  # warm the font cache
    start = time.perf_counter()
    for shot in shots:
        gen.generate(shot, job_for(shot, tmp_path))
    assert (time.perf_counter() - start) / len(shots) < 0.2
