"""Issue 19 item 4: the music bed sits a set loudness under the voices whatever its file's
level; subtitle lines break where style guides say; the end card's credits are the user's."""

from __future__ import annotations

import subprocess

import pytest
from PIL import ImageChops

from reelforge.errors import ConfigError
from reelforge.media import film
from reelforge.media import soundtrack as st
from reelforge.media.ffmpeg import ffmpeg_exe
from reelforge.media.soundtrack.subtitles import WEAK_ENDINGS
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session


def make_audio(source: str, out, seconds: float):
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", source, "-t", f"{seconds}",
                    "-ar", "48000", "-ac", "1", "-y", str(out)], check=True)
    return out


def loudness_of(path, start: float, seconds: float, tmp_path) -> float:
    part = tmp_path / f"part_{start}.wav"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-ss", f"{start}", "-t", f"{seconds}", "-i", str(path),
                    "-y", str(part)], check=True)
    return st.measure_loudness(part)[0]


@pytest.mark.parametrize("music_source", [
    "sine=f=330:r=48000,volume=-42dB",                       # a very quiet file
    "anoisesrc=c=pink:a=0.9:r=48000:seed=7",                 # a loud one
])
@pytest.mark.parametrize("under", [12.0, 20.0])
def test_the_music_bed_lands_under_the_voices_whatever_its_level(tmp_path, music_source, under):
    voice = make_audio("sine=f=440:r=48000,volume=-20dB", tmp_path / "voice.wav", 2.0)
    music = make_audio(music_source, tmp_path / "bed.wav", 3.0)
    mix = st.build_audio(tmp_path / "mix.wav", 8.0, [st.Voice(voice, 0.5)], music=music,
                         music_under_lu=under, duck=False, loudness=None)
    voice_level = st.measure_loudness(voice)[0]
    file_level = st.measure_loudness(music)[0]
    music_level = loudness_of(mix, 3.0, 2.5, tmp_path)  # after the voice, before the fade
    assert music_level - voice_level == pytest.approx(-under, abs=1.0), (file_level, music_level, voice_level)


def test_with_normalisation_the_gap_holds_and_the_quiet_file_is_heard(tmp_path):
    voice = make_audio("sine=f=440:r=48000,volume=-30dB", tmp_path / "voice.wav", 2.0)
    quiet = make_audio("sine=f=330:r=48000,volume=-45dB", tmp_path / "quiet.wav", 3.0)
    mix = st.build_audio(tmp_path / "mix.wav", 8.0, [st.Voice(voice, 0.5)], music=quiet, duck=False)
    speech, bed = loudness_of(mix, 0.6, 1.8, tmp_path), loudness_of(mix, 3.0, 2.5, tmp_path)
    assert bed - speech == pytest.approx(-st.DEFAULT_MUSIC_UNDER, abs=1.5)
    assert bed > -40  # the old fixed -14 dB left this file at about -60 LUFS


# -- subtitle lines ---------------------------------------------------------------------------------

SENTENCES = [
    "Yael notices the smallest sign that the storm is listening to her.",
    "The keeper climbs to the lamp room and waits for the first gust of the night.",
    "A robot learns to paint in Tokyo, one brushstroke at a time, under the neon rain.",
    "Daro and his apprentice argue about the clock in the tower of the old town hall.",
    "When the storm finally answers, the whole village runs down to the harbour wall.",
    "She turns away from the window and into the dark, where the sea is still calling.",
]


