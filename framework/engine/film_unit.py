"""The film as a unit of work: its settings (recorded, then what this run asks), what it
is made of (the shots' clips and voices, with a fingerprint over all of it), and its
assembly in a scratch folder of its own, committed through the store only once verified."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import attrs

from reelforge.engine.fingerprints import fingerprint
from reelforge.media import checks as media
from reelforge.media import film
from reelforge.media.ffmpeg import FACT_KEYS, clip_facts
from reelforge.records import ShotPlan, Story
from reelforge.store.meta import DONE, FAILED
from reelforge.store.safefs import fsync_dir, fsync_file, sha256_file
from reelforge.store.session import Session

if TYPE_CHECKING:
    from reelforge.engine.runner import Runner


def settings(runner: Runner, session: Session) -> film.FilmSettings:
    """This run's film settings (recorded ones, then what this run asks), recorded."""
    requested = dict(runner.film_requested)
    if requested.get("music"):
        requested["music"] = film.adopt_music(session.path, requested["music"])
    chosen = film.settings_from(session.meta.film_settings, requested)
    session.set_film_settings(attrs.asdict(chosen))
    return chosen


def gather(session: Session, plan: ShotPlan, chosen: film.FilmSettings, story: Story | None,
           narrated: bool) -> film.FilmInputs:
    """Everything the film is made of, for one session, and its fingerprint."""
    clips, facts, voices = [], [], []
    parts: list[Any] = []
    for shot in plan.shots:
        st = session.shot_state(shot.id)
        clip = session.path / st.video.path
        clips.append(clip)
        info = st.video.info
        recorded = FACT_KEYS <= set(info) and isinstance(info["duration"], (int, float)) and info["duration"] > 0
        facts.append(dict(info) if recorded else clip_facts(clip))
        voice = None
        if narrated and st.narration.path and shot.narration.strip():
            seconds = st.narration.info.get("duration")
            wav = session.path / st.narration.path
            if not isinstance(seconds, (int, float)):
                from reelforge.media.soundtrack import wav_duration

                seconds = wav_duration(wav)
            voice = (wav, float(seconds), shot.narration)
        voices.append(voice)
        parts.append([st.video.sha256, st.narration.sha256 if voice else None,
                      " ".join(shot.narration.split()) if voice else None])
    music = film.music_file(session.path, chosen.music, session.meta_path) if chosen.music else None
    if music is not None:
        film.check_music(music)
    music_sha = sha256_file(music) if music else None  # opened without following a link
    cards = [story.title, story.logline] if chosen.cards and story is not None else None
    fp = fingerprint(stage="film", shots=parts, settings=attrs.asdict(chosen), cards=cards,
                     music=music_sha, version=2)
    return film.FilmInputs(tuple(clips), tuple(facts), tuple(voices), chosen, story, music, fp, music_sha)


def assemble(runner: Runner, session: Session, plan: ShotPlan, story: Story, chosen: film.FilmSettings,
             backends: dict[str, Any]) -> None:
    """Make the film unless the one on disk was made from exactly these inputs."""
    inputs = gather(session, plan, chosen, story, narrated="narration" in backends)
    problem = session.check_film(inputs.fingerprint)
    if problem is None:
        session.film_is_current()  # made from exactly these inputs: nothing is pending
        return
    runner.hook("stage_started", session=session, stage="assemble")
    t0 = time.monotonic()
    work = film.new_work_dir(session.scratch_dir())  # a folder no other run uses
    margin = getattr(backends["image"].instance, "subtitle_margin", None)
    try:
        made = film.make(inputs, work / "film.mp4", work, cancelled=runner.cancel,
                         subtitle_margin=None if margin is None else float(margin),
                         progress=lambda fraction, message: runner.hook(
                             "stage_progress", session=session, stage="assemble", fraction=fraction,
                             message=message))
        for path in made.values():
            fsync_file(path)
        if session.meta.film.state == DONE:
            session.reset_film(f"reassemble: {problem}")
        placed = []
        for key, path in made.items():
            dest = session.film_path if key == "film" else session.path / f"film.{key}"
            if os.path.lexists(dest):
                media.set_aside(dest)  # the old one, or one no record vouches for
            os.replace(path, dest)
            placed.append(dest.name)
        fsync_dir(session.path)
    except Exception as exc:
        session.mark_step("assemble", "failed", error=f"assemble: {exc}")
        session.set_status(FAILED, f"assemble: {exc}")
        runner.hook("stage_failed", session=session, stage="assemble", error=exc)
        raise
    finally:
        film.clean_scratch(work)
    subtitles = [n for n in placed if n != session.film_path.name]
    session.mark_film_done(session.film_path, time.monotonic() - t0, inputs.fingerprint,
                           info={"subtitles": subtitles,
                                 "subtitle_mode": chosen.subtitle_mode(any(v is not None for v in inputs.voices))})
    session.clear_scratch()
    runner.hook("stage_finished", session=session, stage="assemble")
