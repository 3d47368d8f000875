"""The film: the shots' clips joined (cut or crossfade), optional title and end cards, the
first and last clip faded, the narration placed at each shot's start with an optional
music bed ducked under it, subtitles (.srt and .vtt beside the film; soft as a mov_text
track or burnt in), all verified before film.mp4 is replaced.

The settings are recorded in the session's meta (``film``), so a resume makes the same film;
everything that goes into it is in its fingerprint, so a changed clip, voice, line, setting
or music file rebuilds it and nothing else.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Any

import attrs

from reelforge.errors import ConfigError, SessionCorruptError, StageError
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
         subtitle_margin: float | None = None) -> dict[str, Path]:
    """Make the film at ``out`` (and its subtitle files in ``work``), verified. Returns the
    files made: ``{"film": out, "srt": ..., "vtt": ...}`` (subtitle files only when there
    is narration). ``subtitle_margin``: the fraction of the picture's height at the bottom
    that subtitles keep clear (the image generator's caption band), burnt or in the .vtt;
    None: a small margin for burnt ones, the player's own place for soft ones."""
    from reelforge.media import ffmpeg
    from reelforge.media import soundtrack as st

    s = inputs.settings
    work.mkdir(parents=True, exist_ok=True)
    clips = list(inputs.clips)
    facts: list[dict[str, Any] | None] = list(inputs.facts)  # None: a clip made here, read by assemble
    durations = [f["duration"] for f in inputs.facts]
    for i, voice in enumerate(inputs.voices):
        # A renderer may make a clip shorter than its line (a video model's frame count is
        # fixed): hold its last frame until the line is said.
        needed = voice[1] + NARRATION_PAD_S if voice else 0.0
        if needed > durations[i] + 0.05:
            clips[i] = hold_last_frame(clips[i], work / f"held_{i + 1:03d}.mp4", needed, cancelled=cancelled)
            facts[i] = ffmpeg.clip_facts(clips[i])
            durations[i] = facts[i]["duration"]
    lead = 0
    if s.cards and inputs.story is not None:
        first = facts[0] or ffmpeg.clip_facts(clips[0])
        size = (first["width"] or 1280, first["height"] or 720)
        fps = int(round(first["fps"] or 25))
        title = st.title_card(inputs.story.title, inputs.story.logline, work / "title.mp4", size=size, fps=fps,
                              cancelled=cancelled)
        end = st.end_card(list(credit_lines(s.credits)), work / "end.mp4", size=size, fps=fps, cancelled=cancelled)
        clips, durations, lead = [title, *clips, end], [3.0, *durations, 3.0], 1
        facts = [None, *facts, None]
    # Fade the first and last clips themselves, so a cut film stays a stream copy.
    if s.fade_in_s > 0:
        clips[0], facts[0] = st.fade_clip(clips[0], work / "first.mp4", fade_in_s=s.fade_in_s,
                                          cancelled=cancelled), None
    if s.fade_out_s > 0:  # (with one clip, clips[-1] is the clip just faded in)
        clips[-1], facts[-1] = st.fade_clip(clips[-1], work / "last.mp4", fade_out_s=s.fade_out_s,
                                            cancelled=cancelled), None
    picture = ffmpeg.assemble(clips, work / "picture.mp4", transition=s.transition,
                              crossfade_s=s.crossfade_s, cancelled=cancelled, facts=facts)
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
    music = None
    if inputs.music is not None:
        music = copy_music(inputs.music, work / f"bed{inputs.music.suffix}", inputs.music_sha256 or "")
    audio = st.build_audio(work / "audio.wav", total, voices, music=music, music_under_lu=s.music_under_lu,
                           cancelled=cancelled)
    made: dict[str, Path] = {}
    mode = s.subtitle_mode(bool(lines))
    cues = st.narration_cues(lines) if lines else []
    srt = None
    if cues:
        srt = made["srt"] = st.write_srt(cues, work / "film.srt")
        made["vtt"] = st.write_vtt(cues, work / "film.vtt", clear_bottom=subtitle_margin)
    if mode != "none" and not cues:
        mode = "none"  # nothing is said: no subtitles to show
    st.finish_film(picture, audio, out, subtitles=mode, cues=cues, srt=srt,
                   fade_in_s=s.fade_in_s, fade_out_s=s.fade_out_s, audio_fades_only=True,
                   bottom_margin=0.06 if subtitle_margin is None else subtitle_margin, cancelled=cancelled)
    verify(out, total)
    made["film"] = out
    return made


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