@pytest.mark.parametrize("text", SENTENCES)
def test_subtitle_lines_never_end_on_a_weak_word_and_stay_balanced(text):
    cues = st.narration_cues([(0.0, 4.0, text)], line_width=45)
    assert " ".join(c.text.replace("\n", " ") for c in cues) == text
    if len(cues) > 1:  # no two-line break fits without a weak ending: two cues, each well broken
        assert len(cues) == 2 and all(c.text.split()[-1].lower().strip(",.") not in WEAK_ENDINGS
                                      or c.text.endswith((",", ".")) for c in cues), cues
        return
    [cue] = cues
    lines = cue.text.split("\n")
    assert len(lines) == 2 and all(len(line) <= 45 for line in lines), lines
    last = lines[0].split()[-1].lower().strip(",.")
    assert last not in WEAK_ENDINGS or lines[0].endswith(","), lines
    # balanced: no other allowed break is more even (a break after punctuation may be a little less so)
    words = text.split()
    evens = [abs(len(" ".join(words[:i])) - len(" ".join(words[i:]))) for i in range(1, len(words))
             if words[i - 1].lower().strip(",.") not in WEAK_ENDINGS
             and max(len(" ".join(words[:i])), len(" ".join(words[i:]))) <= 45]
    assert abs(len(lines[0]) - len(lines[1])) <= min(evens) + 6, lines


def test_long_narration_splits_into_cues_that_do_not_end_on_a_weak_word():
    text = ("In the end the keeper climbs the winding stair of the old lighthouse and watches the smallest "
            "sign of the storm that has become a friend of the whole village by the sea.")
    cues = st.narration_cues([(0.0, 10.0, text)], max_chars=60, line_width=32)
    assert " ".join(c.text.replace("\n", " ") for c in cues) == text
    for cue in cues:
        for line in cue.text.split("\n"):
            assert line.split()[-1].lower().strip(",.") not in WEAK_ENDINGS or line.endswith("."), cue.text


# -- credits ------------------------------------------------------------------------------------------

def test_credits_are_lines_and_can_be_turned_off():
    assert film.credit_lines(None) == film.DEFAULT_CREDITS
    assert film.credit_lines("Written by Ana | Music: Bo,  Cy\n") == ("Written by Ana", "Music: Bo, Cy")
    assert film.credit_lines("") == ()
    with pytest.raises(ConfigError, match="credits"):
        film.settings_from(None, {"credits": "x" * 200})
    with pytest.raises(ConfigError, match="credits"):
        film.settings_from(None, {"credits": "|".join("abcdefghij")})


def end_frame(path, tmp_path):
    from PIL import Image

    png = tmp_path / "end.png"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-sseof", "-1.5", "-i", str(path), "-frames:v", "1",
                    "-y", str(png)], check=True)
    return Image.open(png).convert("L")


def test_the_end_card_shows_the_users_credits_or_none(out, fakes, tmp_path):
    def film_with(**film_options):
        result = run_session(out, "A lighthouse", backends=fakes.backends, cards=True,
                             film_options={"fade_out_s": 0.0, **film_options})
        assert result.ok, result.failed
        return result

    default = film_with()
    credited = film_with(credits="Written by Ana|Music by Bo")
    bare = film_with(credits="")
    meta = SessionStore(out).load(credited.session_id).meta
    assert meta.film_settings["credits"] == "Written by Ana|Music by Bo"
    frames = {name: end_frame(r.film, tmp_path / name) for name, r in
              (("default", default), ("credited", credited), ("bare", bare))
              if (tmp_path / name).mkdir() is None}
    size = frames["default"].size
    for name, lines in (("default", ["Made with reelforge"]), ("credited", ["Written by Ana", "Music by Bo"]),
                        ("bare", [])):
        card = st.draw_card(size, "The End", "\n".join(lines)).convert("L")
        for other, other_lines in (("default", ["Made with reelforge"]), ("bare", [])):
            if other_lines == lines:
                continue
            assert ImageChops.difference(frames[name], card).getextrema()[1] < \
                ImageChops.difference(frames[other], card).getextrema()[1] or name == other, (name, other)
    # the credit text is drawn where the default line was not: the three cards differ
    assert ImageChops.difference(frames["default"], frames["bare"]).getbbox() is not None
    assert ImageChops.difference(frames["credited"], frames["default"]).getbbox() is not None
