"""The offline film with narration, put together from its pieces (planner, espeak narrator,
storyboard, kenburns, assemble, soundtrack) without the runner, timing each stage: what the
wired pipeline will cost before the runner knows the narration stage. Also measures the
narrators' speed relative to real time.

Run: python bench/narrated_offline.py [--subtitles none|soft|burn] [--transition cut|crossfade]
     [--music FILE] [--cards] [--piper-model PATH.onnx] [--keep DIR] [--sheet PATH.png]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

IDEA = "The rise and fall of an ancient trading city"
PAD_S = 0.6  # silence after the line before the next shot


def job(shot, stage, work: Path):
    from reelforge.protocols import ShotJob

    return ShotJob(session_id="bench", stage=stage, shot=shot, attempt=1, work_dir=work / stage / f"{shot.id:03d}",
                   checkpoint={}, cancelled=threading.Event(), save=lambda d: None)


def speed(narrator, shots, work: Path, label: str) -> None:
    from reelforge.media.soundtrack import wav_duration

    narrator.narrate(shots[0], job(shots[0], f"warm-{label}", work))  # load the voice once
    t0 = time.perf_counter()
    audio = sum(wav_duration(narrator.narrate(s, job(s, f"speed-{label}", work))) for s in shots)
    took = time.perf_counter() - t0
    print(f"{label:>7}: {audio:6.1f} s of speech in {took:6.3f} s = {audio / took:7.1f}x real time "
          f"({len(shots)} lines, {os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subtitles", default="soft", choices=("none", "soft", "burn"))
    parser.add_argument("--transition", default="cut", choices=("cut", "crossfade"))
    parser.add_argument("--music", type=Path)
    parser.add_argument("--cards", action="store_true", help="add a title card and an end card")
    parser.add_argument("--piper-model", type=Path)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet of the film here")
    args = parser.parse_args()

    t_start = time.perf_counter()
    import attrs

    from reelforge.media import soundtrack as st
    from reelforge.media.ffmpeg import assemble
    from reelforge.plugins.image_gen.storyboard import StoryboardGenerator
    from reelforge.plugins.kenburns import KenBurnsOptions, KenBurnsRenderer
    from reelforge.plugins.narration import EspeakNarrator, PiperNarrator, PiperOptions
    from reelforge.plugins.story_llm.offline import OfflinePlanner

    timings: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        value = fn()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t
        return value

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        writer = OfflinePlanner()
        story = timed("plan", lambda: writer.write_story(IDEA))
        scenes = timed("plan", lambda: writer.build_scene_graph(story))
        plan = timed("plan", lambda: writer.plan_shots(story, scenes)).shots

        narrator = EspeakNarrator()
        wavs = timed("narration", lambda: [narrator.narrate(s, job(s, "narration", work)) for s in plan])
        speech = [st.wav_duration(w) for w in wavs]
        # Timing from the voice: a clip lasts at least its line plus a pad.
        fps = 25
        shots = [attrs.evolve(s, duration_s=max(s.duration_s, round((d + PAD_S) * fps) / fps))
                 for s, d in zip(plan, speech)]

        gen = StoryboardGenerator()
        fade = 0.5 if args.transition == "crossfade" else 0.0
        ken = KenBurnsRenderer(KenBurnsOptions(caption_gap_s=fade))

        def one(shot):
            image = gen.generate(shot, job(shot, "images", work))
            return ken.render(shot, image, job(shot, "videos", work))

        clips = timed("images+videos", lambda: list(cf.ThreadPoolExecutor(2).map(one, shots)))
        durations = [s.duration_s for s in shots]
        lead_in = 0
        if args.cards:
            title = timed("cards", lambda: st.title_card(story.title, story.logline, work / "title.mp4"))
            end = timed("cards", lambda: st.end_card(["Made with reelforge"], work / "end.mp4"))
            clips, durations, lead_in = [title, *clips, end], [3.0, *durations, 3.0], 1
        # Fade in and out on the first and last clips only, so the film is still a stream copy.
        clips[0] = timed("fades", lambda: st.fade_clip(clips[0], work / "first.mp4", fade_in_s=0.5))
        clips[-1] = timed("fades", lambda: st.fade_clip(clips[-1], work / "last.mp4", fade_out_s=1.0))
        film = timed("assemble", lambda: assemble(clips, work / "film_video.mp4", transition=args.transition,
                                                 crossfade_s=fade))
        starts = st.clip_starts(durations, fade)[lead_in:]
        # The voice starts just after the crossfade into its shot.
        voices = [st.Voice(w, start + fade) for w, start in zip(wavs, starts)]
        total = st.film_length(durations, fade)
        audio = timed("soundtrack", lambda: st.build_audio(work / "audio.wav", total, voices, music=args.music))
        cues = st.narration_cues([(v.start, d, s.narration) for v, d, s in zip(voices, speech, shots)])
        srt = timed("soundtrack", lambda: st.write_srt(cues, work / "film.srt"))
        timed("soundtrack", lambda: st.write_vtt(cues, work / "film.vtt"))
        from reelforge.plugins.image_gen.storyboard import CAPTION_BAND

        final = timed("finish", lambda: st.finish_film(film, audio, work / "film.mp4", subtitles=args.subtitles,
                                                      bottom_margin=CAPTION_BAND + 0.03,
                                                      cues=cues, srt=srt, fade_in_s=0.5, fade_out_s=1.0,
                                                      audio_fades_only=True))
        wall = time.perf_counter() - t_start
        for name, seconds in timings.items():
            print(f"{name:>14}: {seconds:6.2f} s")
        print(f"{'total':>14}: {wall:6.2f} s wall for {len(plan)} shots, a {total:.1f} s film "
              f"(subtitles {args.subtitles}, {args.transition}, {os.cpu_count()} cores) -> {final}")
        if args.sheet:
            from contact_sheet import contact_sheet

            contact_sheet(final, durations, args.sheet, crossfade_s=fade,
                          labels=(["title"] if args.cards else []) + [f"shot {s.id:03d}" for s in shots]
                          + (["end"] if args.cards else []))
            print(f"contact sheet: {args.sheet}")
        speed(narrator, plan, work, "espeak")
        if args.piper_model:
            speed(PiperNarrator(PiperOptions(model=str(args.piper_model))), plan, work, "piper")


if __name__ == "__main__":
    main()
