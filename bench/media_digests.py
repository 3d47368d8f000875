"""Digests of storyboard frames (plates, cards, PNGs) and soundtrack renders (mixes, loudness,
subtitle files, cards, finished films) and of every ffmpeg command line they run, as JSON:
run it before and after a change that should not alter the output, and diff the two files.
The digests hold for one machine's Pillow and ffmpeg, so they are compared, not pinned.

    python bench/media_digests.py OUT.json
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import sys
import tempfile
import threading
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import reelforge.media.ffmpeg as ff  # noqa: E402
from reelforge.media import soundtrack as st  # noqa: E402
from reelforge.plugins.image_gen import storyboard as sb  # noqa: E402
from reelforge.protocols import ShotJob  # noqa: E402
from reelforge.records import Shot  # noqa: E402

STYLES = ("deep navy and lantern-gold palette, 35mm lens", "warm terracotta and teal palette")
DESCRIPTIONS = (
    "Wide shot of the storm-lashed pier, a swinging lantern",
    "Wide shot of the great market square at dusk",
    "Wide shot of the old-growth forest at night",
    "Low-angle shot of Daro at the mountain pass in winter",
    "Medium shot: Ines in a small kitchen at dawn",
    "Wide shot of the caravan gate, a column of camels in the desert",
    "Sweeping aerial view of the lighthouse at night",
    "Close-up: Mira at the pier",
    "Detail of a lantern on the table",
    "Silhouette of Mira against the sunset on the cliff",
    "Wide shot of the space station in orbit",
    "Medium shot: two keepers inside the cabin during the storm",
    "Aerial view of the city skyline",
    "Wide shot of the valley meadow",
)
MOVES = ("push in", "pull out", "pan left", "pan right", "tilt up", "tilt down", "static hold")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def record_ffmpeg(calls: list[str], work: Path) -> None:
    """Record every ffmpeg command line the media modules run, with scratch names made stable."""
    original = ff.run_ffmpeg

    def recording(args, *a, **kw):
        line = " ".join(str(x) for x in args).replace(str(work), "<work>")
        calls.append(re.sub(r"(\.(?:mix|r128|finish|card)-|/tmp)[a-z0-9_]+", r"\1X", line))
        return original(args, *a, **kw)

    for name, module in list(sys.modules.items()):
        if name.startswith("reelforge") and getattr(module, "run_ffmpeg", None) is original:
            module.run_ffmpeg = recording


def storyboard(out: dict, work: Path) -> None:
    for size in ((320, 180), (1280, 720)):
        gen = sb.StoryboardGenerator(sb.StoryboardOptions(width=size[0], height=size[1]))
        for i, text in enumerate(DESCRIPTIONS):
            shot = Shot(id=i + 1, scene_id=f"s{i % 3}", description=text,
                        image_prompt=f"{text.lower()}, {STYLES[i % 2]}", motion_prompt=MOVES[i % len(MOVES)] + ", slow",
                        characters=("Mira", "Daro")[: i % 3], seed=i * 7)
            key = f"{size[0]}x{size[1]}/{i}"
            out[f"plate/{key}"] = digest(gen.draw_plate(shot).tobytes())
            out[f"card/{key}"] = digest(sb.card_overlay(shot, size).tobytes())
            out[f"draw/{key}"] = digest(gen.draw(shot).tobytes())
            if size == (320, 180):
                job = ShotJob(session_id="s", stage="images", shot=shot, attempt=1, work_dir=work / key,
                              checkpoint={}, cancelled=threading.Event(), save=lambda d: None)
                out[f"png/{key}"] = digest(gen.generate(shot, job).read_bytes())
    out["palettes"] = digest(repr([sb.palette_for(f"{d}, {STYLES[0]}") for d in DESCRIPTIONS]).encode())


def tone(path: Path, seconds: float, freq: float, rate: int = 22050, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * n / rate))) * channels
                               for n in range(int(seconds * rate))))
    return path


def soundtrack(out: dict, work: Path) -> None:
    a, b = tone(work / "a.wav", 1.2, 440), tone(work / "b.wav", 0.8, 660, rate=16000, channels=2)
    music = tone(work / "m.wav", 1.5, 220, rate=44100)
    voices = [st.Voice(a, 0.3), st.Voice(b, 2.5)]
    mixes = {"both": {"voices": voices, "music": music}, "noduck": {"voices": voices, "music": music, "duck": False},
             "voices": {"voices": voices}, "music": {"music": music}, "silence": {},
             "raw": {"voices": voices, "music": music, "loudness": None}}
    for name, kw in mixes.items():
        out[f"wav/{name}"] = digest(st.build_audio(work / f"audio_{name}.wav", 4.0, **kw).read_bytes())
    out["loudness"] = repr(st.measure_loudness(work / "audio_both.wav"))
    speech = ("The keeper climbs the stair. The storm comes in from the sea, loud and grey, and the lamp must "
              "stay lit whatever happens tonight.")
    lines = [(0.3, 1.2, speech), (2.5, 0.8, "Morning.")]
    cues = st.narration_cues(lines)
    out["cues"] = digest(repr(cues).encode())
    out["srt"] = digest(st.write_srt(cues, work / "film.srt").read_bytes())
    out["vtt"] = digest(st.write_vtt(cues, work / "film.vtt").read_bytes())
    out["read_cues"] = digest(repr(st.read_cues(work / "film.srt")).encode())
    out["timing"] = repr((st.clip_starts([1.0, 2.0, 0.6], 0.5), st.film_length([1.0, 2.0, 0.6], 0.5),
                          st.effective_crossfade([1.0, 2.0], 0.7), st.wav_duration(b)))
    out["draw_card"] = digest(st.draw_card((640, 360), "The Keeper", "A lighthouse keeper befriends a storm").tobytes())
    out["subtitle_overlay"] = digest(st.subtitle_overlay((640, 360), cues[0].text).tobytes())
    title = st.title_card("The Keeper", "A keeper and a storm", work / "title.mp4", size=(320, 180), duration_s=1.0)
    end = st.end_card(["Made with reelforge"], work / "end.mp4", size=(320, 180), duration_s=1.0)
    faded = st.fade_clip(title, work / "faded.mp4", fade_in_s=0.3, fade_out_s=0.3)
    for name, path in (("title", title), ("end", end), ("faded", faded)):
        out[f"mp4/{name}"] = digest(path.read_bytes())
    joined = ff.assemble([title, end], work / "joined.mp4")
    for mode in ("none", "soft", "burn"):
        film = st.finish_film(joined, work / "audio_both.wav", work / f"film_{mode}.mp4", subtitles=mode, cues=cues,
                              srt=work / "film.srt", fade_in_s=0.2, fade_out_s=0.3)
        out[f"film/{mode}"] = digest(film.read_bytes())
    silent = st.finish_film(joined, None, work / "film_silent.mp4", audio_fades_only=True, fade_in_s=0.2)
    out["film/silent"] = digest(silent.read_bytes())


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out: dict[str, str] = {}
    calls: list[str] = []
    with tempfile.TemporaryDirectory(prefix="media-digests-") as tmp:
        work = Path(tmp)
        record_ffmpeg(calls, work)
        storyboard(out, work)
        soundtrack(out, work)
    out["ffmpeg_calls"] = digest("\n".join(calls).encode())
    Path(sys.argv[1]).write_text(json.dumps({"digests": out, "ffmpeg": calls}, indent=1, sort_keys=True) + "\n")
    print(f"{len(out)} digests and {len(calls)} ffmpeg command lines written to {sys.argv[1]}")


if __name__ == "__main__":
    main()
