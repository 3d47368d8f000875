"""The storyboard image generator: deterministic, prompt-dependent 1280x720 PNG cards."""

from __future__ import annotations

import hashlib
import threading

import pytest
from PIL import Image, ImageChops, ImageStat

from reelforge.protocols import ShotJob
from reelforge.records import Shot
from reelforge.plugins.image_gen.storyboard import StoryboardGenerator, StoryboardOptions, font


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


# -- the offline look --------------------------------------------------------------------

from reelforge.plugins.image_gen.storyboard import (PLATE_KEY, _Painter, card_overlay, is_plate, palette_for, setting,  # noqa: E402
                                          shot_type)
from reelforge.plugins.story_llm.offline import OfflinePlanner  # noqa: E402


def film(idea: str):
    """A planned film's story and its shots as the runner hands them to the storyboard
    (with the film's look filled in)."""
    from reelforge.looks import resolve

    writer = OfflinePlanner()
    story = writer.write_story(idea)
    return story, tuple(resolve(s, story.style) for s in writer.plan_shots(story, writer.build_scene_graph(story)).shots)


def test_the_image_is_a_text_free_plate_marked_as_such(tmp_path):
    gen = StoryboardGenerator(StoryboardOptions(width=640, height=360))
    a, b = make_shot(id=1, scene_id="s1"), make_shot(id=2, scene_id="s4", motion_prompt="tilt up")
    pa = gen.generate(a, job_for(a, tmp_path / "a"))
    pb = gen.generate(b, job_for(b, tmp_path / "b"))
    with Image.open(pa) as ia, Image.open(pb) as ib:
        assert ia.text[PLATE_KEY] == "storyboard" and is_plate(pa)
        assert ImageChops.difference(ia.convert("RGB"), ib.convert("RGB")).getbbox() is None, \
            "number and caption are not in the plate"
    assert not is_plate(tmp_path / "missing.png")


def test_one_palette_per_film_from_its_style():
    sea_story, sea = film("A lighthouse keeper befriends a storm")
    city_story, city = film("The rise and fall of an ancient trading city")
    assert sea_story.style != city_story.style
    # (The palette comes from the film's look, which is no longer inside the image prompts.)
    assert not any(sea_story.style in s.image_prompt for s in sea)
    sea_palettes = {_Painter(s, (64, 36)).look.palette for s in sea}
    city_palettes = {_Painter(s, (64, 36)).look.palette for s in city}
    assert len(sea_palettes) == 1 and len(city_palettes) == 1, "every shot of a film shares its palette"
    assert sea_palettes != city_palettes
    # The palette comes from the colours the style names.
    assert palette_for("x, deep navy and lantern-gold palette, wide lens").primary[2] > 50  # navy is blue
    assert palette_for("warm terracotta and teal palette").primary[0] > 150  # terracotta is red-brown


def _mean_hue_and_value(img):
    from PIL import ImageStat

    h, _s, v = ImageStat.Stat(img.convert("HSV")).mean
    return h, v


def test_two_films_look_different_and_a_film_looks_like_itself():
    gen = StoryboardGenerator(StoryboardOptions(width=320, height=180))
    _, sea = film("A lighthouse keeper befriends a storm")
    _, city = film("The rise and fall of an ancient trading city")
    sea_hues = [_mean_hue_and_value(gen.draw_plate(s))[0] for s in sea]
    city_hues = [_mean_hue_and_value(gen.draw_plate(s))[0] for s in city]
    spread = max(max(sea_hues) - min(sea_hues), max(city_hues) - min(city_hues))
    gap = abs(sum(sea_hues) / len(sea_hues) - sum(city_hues) / len(city_hues))
    assert gap > spread / 2, (sea_hues, city_hues)


