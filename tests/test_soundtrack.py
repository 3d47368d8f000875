"""reelforge.media.soundtrack against the real bundled ffmpeg: every output is decoded and checked."""

from __future__ import annotations

import array
import math
import re
import subprocess
import threading
import wave

import pytest
from PIL import Image, ImageChops

from reelforge.media import soundtrack as st
from reelforge.errors import StageError
from reelforge.media.ffmpeg import FFmpegCancelled, assemble, ffmpeg_exe, probe, run_ffmpeg

SIZE = (320, 180)


def tone(path, seconds: float, freq: float = 440.0, rate: int = 22050, amp: float = 0.5):
    """A mono 16-bit sine WAV, like a narrator writes (its own sample rate)."""
    n = int(seconds * rate)
    samples = array.array("h", (int(amp * 32767 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def read_wav(path):
    with wave.open(str(path), "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        data = array.array("h", w.readframes(w.getnframes()))
    return rate, channels, data


def rms(path, start: float, end: float) -> float:
    rate, channels, data = read_wav(path)
    a, b = int(start * rate) * channels, int(end * rate) * channels
    window = data[a:b]
    return math.sqrt(sum(x * x for x in window) / max(1, len(window))) / 32768


def loudness(path) -> float:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-af",
                           "ebur128=framelog=quiet", "-f", "null", "-"], capture_output=True, text=True)
    return float(re.search(r"I:\s+(-?[\d.]+) LUFS", proc.stderr.split("Summary:")[-1]).group(1))


def colour_clip(path, colour: str, seconds: float):
    run_ffmpeg(["-f", "lavfi", "-i", f"color=c={colour}:s={SIZE[0]}x{SIZE[1]}:r=25:d={seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-y", str(path)],
               what="test clip")
    return path


def frame_at(video, t: float) -> Image.Image:
    out = video.with_name(f"{video.stem}_{t:.3f}.png")
    run_ffmpeg(["-ss", f"{t:.3f}", "-i", str(video), "-frames:v", "1", "-y", str(out)], what="frame")
    with Image.open(out) as im:
        return im.convert("RGB")


def audio_of(film, tmp_path):
    wav = tmp_path / f"{film.stem}_audio.wav"
    run_ffmpeg(["-i", str(film), "-map", "0:a:0", "-c:a", "pcm_s16le", "-y", str(wav)], what="audio")
    return wav


# -- timing -----------------------------------------------------------------------------

@pytest.mark.parametrize("transition, fade", [("cut", 0.0), ("crossfade", 0.3)])
def test_clip_starts_match_where_assemble_puts_each_clip(tmp_path, transition, fade):
    colours, durations = ("red", "lime", "blue"), (1.0, 0.8, 1.2)
    clips = [colour_clip(tmp_path / f"c{i}.mp4", c, d) for i, (c, d) in enumerate(zip(colours, durations))]
    film = assemble(clips, tmp_path / "film.mp4", transition=transition, crossfade_s=fade)
    starts = st.clip_starts(durations, fade)
    assert probe(film)["duration"] == pytest.approx(st.film_length(durations, fade), abs=0.05)
    expected_rgb = {"red": (255, 0, 0), "lime": (0, 255, 0), "blue": (0, 0, 255)}
    for colour, start in zip(colours, starts):
        # Just after the clip is fully in (after its crossfade, if any), it is on screen.
        rgb = frame_at(film, start + fade + 0.1).getpixel((SIZE[0] // 2, SIZE[1] // 2))
        assert all(abs(a - b) < 40 for a, b in zip(rgb, expected_rgb[colour])), (colour, start, rgb)
    if transition == "cut":
        assert starts == [0.0, 1.0, 1.8]
    else:
        assert starts == pytest.approx([0.0, 0.7, 1.2])


def test_crossfade_is_capped_like_assemble():
    assert st.effective_crossfade([1.0, 0.4, 2.0], 0.5) == pytest.approx(0.2)
    assert st.effective_crossfade([3.0], 0.5) == 0.0
    assert st.film_length([1.0, 0.4, 2.0], 0.5) == pytest.approx(3.4 - 2 * 0.2)


# -- subtitle files ----------------------------------------------------------------------

def test_srt_and_vtt_cues_match_the_narration_timing(tmp_path):
    lines = [(0.25, 2.5, "The keeper climbs the stairs."),
             (3.25, 4.0, "Out at sea, the storm gathers itself, first as a rumour, then as a wall of "
                         "black water that swallows the horizon whole, while the lamp turns on.")]
    cues = st.narration_cues(lines)
    assert cues[0] == st.Cue(0.25, 2.75, "The keeper climbs the stairs.")
    second = cues[1:]
    assert len(second) >= 2, "a long line becomes several cues"
    assert second[0].start == pytest.approx(3.25) and second[-1].end == pytest.approx(7.25, abs=0.002)
    for a, b in zip(second, second[1:]):
        assert a.end == pytest.approx(b.start, abs=0.002)
    assert all(len(c.text.splitlines()) <= 2 and all(len(x) <= 50 for x in c.text.splitlines()) for c in cues)
    joined = " ".join(" ".join(c.text.split()) for c in second)
    assert joined == " ".join(lines[1][2].split()), "no word lost or repeated"

    srt = st.write_srt(cues, tmp_path / "film.srt")
    vtt = st.write_vtt(cues, tmp_path / "film.vtt")
    text = srt.read_text(encoding="utf-8")
    assert text.startswith("1\n00:00:00,250 --> 00:00:02,750\nThe keeper climbs the stairs.\n")
    assert vtt.read_text(encoding="utf-8").startswith("WEBVTT\n\n00:00:00.250 --> 00:00:02.750\n")
    for path in (srt, vtt):
        back = st.read_cues(path)
        assert [(c.start, c.end, c.text) for c in back] == [
            (pytest.approx(c.start, abs=0.001), pytest.approx(c.end, abs=0.001), c.text) for c in cues]


def test_a_cue_that_ends_before_it_starts_is_refused(tmp_path):
    with pytest.raises(StageError, match="end must come after"):
        st.write_srt([st.Cue(2.0, 1.0, "x")], tmp_path / "bad.srt")


# -- the audio track -----------------------------------------------------------------------

def test_voices_land_at_their_start_times_and_the_mix_is_normalised(tmp_path):
    a = tone(tmp_path / "a.wav", 1.0, 300)
    b = tone(tmp_path / "b.wav", 1.5, 500, rate=16000)
    out = st.build_audio(tmp_path / "mix.tmp", 6.0, [st.Voice(a, 0.5), st.Voice(b, 3.0)])
    rate, channels, data = read_wav(out)
    assert (rate, channels) == (48000, 2)
    assert len(data) / channels / rate == pytest.approx(6.0, abs=0.01)
    # Sound where each voice is, silence around them.
    assert rms(out, 0.6, 1.4) > 0.05 and rms(out, 3.1, 4.4) > 0.05
    for gap in ((0.0, 0.4), (1.7, 2.8), (4.7, 6.0)):
        assert rms(out, *gap) < 0.01, gap
    assert loudness(out) == pytest.approx(st.DEFAULT_LOUDNESS, abs=1.5)


def test_music_is_ducked_under_the_voice(tmp_path):
    voice = tone(tmp_path / "v.wav", 2.0, 700)
    music = tone(tmp_path / "m.wav", 1.3, 180, rate=44100, amp=0.8)  # shorter than the film: it loops
    mix = st.build_audio(tmp_path / "d.wav", 8.0, [st.Voice(voice, 3.0)], music=music, loudness=None)
    flat = st.build_audio(tmp_path / "f.wav", 8.0, [st.Voice(voice, 3.0)], music=music, duck=False,
                          loudness=None)
    voice_only = st.build_audio(tmp_path / "v_only.wav", 8.0, [st.Voice(voice, 3.0)], loudness=None)
    alone = st.build_audio(tmp_path / "m_only.wav", 8.0, [], music=music, loudness=None)
    assert rms(alone, 6.0, 6.5) > 0.02, "the music loops to the end (before its fade-out)"
    assert rms(alone, 7.95, 8.0) < rms(alone, 6.0, 6.5) * 0.2, "and fades out"

    def music_in(path):  # the mix less the voice, sample by sample
        _, _, a = read_wav(path)
        _, _, v = read_wav(voice_only)
        out = tmp_path / f"{path.stem}_music.wav"
        with wave.open(str(out), "wb") as w:
            w.setnchannels(2), w.setsampwidth(2), w.setframerate(48000)
            w.writeframes(array.array("h", (max(-32768, min(32767, x - y)) for x, y in zip(a, v))).tobytes())
        return out

    ducked, steady = music_in(mix), music_in(flat)
    assert rms(ducked, 1.0, 2.5) == pytest.approx(rms(steady, 1.0, 2.5), rel=0.1), "no ducking without a voice"
    assert rms(ducked, 3.5, 4.8) < rms(steady, 3.5, 4.8) * 0.5, "the music goes down under the voice"
    assert rms(ducked, 6.0, 6.5) > rms(ducked, 3.5, 4.8) * 1.5, "and comes back after it"


def test_no_narration_gives_a_silent_track_of_the_film_length(tmp_path):
    out = st.build_audio(tmp_path / "silent.wav", 2.5)
    rate, channels, data = read_wav(out)
    assert len(data) / channels / rate == pytest.approx(2.5, abs=0.01)
    assert max(abs(x) for x in data) == 0


def test_bad_audio_requests_are_clear_errors(tmp_path):
    voice = tone(tmp_path / "v.wav", 2.0)
    with pytest.raises(StageError, match="runs past the end"):
        st.build_audio(tmp_path / "x.wav", 3.0, [st.Voice(voice, 1.5)])
    with pytest.raises(StageError, match="does not exist"):
        st.build_audio(tmp_path / "x.wav", 3.0, [st.Voice(tmp_path / "nope.wav", 0)])
    with pytest.raises(StageError, match="music file"):
        st.build_audio(tmp_path / "x.wav", 3.0, music=tmp_path / "nope.mp3")


def test_cancelled_mix_stops(tmp_path):
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(FFmpegCancelled):
        st.build_audio(tmp_path / "x.wav", 600.0, cancelled=cancelled)


# -- cards ---------------------------------------------------------------------------------

def test_cards_are_clips_that_join_the_film_by_stream_copy(tmp_path):
    from reelforge.plugins.kenburns import KenBurnsOptions, KenBurnsRenderer
    from reelforge.protocols import ShotJob
    from reelforge.records import Shot

    still = tmp_path / "still.png"
    Image.linear_gradient("L").resize((640, 360)).convert("RGB").save(still)
    shot = Shot(id=1, scene_id="s1", description="d", image_prompt="p", motion_prompt="push in", duration_s=1.0)
    job = ShotJob(session_id="s", stage="videos", shot=shot, attempt=1, work_dir=tmp_path / "w",
                  checkpoint={}, cancelled=threading.Event(), save=lambda d: None)
    clip = KenBurnsRenderer(KenBurnsOptions(width=320, height=180)).render(shot, still, job)
    title = st.title_card("The Keeper", "A lighthouse keeper befriends a storm.", tmp_path / "title.mp4",
                          size=SIZE, duration_s=1.5)
    end = st.end_card(["Made with reelforge"], tmp_path / "end.mp4", size=SIZE, duration_s=1.0)
    keys = ("codec", "width", "height", "fps", "pix_fmt", "has_audio")
    assert [probe(title)[k] for k in keys] == [probe(clip)[k] for k in keys] == [probe(end)[k] for k in keys]
    assert probe(title)["duration"] == pytest.approx(1.5, abs=0.05)
    film = assemble([title, clip, end], tmp_path / "film.mp4")
    assert probe(film)["duration"] == pytest.approx(3.5, abs=0.1)


@pytest.mark.parametrize("title", ["Short", "A Very Long Title That Goes On and On About a Lighthouse "
                                             "Keeper Who Befriends the Storm of the Century"])
def test_card_text_stays_inside_the_margins(title):
    img = st.draw_card((640, 360), title, "Logline " * 30)
    bg = Image.new("RGB", img.size, (14, 16, 22))
    # Text pixels: clearly brighter than the (vignetted) background.
    mask = ImageChops.difference(img, bg).convert("L").point(lambda v: 255 if v > 60 else 0)
    box = mask.getbbox()
    assert box is not None
    assert box[0] >= 64 - 2 and box[2] <= 640 - 64 + 2 and box[1] >= 36 - 2 and box[3] <= 360 - 36 + 2


# -- the finished film ----------------------------------------------------------------------

@pytest.fixture
def film_parts(tmp_path):
    video = colour_clip(tmp_path / "video.mp4", "gray", 4.0)
    voice = tone(tmp_path / "v.wav", 1.5)
    audio = st.build_audio(tmp_path / "audio.wav", 4.0, [st.Voice(voice, 1.0)])
    cues = st.narration_cues([(1.0, 1.5, "The keeper climbs the stairs.")])
    srt = st.write_srt(cues, tmp_path / "film.srt")
    return video, audio, cues, srt


def test_soft_subtitles_are_a_mov_text_track_with_the_cue_timings(tmp_path, film_parts):
    video, audio, cues, srt = film_parts
    film = st.finish_film(video, audio, tmp_path / "film.part", subtitles="soft", srt=srt)
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(film)], capture_output=True, text=True).stderr
    assert re.search(r"Stream #0:\d+(\[\w+\])?\(eng\): Subtitle: mov_text", info)
    assert re.search(r"Stream #0:\d+.*: Audio: aac", info)
    back = tmp_path / "back.srt"
    run_ffmpeg(["-i", str(film), "-map", "0:s:0", "-y", str(back)], what="subs")
    got = st.read_cues(back)
    assert [(c.start, c.end, c.text) for c in got] == [(pytest.approx(c.start, abs=0.02),
                                                        pytest.approx(c.end, abs=0.02), c.text) for c in cues]
    assert st.wav_duration(audio_of(film, tmp_path)) == pytest.approx(4.0, abs=0.05)
    assert probe(film)["duration"] == pytest.approx(4.0, abs=0.05)


def test_burnt_subtitles_are_in_the_picture_only_while_their_cue_lasts(tmp_path, film_parts):
    video, audio, cues, _ = film_parts
    film = st.finish_film(video, audio, tmp_path / "burnt.mp4", subtitles="burn", cues=cues)
    assert probe(film)["has_audio"] and probe(film)["duration"] == pytest.approx(4.0, abs=0.05)
    before, during, after = frame_at(film, 0.5), frame_at(film, 1.8), frame_at(film, 3.2)
    plain = frame_at(video, 1.8)
    assert ImageChops.difference(before, plain).convert("L").point(lambda v: v > 40 and 255).getbbox() is None
    assert ImageChops.difference(after, plain).convert("L").point(lambda v: v > 40 and 255).getbbox() is None
    box = ImageChops.difference(during, plain).convert("L").point(lambda v: v > 40 and 255).getbbox()
    assert box is not None, "the cue is drawn"
    w, h = SIZE
    assert 0 < box[0] and box[2] < w and box[1] > h // 2 and box[3] < h, f"text box {box} inside the frame, low"


def test_burn_overlay_shrinks_long_lines_to_fit():
    img = st.subtitle_overlay((320, 180), "An extraordinarily long narration line that cannot possibly fit "
                                          "on one line of a small frame without being shrunk or wrapped")
    box = img.getchannel("A").getbbox()
    assert box[0] >= 0 and box[2] <= 320 and box[1] >= 0 and box[3] <= 180
    assert box[3] <= 180 - int(180 * 0.06) + 8


def test_fades_start_and_end_in_black_and_silence(tmp_path, film_parts):
    video, audio, _, _ = film_parts
    film = st.finish_film(video, audio, tmp_path / "faded.mp4", fade_in_s=0.5, fade_out_s=0.5)
    first, middle = frame_at(film, 0.0), frame_at(film, 2.0)
    assert max(first.getpixel((160, 90))) < 30 < max(middle.getpixel((160, 90)))
    wav = audio_of(film, tmp_path)
    assert rms(wav, 3.9, 4.0) < rms(wav, 1.2, 1.6) * 0.3


def test_plain_mux_copies_the_picture_and_checks_its_inputs(tmp_path, film_parts):
    video, audio, _, srt = film_parts
    film = st.finish_film(video, audio, tmp_path / "muxed.mp4")
    assert probe(film)["has_audio"]
    # Stream copy: the very same H.264 packets.
    same = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(film), "-i", str(video), "-map", "0:v",
                           "-f", "md5", "-c", "copy", "-", "-map", "1:v", "-f", "md5", "-c", "copy", "-"],
                          capture_output=True, text=True).stdout.split()
    assert len(same) == 2 and same[0] == same[1]
    with pytest.raises(StageError, match="subtitle mode"):
        st.finish_film(video, audio, tmp_path / "x.mp4", subtitles="karaoke")
    with pytest.raises(StageError, match="need an .srt"):
        st.finish_film(video, audio, tmp_path / "x.mp4", subtitles="soft")
    with pytest.raises(StageError, match="need cues"):
        st.finish_film(video, audio, tmp_path / "x.mp4", subtitles="burn")


