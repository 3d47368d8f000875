"""The film: the shots' clips joined (cut or crossfade), optional title and end cards, the
first and last clip faded, the narration placed at each shot's start with an optional
music bed ducked under it, subtitles (.srt and .vtt beside the film; soft as a mov_text
track or burnt in), all verified before film.mp4 is replaced.

The settings are recorded in the session's meta (``film``), so a resume makes the same film;
everything that goes into it is in its fingerprint, so a changed clip, voice, line, setting
or music file rebuilds it and nothing else.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Any

import attrs

from reelforge.errors import ConfigError, SessionCorruptError, StageError
from reelforge.media.film_steps import FilmProgress, Report, encode_audio, mux
from reelforge.records import Story
from reelforge.store.meta import MUSIC_FILE, music_file  # noqa: F401 (film's callers use both)
from reelforge.store.safefs import open_nofollow

TRANSITIONS = ("cut", "crossfade")
SUBTITLES = ("auto", "none", "soft", "burn")
#: A music file bigger than this is refused (it is copied into the session).
MAX_MUSIC_BYTES = 200 * 1024 * 1024
MUSIC_NAME = "music"
#: Seconds of picture after a shot's narration ends (the runner asks renderers for this too).
NARRATION_PAD_S = 0.5


#: The end card's line unless the user sets credits.
DEFAULT_CREDITS = ("Made with reelforge",)
#: At most this many credit lines, each at most this long.
MAX_CREDIT_LINES, MAX_CREDIT_CHARS = 8, 120


def credit_lines(text: str | None) -> tuple[str, ...]:
    """The end card's lines for ``credits``: None gives DEFAULT_CREDITS; otherwise its lines
    (split at newlines or ``|``), blank ones dropped; an empty text gives none."""
    if text is None:
        return DEFAULT_CREDITS
    return tuple(" ".join(line.split()) for line in text.replace("|", "\n").splitlines() if line.strip())


def _check_credits(_instance: Any, _attribute: Any, value: str | None) -> None:
    if value is None:
        return
    lines = credit_lines(value)
    if len(lines) > MAX_CREDIT_LINES or any(len(line) > MAX_CREDIT_CHARS for line in lines):
        raise ValueError(f"credits: at most {MAX_CREDIT_LINES} lines of at most {MAX_CREDIT_CHARS} characters")


@attrs.frozen
class FilmSettings:
    """How the film is put together (``reelforge run --transition ... --subtitles ...``)."""

    transition: str = attrs.field(default="cut", validator=attrs.validators.in_(TRANSITIONS))
    "cut (stream copy) or crossfade (re-encoded)."
    crossfade_s: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(5.0)])
    "Length of each crossfade."
    subtitles: str = attrs.field(default="auto", validator=attrs.validators.in_(SUBTITLES))
    "auto (soft when there is narration), none, soft (a track players can switch on) or burn (drawn in)."
    cards: bool = False
    "A title card (title and logline) before the first shot and an end card after the last."
    fade_in_s: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(10.0)])
    "Fade from black at the start (picture and sound)."
    fade_out_s: float = attrs.field(default=1.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(10.0)])
    "Fade to black at the end."
    music: str | None = None
    "The music bed, as copied into the session (``music.<ext>``), or None."
    music_under_lu: float = attrs.field(default=18.0, validator=[attrs.validators.ge(0.0),
                                                                 attrs.validators.le(60.0)])
    "How far under the voices' loudness the music bed plays (LU), whatever the file's own level."
    credits: str | None = attrs.field(default=None, validator=_check_credits)
    """The end card's lines under "The End" (``--cards``), split at newlines or ``|``; unset:
    "Made with reelforge"; empty: no line."""

    def subtitle_mode(self, narrated: bool) -> str:
        if self.subtitles == "auto":
            return "soft" if narrated else "none"
        return self.subtitles


def settings_from(recorded: dict[str, Any] | None, requested: dict[str, Any]) -> FilmSettings:
    """The film settings of a run: the defaults, then what the session recorded, then what
    this run asks for. A bad value is a ConfigError naming it."""
    from reelforge.options import structure_options

    data = {k: v for k, v in (recorded or {}).items() if k in attrs.fields_dict(FilmSettings)}
    data.update({k: v for k, v in requested.items() if v is not None})
    return structure_options(FilmSettings, data, what="film")


def adopt_music(session_path: Path, source: str | os.PathLike) -> str:
    """Copy a music file into the session (so a resume finds it, and the film's fingerprint
    follows its bytes); returns its name inside the session."""
    src = Path(source).expanduser()
    try:
        st = src.stat()
    except OSError as exc:
        raise ConfigError(f"--music {source}: {exc.strerror or exc}") from None
    if not src.is_file():
        raise ConfigError(f"--music {source}: not a file")
    if st.st_size > MAX_MUSIC_BYTES:
        raise ConfigError(f"--music {source}: {st.st_size / 2**20:.0f} MiB is more than the "
                          f"{MAX_MUSIC_BYTES // 2**20} MiB accepted")
    suffix = "".join(c for c in src.suffix.lower()[1:8] if c.isascii() and c.isalnum()) or "audio"
    name = f"{MUSIC_NAME}.{suffix}"
    from reelforge.store.safefs import atomic_write_bytes

    atomic_write_bytes(session_path / name, src.read_bytes())
    return name


def check_music(path: Path) -> None:
    """The music bed is a regular file, not a link (a link is never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise StageError(f"the film's music {path} is missing; run again with --music FILE") from None
    if stat.S_ISLNK(st.st_mode):
        raise SessionCorruptError(path, "the music file is a symbolic link; reelforge never follows links "
                                        "in a session folder: run again with --music FILE")
    if not stat.S_ISREG(st.st_mode):
        raise SessionCorruptError(path, "the music file is not a regular file; run again with --music FILE")


def copy_music(path: Path, dest: Path, expected_sha256: str) -> Path:
    """Copy the session's music bed to ``dest`` (the film's scratch folder), opened without
    following a link, and check it is the file the film's fingerprint was made from: ffmpeg
    opens only the copy, so a link swapped in after the check is never read."""
    import hashlib

    h = hashlib.sha256()
    fd = open_nofollow(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fin:
        if not stat.S_ISREG(os.fstat(fin.fileno()).st_mode):
            raise SessionCorruptError(path, "the music file is not a regular file; run again with --music FILE")
        with open(dest, "xb") as fout:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                h.update(chunk)
                fout.write(chunk)
    if h.hexdigest() != expected_sha256:
        raise StageError(f"the film's music {path} changed while the film was being made; run again")
    return dest


@attrs.frozen
class FilmInputs:
    """Everything the film is made of, for one session."""

    clips: tuple[Path, ...]
    facts: tuple[dict[str, Any], ...]
    "Each clip's stream facts (recorded when it was committed; read again only if missing)."
    voices: tuple[tuple[Path, float, str] | None, ...]
    "Per shot: (WAV, its length, the line), or None for a silent shot or no narration."
    settings: FilmSettings
    story: Story | None
    music: Path | None
    fingerprint: str
    music_sha256: str | None = None
    "The music bed's digest, as it went into the fingerprint (its copy is checked against it)."


def make(inputs: FilmInputs, out: Path, work: Path, *, cancelled: threading.Event,
         subtitle_margin: float | None = None, progress: Report | None = None) -> dict[str, Path]:
    """Make the film at ``out`` (and its subtitle files in ``work``), verified. Returns the
    files made: ``{"film": out, "srt": ..., "vtt": ...}`` (subtitle files only when there
    is narration). ``subtitle_margin``: the fraction of the picture's height at the bottom
    that subtitles keep clear (the image generator's caption band), burnt or in the .vtt;
    None: a small margin for burnt ones, the player's own place for soft ones.

    The picture (held frames, cards, the first and last clips faded, then joined) and the
    sound (the mix, then its AAC encode) are made side by side; the last step copies both
    into the film (it re-encodes the picture only for burnt subtitles). ``progress`` is
    called with (fraction, what is running) as the steps go."""
    from reelforge.media import ffmpeg
    from reelforge.media import soundtrack as st

    s = inputs.settings
    work.mkdir(parents=True, exist_ok=True)
    clips = list(inputs.clips)
    facts: list[dict[str, Any] | None] = list(inputs.facts)  # None: a clip made here, read by assemble
    durations = [f["duration"] for f in inputs.facts]
    # A renderer may make a clip shorter than its line (a video model's frame count is
    # fixed): hold its last frame until the line is said.
    held = [i for i, voice in enumerate(inputs.voices)
            if voice and voice[1] + NARRATION_PAD_S > durations[i] + 0.05]
    cards = s.cards and inputs.story is not None
    narrated = any(inputs.voices)
    burn = s.subtitle_mode(narrated) == "burn"
    steps = FilmProgress(progress, {
        **{f"hold{i}": 1.0 for i in held}, **({"title": 1.0, "end": 1.0} if cards else {}),
        "fade_in": 1.0 if s.fade_in_s > 0 and s.transition == "cut" else 0.0,
        "fade_out": 1.0 if s.fade_out_s > 0 and s.transition == "cut" else 0.0,
        "join": 3.0 if s.transition == "crossfade" else 0.2, "mix": 0.6, "encode": 1.0,
        "mux": 3.0 if burn else 0.2, "verify": 0.1})
    with cf.ThreadPoolExecutor(3, thread_name_prefix="reelforge-film") as pool:
        def hold(i: int) -> tuple[Path, dict[str, Any]]:
            needed = inputs.voices[i][1] + NARRATION_PAD_S  # type: ignore[index]
            clip = steps.run(f"hold{i}", f"holding shot {i + 1}", lambda: hold_last_frame(
                clips[i], work / f"held_{i + 1:03d}.mp4", needed, cancelled=cancelled))
            return clip, ffmpeg.clip_facts(clip)

        for i, (clip, info) in zip(held, list(pool.map(hold, held))):
            clips[i], facts[i], durations[i] = clip, info, info["duration"]
        lead = 0
        jobs: dict[str, cf.Future] = {}
        if cards:
            first = facts[0] or ffmpeg.clip_facts(clips[0])
            size = (first["width"] or 1280, first["height"] or 720)
            fps = int(round(first["fps"] or 25))
            story = inputs.story
            jobs["title"] = pool.submit(steps.run, "title", "title card", lambda: st.title_card(
                story.title, story.logline, work / "title.mp4", size=size, fps=fps, cancelled=cancelled))
            jobs["end"] = pool.submit(steps.run, "end", "end card", lambda: st.end_card(
                list(credit_lines(s.credits)), work / "end.mp4", size=size, fps=fps, cancelled=cancelled))
            clips, durations, lead = [None, *clips, None], [3.0, *durations, 3.0], 1  # type: ignore[list-item]
            facts = [None, *facts, None]
        fade = st.effective_crossfade(durations, s.crossfade_s) if s.transition == "crossfade" else 0.0
        starts = st.clip_starts(durations, fade)[lead:]
        total = st.film_length(durations, fade)
        voices, lines = [], []
        for voice, start in zip(inputs.voices, starts):
            if voice is None:
                continue
            wav, seconds, text = voice
            at = start + (fade if start > 0 else 0.0)  # speak once the crossfade into the shot is over
            voices.append(st.Voice(wav, at))
            lines.append((at, seconds, text))
        sound = pool.submit(_sound, inputs, work, total, voices, steps, cancelled=cancelled, encode=not burn)
        for key, index in (("title", 0), ("end", -1)):
            if key in jobs:
                clips[index] = jobs[key].result()
                facts[index] = ffmpeg.clip_facts(clips[index])
        # A cut film stays a stream copy: its first and last clips are faded themselves. A film
        # that is re-encoded anyway (a crossfade) gets its fades in that same encode.
        copied = ffmpeg.joins_by_copy(s.transition, facts)  # type: ignore[arg-type]
        fade_in_s, fade_out_s = (0.0, 0.0) if copied else (s.fade_in_s, s.fade_out_s)
        if copied and s.fade_in_s > 0:
            jobs["fade_in"] = pool.submit(steps.run, "fade_in", "fading in", lambda c=clips[0]: st.fade_clip(
                c, work / "first.mp4", fade_in_s=s.fade_in_s, cancelled=cancelled,
                progress=steps.ffmpeg("fade_in", durations[0])))
        last_in = jobs.get("fade_in") if len(clips) == 1 else None  # one clip: fade the one just faded in
        if copied and s.fade_out_s > 0:
            def fade_out() -> Path:
                clip = last_in.result() if last_in is not None else clips[-1]
                return st.fade_clip(clip, work / "last.mp4", fade_out_s=s.fade_out_s, cancelled=cancelled,
                                    progress=steps.ffmpeg("fade_out", durations[-1]))

            jobs["fade_out"] = pool.submit(steps.run, "fade_out", "fading out", fade_out)
        if "fade_in" in jobs:
            clips[0], facts[0] = jobs["fade_in"].result(), None
        if "fade_out" in jobs:
            clips[-1], facts[-1] = jobs["fade_out"].result(), None
        picture = steps.run("join", f"joining {len(clips)} clips", lambda: ffmpeg.assemble(
            clips, work / "picture.mp4", transition=s.transition, crossfade_s=s.crossfade_s,
            cancelled=cancelled, facts=facts, progress=steps.ffmpeg("join", total),
            fade_in_s=fade_in_s, fade_out_s=fade_out_s))
        audio = sound.result()
    made: dict[str, Path] = {}
    mode = s.subtitle_mode(bool(lines))
    cues = st.narration_cues(lines) if lines else []
    srt = None
    if cues:
        srt = made["srt"] = st.write_srt(cues, work / "film.srt")
        made["vtt"] = st.write_vtt(cues, work / "film.vtt", clear_bottom=subtitle_margin)
    if mode != "none" and not cues:
        mode = "none"  # nothing is said: no subtitles to show
    steps.start("mux", "finishing")
    if burn and mode == "burn":
        st.finish_film(picture, audio, out, subtitles=mode, cues=cues, srt=srt,
                       fade_in_s=s.fade_in_s, fade_out_s=s.fade_out_s, audio_fades_only=True,
                       bottom_margin=0.06 if subtitle_margin is None else subtitle_margin, cancelled=cancelled)
    else:
        if burn:  # burn was asked for but nothing is said: the sound is a WAV, encode it now
            audio = encode_audio(audio, work / "audio.m4a", total, fade_in_s=s.fade_in_s, fade_out_s=s.fade_out_s,
                                 cancelled=cancelled)
        # Over a caption band (storyboard frames), the MP4 gets no mov_text track: desktop
        # players draw it at the bottom, over the card's own caption, and two texts would show;
        # the .srt/.vtt beside the film (the .vtt placed above the band) carry the subtitles.
        track = srt if mode == "soft" and subtitle_margin is None else None
        mux(picture, audio, out, ffmpeg.clip_facts(picture)["duration"], srt=track,
            cancelled=cancelled, progress=steps.ffmpeg("mux", total))
    steps.finish("mux")
    steps.run("verify", "checking", lambda: verify(out, total))
    made["film"] = out
    return made


def _sound(inputs: FilmInputs, work: Path, total: float, voices: list, steps: FilmProgress, *,
           cancelled: threading.Event, encode: bool) -> Path:
    """The film's audio track: the mix (voices, the music bed) as a WAV, then, when
    ``encode``, faded and encoded to AAC for the mux to copy."""
    from reelforge.media import soundtrack as st

    s = inputs.settings
    steps.start("mix", "mixing the sound")
    music = None
    if inputs.music is not None:
        music = copy_music(inputs.music, work / f"bed{inputs.music.suffix}", inputs.music_sha256 or "")
    wav = st.build_audio(work / "audio.wav", total, voices, music=music, music_under_lu=s.music_under_lu,
                         cancelled=cancelled)
    steps.finish("mix")
    if not encode:
        return wav
    return steps.run("encode", "encoding the sound", lambda: encode_audio(
        wav, work / "audio.m4a", total, fade_in_s=s.fade_in_s, fade_out_s=s.fade_out_s, cancelled=cancelled,
        progress=steps.ffmpeg("encode", total)))


def hold_last_frame(clip: Path, out: Path, seconds: float, *, cancelled: threading.Event | None = None) -> Path:
    """``clip`` lengthened to ``seconds`` by holding its last frame (H.264, same size and
    frame rate, so it still joins its neighbours by stream copy when they are H.264 too)."""
    from reelforge.media.ffmpeg import clip_facts, run_ffmpeg

    info = clip_facts(clip)
    extra = max(0.0, seconds - (info["duration"] or 0.0))
    fps = info["fps"] or 25
    run_ffmpeg(["-i", str(clip), "-vf", f"tpad=stop_mode=clone:stop_duration={extra:.3f},format=yuv420p",
                "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                "-r", f"{fps:g}", "-movflags", "+faststart", "-f", "mp4", "-y", str(out)],
               what=f"holding the last frame of {clip.name}", cancelled=cancelled)
    return out


def verify(path: Path, expected_s: float) -> None:
    """The finished film: a readable MP4 with a video and an audio stream, about as long
    as its parts add up to. Checked before it may replace film.mp4 and be marked done."""
    from reelforge.media import checks as media
    from reelforge.media.ffmpeg import clip_facts

    if not media.looks_valid("videos", path):
        raise StageError(f"the finished film {path.name} is not a complete MP4 file")
    info = clip_facts(path)
    if not info.get("has_audio"):
        raise StageError(f"the finished film {path.name} has no audio track")
    tolerance = max(0.5, 0.02 * expected_s)
    if abs((info.get("duration") or 0) - expected_s) > tolerance:
        raise StageError(f"the finished film {path.name} is {info.get('duration') or 0:.2f} s long; "
                         f"its parts add up to {expected_s:.2f} s")


def clean_scratch(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)


def new_work_dir(scratch: Path) -> Path:
    """A folder under ``.work/`` no other run uses (a killed run's leftovers are removed:
    its ffmpeg died with it)."""
    for stale in list(scratch.glob("film.*")):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        elif stale.is_file() or stale.is_symlink():
            stale.unlink()
    d = scratch / f"film.{os.getpid()}.{time.monotonic_ns()}"
    d.mkdir()
    return d
