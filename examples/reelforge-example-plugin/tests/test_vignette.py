"""The vignette generator wrapped around reelforge's fake image generator (named "fake")."""

import pytest
from PIL import Image

from reelforge import ConfigError
from reelforge.testing import run_session

from reelforge_ledger import vignette


def run_with_vignette(output_dir, fakes, **options):
    return run_session(output_dir, "A lighthouse in a storm",
                       backends={**fakes.backends, "image": "vignette"},
                       options={"vignette": {"base": "fake", **options}}, plugins=[vignette])


def test_wraps_the_base_generator(reelforge_fakes, reelforge_output):
    result = run_with_vignette(reelforge_output, reelforge_fakes, grain=0)
    assert result.ok
    assert sorted(c[0] for c in reelforge_fakes.image.calls) == [1, 2, 3]  # the base drew every frame
    with Image.open(result.path / "images" / "shot_001.png") as im:
        centre, corner = im.getpixel((32, 18)), im.getpixel((0, 0))
    assert sum(corner) < sum(centre) / 2  # the fake's frame is one flat colour


def test_grain_is_seeded(reelforge_fakes, tmp_path):
    a = run_with_vignette(tmp_path / "a", reelforge_fakes, strength=0, grain=0.5)
    b = run_with_vignette(tmp_path / "b", reelforge_fakes, strength=0, grain=0.5)
    with Image.open(a.path / "images" / "shot_001.png") as img_a, \
            Image.open(b.path / "images" / "shot_001.png") as img_b:
        assert img_a.tobytes() == img_b.tobytes()
        assert len(set(img_a.tobytes())) > 10  # the flat fake frame now has grain


def test_base_options_reach_the_base(reelforge_fakes, reelforge_output):
    result = run_with_vignette(reelforge_output, reelforge_fakes, base_options=["tint=40"])
    assert result.ok
    assert reelforge_fakes.image.options.tint == 40


@pytest.mark.parametrize("options, message", [
    ({"base": "nope"}, "unknown image generator 'nope'; installed:"),
    ({"base": "vignette"}, "cannot use itself"),
    ({"base_options": ["colour=red"]}, "has no option 'colour'"),
    ({"base_options": ["tint"]}, "not of the form key=value"),
    ({"strength": 2}, "strength"),
])
def test_bad_options_are_clear(reelforge_fakes, reelforge_output, options, message):
    with pytest.raises(ConfigError, match=message):
        run_with_vignette(reelforge_output, reelforge_fakes, **options)