def test_fading_the_first_and_last_clips_keeps_stream_copy_and_only_fades_the_ends(tmp_path):
    clips = [colour_clip(tmp_path / f"c{i}.mp4", "gray", 1.0) for i in range(3)]
    first = st.fade_clip(clips[0], tmp_path / "first.mp4", fade_in_s=0.4)
    last = st.fade_clip(clips[-1], tmp_path / "last.mp4", fade_out_s=0.4)
    keys = ("codec", "width", "height", "fps", "pix_fmt", "has_audio")
    assert [probe(first)[k] for k in keys] == [probe(clips[1])[k] for k in keys] == [probe(last)[k] for k in keys]
    film = assemble([first, clips[1], last], tmp_path / "film.mp4")
    assert probe(film)["duration"] == pytest.approx(3.0, abs=0.05)
    level = lambda t: max(frame_at(film, t).getpixel((160, 90)))  # noqa: E731
    assert level(0.0) < 30 < level(0.6) and level(1.5) > 100 and level(2.93) < 40
    audio = st.build_audio(tmp_path / "a.wav", 3.0, [st.Voice(tone(tmp_path / "v.wav", 2.8), 0.1)])
    done = st.finish_film(film, audio, tmp_path / "done.mp4", fade_in_s=0.4, fade_out_s=0.4, audio_fades_only=True)
    wav = audio_of(done, tmp_path)
    assert rms(wav, 0.0, 0.1) < rms(wav, 1.0, 1.5) * 0.5 and rms(wav, 2.9, 3.0) < rms(wav, 1.0, 1.5) * 0.5


def test_short_low_rate_voices_mix_without_hanging_ffmpeg(tmp_path):
    """Three short 8 kHz voices at 0, 0.6 and 1.3 s: an unbounded apad before atrim made the
    bundled ffmpeg deadlock on exactly this mix."""
    import math
    import struct
    import threading
    import wave

    voices = []
    for i, (words, start) in enumerate([(1, 0.0), (2, 0.6), (3, 1.3)], start=1):
        path = tmp_path / f"v{i}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(j * 0.2)))
                                   for j in range(int(words * 0.1 * 8000))))
        voices.append(st.Voice(path, start))
    stop = threading.Event()
    timer = threading.Timer(240, stop.set)  # a watchdog only: the mix takes a second or two
    timer.start()
    try:
        out = st.build_audio(tmp_path / "mix.wav", 2.1, voices, cancelled=stop)
    finally:
        timer.cancel()
    assert not stop.is_set()
    assert st.wav_duration(out) == pytest.approx(2.1, abs=0.02)