@pytest.mark.parametrize("description, expected", [
    ("Wide shot of the storm-lashed pier, a swinging lantern", {"sea", "storm"}),
    ("Wide shot of the great market square, stacked amphorae", {"city"}),
    ("Wide shot of the old-growth forest at night", {"forest", "night"}),
    ("Low-angle shot of Daro at the mountain pass", {"mountain"}),
    ("Medium shot: Ines in a small kitchen at dawn", {"interior", "dawn"}),
    ("Wide shot of the caravan gate, a column of camels in the desert", {"desert", "city"}),
    ("Sweeping aerial view of the lighthouse", {"lighthouse", "sea"}),
])
def test_setting_follows_the_words(description, expected):
    shot = make_shot(description=description, image_prompt=f"{description.lower()}, muted steel palette, 35mm lens")
    assert expected <= setting(shot)


def test_style_words_do_not_set_the_scene():
    # "storm light" and "desert light" in the style bible are not a storm or a desert.
    shot = make_shot(description="Wide shot of the fishing village",
                     image_prompt="wide shot of the fishing village, deep navy palette, storm light, hazy desert light")
    assert "storm" not in setting(shot) and "desert" not in setting(shot)


def test_backgrounds_follow_the_setting():
    gen = StoryboardGenerator(StoryboardOptions(width=320, height=180))
    style = "golden meadow and slate-blue palette, wide lens"

    def plate(description):
        return gen.draw_plate(make_shot(description=description, image_prompt=f"{description.lower()}, {style}",
                                        characters=()))

    day, night = plate("Wide shot of the valley meadow"), plate("Wide shot of the valley meadow at night")
    assert _mean_hue_and_value(night)[1] < _mean_hue_and_value(day)[1] * 0.7
    storm = plate("Wide shot of the valley meadow in a storm")
    assert _mean_hue_and_value(storm)[1] < _mean_hue_and_value(day)[1]
    snow = plate("Wide shot of the mountain pass in winter")
    assert sum(snow.convert("L").point(lambda v: 255 if v > 225 else 0).histogram()[255:]) > 50, "snow caps"
    sea, desert = plate("Wide shot of the open sea"), plate("Wide shot of the desert dunes")
    lower = (0, 120, 320, 180)
    assert ImageChops.difference(sea.crop(lower), desert.crop(lower)).getbbox() is not None
    assert _mean_hue_and_value(sea.crop(lower))[0] != pytest.approx(_mean_hue_and_value(desert.crop(lower))[0], abs=10)


def test_framing_follows_the_shot_type():
    gen = StoryboardGenerator(StoryboardOptions(width=320, height=180))
    style = "deep navy and lantern-gold palette"
    area = {}
    for kind, description in (("closeup", "Close-up: Mira at the pier"), ("medium", "Medium shot: Mira at the pier"),
                              ("wide", "Wide shot of Mira at the pier"), ("aerial", "Sweeping aerial view of the pier")):
        shot = make_shot(description=description, image_prompt=f"{description.lower()}, {style}",
                         characters=("Mira",), seed=7)
        assert shot_type(shot) == kind
        # Count the pixels of the figure's colour.
        figure = _Painter(shot, (320, 180)).figure_colour()
        plate = gen.draw_plate(shot)
        mask = ImageChops.difference(plate, Image.new("RGB", plate.size, figure)).convert("L")
        area[kind] = mask.point(lambda v: 255 if v < 4 else 0).histogram()[255]
    assert area["closeup"] > area["medium"] > area["wide"] > area["aerial"], area


@pytest.mark.parametrize("size", [(1280, 720), (320, 180)])
def test_card_text_lies_inside_the_frame(size):
    shot = make_shot(id=12, description="A caption so long it could never fit on two lines of the card, "
                     "however small the type: it goes on about the harbour, the quays and the sails for ever",
                     motion_prompt="pan left, slow camera, " + "very " * 40 + "long")
    text = card_overlay(shot, size, layer="text").getchannel("A")
    box = text.getbbox()
    pad = max(4, int(24 * size[1] / 720)) - 2
    assert box[0] >= pad and box[1] >= 0 and box[2] <= size[0] - pad and box[3] <= size[1] - 2, box
