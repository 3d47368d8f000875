import pytest
from PIL import Image

from framework import ConfigError
from framework.testing import fake_backends, run_session

from reelforge_ledger import vignette


def run_with_vignette(tmp_path, fakes, **options):
    return run_session(tmp_path, "A lighthouse in a storm",
                       backends={**fakes.backends, "image": "vignette"},
                       options={"vignette": {"base": "fake", **options}}, plugins=[vignette])


def test_wraps_the_base_generator(tmp_path):
    with fake_backends(shots=2) as fakes:
        result = run_with_vignette(tmp_path, fakes, grain=0)
    assert result.ok
    assert [c[0] for c in fakes.image.calls] == [1, 2]  # the base drew every frame
    with Image.open(result.path / "images" / "shot_001.png") as im:
        centre, corner = im.getpixel((32, 18)), im.getpixel((0, 0))
    assert sum(corner) < sum(centre) / 2  # the fake's frame is one flat colour


def test_grain_is_seeded(tmp_path):
    with fake_backends(shots=1) as fakes:
        a = run_with_vignette(tmp_path / "a", fakes, strength=0, grain=0.5)
        b = run_with_vignette(tmp_path / "b", fakes, strength=0, grain=0.5)
    img_a = Image.open(a.path / "images" / "shot_001.png")
    img_b = Image.open(b.path / "images" / "shot_001.png")
    assert img_a.tobytes() == img_b.tobytes()
    assert len(set(img_a.tobytes())) > 10  # the flat fake frame now has grain


def test_base_options_reach_the_base(tmp_path):
    with fake_backends(shots=1) as fakes:
        result = run_with_vignette(tmp_path, fakes, base_options=["tint=40"])
    assert result.ok
    assert fakes.image.options.tint == 40


@pytest.mark.parametrize("options, message", [
    ({"base": "nope"}, "unknown image generator 'nope'; installed:"),
    ({"base": "vignette"}, "cannot use itself"),
    ({"base": "fake", "base_options": ["colour=red"]}, "has no option 'colour'"),
    ({"base": "fake", "strength": 2}, "strength"),
])
def test_bad_options_are_clear(tmp_path, options, message):
    with fake_backends(shots=1) as fakes:
        with pytest.raises(ConfigError, match=message):
            run_session(tmp_path, "An idea", backends={**fakes.backends, "image": "vignette"},
                        options={"vignette": options}, plugins=[vignette])
