"""`reelforge export`: a session's prompts (JSON, CSV or text), a bundle for an editor (the
film, clips, voices, stills, subtitles, story files, a manifest with every file's digest),
and an OpenTimelineIO timeline of the clips and the narration.

The session is only read: it is loaded read-only, every stored path is checked to stay
inside its folder, files are opened without following links, and what is copied is checked
against the digest the session recorded for it. Nothing is ever written inside a session.
Every text an export writes has the keys the environment holds for the backends masked
(an older reelforge may have saved one), and a CSV cell that a spreadsheet would run as a
formula is prefixed with a quote.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Callable

import attrs

from reelforge.errors import ReelforgeError, SessionCorruptError
from reelforge.media.film import music_file
from reelforge.redact import for_terminal, redact, redact_data
from reelforge.store.safefs import O_BINARY, O_NOFOLLOW, atomic_write_text, contained, fsync_dir
from reelforge.store.meta import DONE, FILM_NAME
from reelforge.store.session import Session

#: The columns of a prompts export, in order.
PROMPT_FIELDS = ("shot", "scene", "description", "image_prompt", "motion_prompt", "negative_prompt",
                 "narration", "duration_s", "clip_s", "seed")
FORMATS = ("json", "csv", "txt")
BUNDLE_FORMAT = "reelforge-bundle"
BUNDLE_VERSION = 1
#: How the bundle names each shot artifact's folder: stage folder in the session -> in the bundle.
BUNDLE_FOLDERS = {"images": "images", "videos": "clips", "narration": "narration"}
_KINDS = {"images": "image", "videos": "clip", "narration": "narration"}


class ExportError(ReelforgeError):
    """An export cannot be made as asked (nothing was written)."""


# -- prompts --------------------------------------------------------------------------

def _plan(session: Session):
    plan = session.read_step_output("shots")
    if plan is None:
        raise ExportError(f"session {session.id} has no shot plan yet (its shots step is "
                          f"{session.meta.steps.get('shots', 'todo')}); run `reelforge resume {session.id}` first")
    return plan


def _publishing(session: Session) -> None:
    """Before anything of ``session`` leaves it: learn the keys to mask (see plugins.learn_secrets)."""
    from reelforge.engine.plugins import learn_secrets

    learn_secrets(session.meta)


#: What a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` safe in a CSV cell: text a spreadsheet would run as a formula
    (``=HYPERLINK(...)``, ``+cmd|...``) gets a leading ``'``, so it is shown, not run."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def clip_length(session: Session, shot_id: int) -> float | None:
    """The real length of the shot's finished clip (seconds, to the hundredth), or None."""
    from reelforge.media.checks import clip_seconds

    try:
        art = session.shot_state(shot_id).video
    except KeyError:
        return None
    seconds = clip_seconds(session.path, art)
    return None if seconds is None else round(seconds, 2)


def prompt_rows(session: Session) -> list[dict[str, Any]]:
    """One row per planned shot: shot, scene, description, the prompts, narration,
    duration_s (planned) and seed, as shots.json holds them (secrets masked), and clip_s:
    the real length of its finished clip (None when it has none yet)."""
    _publishing(session)
    return redact_data([{"shot": s.id, "scene": s.scene_id, "description": s.description,
             "image_prompt": s.image_prompt, "motion_prompt": s.motion_prompt,
             "negative_prompt": s.negative_prompt, "narration": s.narration,
             "duration_s": s.duration_s, "clip_s": clip_length(session, s.id), "seed": s.seed}
            for s in _plan(session).shots])


def format_prompts(session: Session, fmt: str, *, terminal: bool = False) -> str:
    """The prompts export as text. ``terminal``: the text is for a terminal, so control
    and escape characters in it are shown as ``\\xNN`` (a file gets the prompts exactly)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    rows = prompt_rows(session)
    if fmt == "json":
        story = session.read_step_output("story")
        data = {"session": session.id, "idea": redact(session.meta.idea),
                "title": redact(story.title) if story is not None else None, "shots": rows}
        return json.dumps(data, indent=2, ensure_ascii=terminal) + "\n"
    clean = (lambda v: for_terminal(v)) if terminal else (lambda v: v)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=PROMPT_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_cell(clean(v)) if isinstance(v, str) else v for k, v in row.items()})
        return buf.getvalue()
    lines = [clean(f"Session {session.id}: {redact(session.meta.idea)}"), ""]
    for row in rows:
        clip = f"clip {row['clip_s']:g} s" if row["clip_s"] is not None else "no clip yet"
        lines.append(clean(f"Shot {row['shot']} (scene {row['scene']}, {row['duration_s']:g} s planned, {clip}, "
                           f"seed {row['seed']})"))
        for key, label in (("description", "Description"), ("image_prompt", "Image prompt"),
                           ("motion_prompt", "Motion prompt"), ("negative_prompt", "Negative prompt"),
                           ("narration", "Narration")):
            if row[key]:
                text = clean(row[key]).replace("\n", "\n    ")
                lines.append(f"  {label}: {text}")
        lines.append("")
    return "\n".join(lines)


# -- where an export may go ------------------------------------------------------------

def check_outside(session: Session, target: Path, what: str) -> Path:
    """``target`` made absolute; refused if it lies inside the session folder or anywhere
    under the sessions folder (an export never writes into a session)."""
    resolved = Path(os.path.realpath(target))
    for root in (session.path, session.store.root):
        real_root = Path(os.path.realpath(root))
        if resolved == real_root or real_root in resolved.parents:
            raise ExportError(f"{what} {target} is inside {root}; an export never writes into a "
                              f"session: choose a folder outside {session.store.root}")
    return resolved


def write_text_file(session: Session, target: Path, text: str) -> None:
    check_outside(session, target, "the output file")
    atomic_write_text(target, text)


# -- reading the session's files safely -------------------------------------------------

@attrs.frozen
class _Source:
    rel: str
    "The file in the session (as stored)."
    dest: str
    "Its path in the bundle."
    kind: str
    what: str
    shot: int | None = None
    sha256: str | None = None
    "The digest the session recorded for it, if it records one."
    size: int | None = None


def _open_source(session: Session, rel: str, under: tuple[str, ...] | None) -> int:
    path = contained(session.path, rel, under=under, source=session.meta_path)
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_BINARY)
    except FileNotFoundError:
        raise ExportError(f"{rel} of session {session.id} is missing; `reelforge resume {session.id}` "
                          f"makes it again") from None
    except OSError as exc:
        raise ExportError(f"{rel} of session {session.id} cannot be read ({exc.strerror}; a link is "
                          f"never followed)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ExportError(f"{rel} of session {session.id} is not a regular file")
    return fd


#: Bundle files that are text a key could hide in (the story files, the subtitles): copied
#: with secrets masked (no digest is recorded for them, so none is broken).
TEXT_KINDS = frozenset({"story", "scenes", "shots", "subtitles"})


def _copy_text(session: Session, src: _Source, dest: Path, under: tuple[str, ...] | None) -> tuple[str, int]:
    fd = _open_source(session, src.rel, under)
    with os.fdopen(fd, "rb") as fin:
        data = fin.read()
    try:
        data = redact(data.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        raise ExportError(f"{src.rel} of session {session.id} is not UTF-8 text") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "xb") as fout:
        fout.write(data)
        fout.flush()
        os.fsync(fout.fileno())
    return hashlib.sha256(data).hexdigest(), len(data)


def _copy(session: Session, src: _Source, dest: Path, under: tuple[str, ...] | None) -> tuple[str, int]:
    """Copy one file of the session to ``dest``, hashing it; checks the recorded digest."""
    if src.kind in TEXT_KINDS and src.sha256 is None:
        return _copy_text(session, src, dest, under)
    fd = _open_source(session, src.rel, under)
    h = hashlib.sha256()
    size = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(fd, "rb") as fin, open(dest, "xb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    digest = h.hexdigest()
    if src.sha256 is not None and (digest != src.sha256 or (src.size is not None and size != src.size)):
        raise ExportError(f"{src.rel} of session {session.id} does not match the session's record of it "
                          f"(it changed or was damaged after it was made); `reelforge resume {session.id}` "
                          f"makes it again")
    return digest, size


def _describe(kind: str, shot_id: int | None, art, extra: str = "") -> str:
    facts = []
    info = art.info if art is not None else {}
    if isinstance(info.get("duration"), (int, float)):
        facts.append(f"{info['duration']:.2f} s")
    if info.get("width") and info.get("height"):
        facts.append(f"{info['width']}x{info['height']}")
    if isinstance(info.get("fps"), (int, float)) and info.get("fps"):
        facts.append(f"{info['fps']:g} fps")
    if art is not None and art.backend:
        facts.append(f"backend {art.backend}")
    if art is not None and art.seed is not None:
        facts.append(f"seed {art.seed}")
    head = {"image": f"shot {shot_id}'s still image", "clip": f"shot {shot_id}'s clip",
            "narration": f"shot {shot_id}'s narration (voice-over)"}.get(kind, extra)
    return head + (f" ({', '.join(facts)})" if facts else "")


def bundle_sources(session: Session) -> tuple[list[_Source], list[str]]:
    """What a bundle holds (files of the session, in bundle order) and what is missing."""
    m = session.meta
    sources: list[_Source] = []
    missing: list[str] = []
    film_done = m.film.state == DONE and m.steps.get("assemble") == DONE
    if film_done:
        sources.append(_Source(FILM_NAME, FILM_NAME, "film", _describe("film", None, m.film, "the film"),
                               sha256=m.film.sha256, size=m.film.size))
        for name in m.film.info.get("subtitles") or []:
            if name in ("film.srt", "film.vtt"):
                sources.append(_Source(name, name, "subtitles",
                                       f"the narration as subtitles ({name.rsplit('.', 1)[1].upper()})"))
    else:
        missing.append("film.mp4 (the film is not assembled yet)")
    narrated = m.backends.get("narration") is not None and m.backends["narration"].name != "none"
    for st in m.shots:
        for stage, attr in (("images", "image"), ("videos", "video"), ("narration", "narration")):
            art = getattr(st, attr)
            if art.state == DONE and art.path:
                name = art.path.rsplit("/", 1)[-1]
                sources.append(_Source(art.path, f"{BUNDLE_FOLDERS[stage]}/{name}", _KINDS[stage],
                                       _describe(_KINDS[stage], st.id, art), shot=st.id,
                                       sha256=art.sha256, size=art.size))
            elif stage != "narration" or narrated:
                missing.append(f"shot {st.id} {_KINDS[stage]} ({art.state})")
    for name, art in (m.cast or {}).items():  # the cast: each character's portrait
        if art.state == DONE and art.path:
            sources.append(_Source(art.path, f"cast/{art.path.rsplit('/', 1)[-1]}", "portrait",
                                   f"{name}'s portrait (the cast)" + (f", by {art.backend}" if art.backend else ""),
                                   sha256=art.sha256, size=art.size))
    for name, what in (("story.json", "the story: title, logline, synopsis, characters, style"),
                       ("scenes.json", "the scene graph"),
                       ("shots.json", "the shot plan: every shot's prompts, narration, duration and seed")):
        if os.path.lexists(session.path / name):
            sources.append(_Source(name, name, name.split(".")[0], what))
        else:
            missing.append(name)
    music = m.film_settings.get("music")
    if film_done and music is not None and os.path.lexists(music_file(session.path, music, session.meta_path)):
        sources.append(_Source(music, music, "music", "the film's music bed"))
    return sources, missing


def cast_manifest(session: Session, story, copied: dict[str, str]) -> list[dict[str, Any]]:
    """The cast as a bundle lists it: each character of the story, its description, its
    portrait (the path in the bundle, or None) with its digest, and the shots it is in."""
    from reelforge.engine.cast import shots_using

    try:
        plan = session.read_step_output("shots")
    except SessionCorruptError:
        plan = None
    rows = []
    for character in story.characters if story is not None else ():
        art = session.portrait(character.name)
        done = art is not None and art.state == DONE and art.path in copied
        rows.append({"name": character.name, "description": character.description,
                     "portrait": copied[art.path] if done else None, "sha256": art.sha256 if done else None,
                     "by": art.backend if done else None, "shots": shots_using(plan, character.name)})
    return redact_data(rows)


@attrs.frozen
class BundleResult:
    path: Path
    files: int
    bytes: int
    missing: tuple[str, ...]


def write_bundle(session: Session, dest: Path, *, timeline: bool = True) -> BundleResult:
    """Copy the session's deliverables into the new folder ``dest`` (which must not exist or
    be empty, and must lie outside every session), with ``manifest.json`` and, when there
    are clips, ``timeline.otio``. The folder is filled under a temporary name and renamed
    into place at the end, so it appears whole or not at all."""
    dest = Path(dest)
    check_outside(session, dest, "the bundle folder")
    _publishing(session)
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise ExportError(f"{dest} is a symbolic link; give a new or empty folder")
        if not stat.S_ISDIR(st.st_mode):
            raise ExportError(f"{dest} is a file; give a new or empty folder")
        if os.listdir(dest):
            raise ExportError(f"{dest} is not empty; give a new or empty folder (nothing is overwritten)")
    dest = Path(os.path.abspath(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    sources, missing = bundle_sources(session)
    work = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    if os.path.lexists(work):
        shutil.rmtree(work)
    work.mkdir()
    try:
        files = []
        total = 0
        for src in sources:
            under = tuple(src.rel.split("/")[:1]) if "/" in src.rel else None
            digest, size = _copy(session, src, work / src.dest, under)
            total += size
            files.append({"path": src.dest, "kind": src.kind, "what": src.what, "shot": src.shot,
                          "sha256": digest, "size": size, "from": src.rel})
        if timeline and any(f["kind"] == "clip" for f in files):
            copied = {f["from"]: f["path"] for f in files}
            text = timeline_json(session, lambda rel: copied.get(rel))
            (work / "timeline.otio").write_text(text, encoding="utf-8")
            data = (work / "timeline.otio").read_bytes()
            files.append({"path": "timeline.otio", "kind": "timeline",
                          "what": "an OpenTimelineIO timeline: the clips in order with their durations, "
                                  "and the narration track (paths relative to this folder)",
                          "shot": None, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                          "from": None})
            total += len(data)
        story = None
        try:
            story = session.read_step_output("story")
        except SessionCorruptError:
            pass
        manifest = {
            "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "session": session.id,
            "idea": session.meta.idea, "title": story.title if story else None,
            "status": session.meta.status, "exported": _now(),
            "shots": [{"id": s.id, "files": [f["path"] for f in files if f["shot"] == s.id]}
                      for s in session.meta.shots],
            "files": files, "missing": missing,
            "cast": cast_manifest(session, story, {f["from"]: f["path"] for f in files}),
        }
        atomic_write_text(work / "manifest.json",
                          redact(json.dumps(manifest, indent=2, ensure_ascii=False)) + "\n")
        for folder, _dirs, _names in os.walk(work):
            fsync_dir(Path(folder))
        if st is not None:
            os.rmdir(dest)  # empty, as checked: replaced by the finished bundle
        os.replace(work, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BundleResult(dest, len(files) + 1, total, tuple(missing))


def _now() -> str:
    from reelforge.store.meta import now

    return now()


# -- the timeline ----------------------------------------------------------------------

def build_timeline(session: Session, url_for: Callable[[str], str | None]):
    """An ``opentimelineio`` Timeline of the session: a video track of the clips in shot
    order (a clip the film holds on its last frame, because its line is longer, continues
    as a freeze frame) and an audio track with each shot's narration at the shot's start.
    A shot not made yet is a gap of its planned length. ``url_for(path in session)`` gives
    each media file's target URL (None: the file is not available)."""
    import opentimelineio as otio

    from reelforge.media.film import NARRATION_PAD_S

    m = session.meta
    plan = _plan(session)
    story = session.read_step_output("story")
    narrated = m.backends.get("narration") is not None and m.backends["narration"].name != "none"
    fps = next((float(s.video.info["fps"]) for s in m.shots
                if s.video.state == DONE and isinstance(s.video.info.get("fps"), (int, float))
                and s.video.info["fps"] > 0), 25.0)
    rate = fps

    def span(seconds: float, start: float = 0.0):
        return otio.opentime.TimeRange(otio.opentime.RationalTime(round(start * rate), rate),
                                       otio.opentime.RationalTime(max(1, round(seconds * rate)), rate))

    video = otio.schema.Track(name="Clips", kind=otio.schema.TrackKind.Video)
    audio = otio.schema.Track(name="Narration", kind=otio.schema.TrackKind.Audio)
    at = 0.0  # where the shot starts (seconds)
    voice_end = 0.0
    for shot in plan.shots:
        st = session.shot_state(shot.id)
        meta = {"reelforge": {"shot": shot.id, "scene": shot.scene_id, "description": shot.description,
                              "image_prompt": shot.image_prompt, "motion_prompt": shot.motion_prompt,
                              "narration": shot.narration, "seed": shot.seed}}
        clip_url = url_for(st.video.path) if st.video.state == DONE and st.video.path else None
        voice_s = None
        voice_url = None
        if narrated and st.narration.state == DONE and st.narration.path and shot.narration.strip():
            voice_url = url_for(st.narration.path)
            d = st.narration.info.get("duration")
            voice_s = float(d) if isinstance(d, (int, float)) and d > 0 else None
        if clip_url is not None:
            d = st.video.info.get("duration")
            clip_s = float(d) if isinstance(d, (int, float)) and d > 0 else float(shot.duration_s)
            meta["reelforge"].update(backend=st.video.backend, sha256=st.video.sha256)
            ref = otio.schema.ExternalReference(target_url=clip_url, available_range=span(clip_s))
            video.append(otio.schema.Clip(name=f"Shot {shot.id}", media_reference=ref,
                                          source_range=span(clip_s), metadata=meta))
            length = clip_s
            needed = (voice_s + NARRATION_PAD_S) if voice_s else 0.0
            if needed > clip_s + 0.05:  # the film holds the last frame until the line is said
                hold = needed - clip_s
                last = otio.schema.ExternalReference(target_url=clip_url, available_range=span(clip_s))
                frame = otio.opentime.TimeRange(
                    otio.opentime.RationalTime(max(0, round(clip_s * rate) - 1), rate),
                    otio.opentime.RationalTime(max(1, round(hold * rate)), rate))
                video.append(otio.schema.Clip(name=f"Shot {shot.id} (held)", media_reference=last,
                                              source_range=frame, effects=[otio.schema.FreezeFrame()],
                                              metadata={"reelforge": {"shot": shot.id, "held": True}}))
                length = needed
        else:
            length = float(shot.duration_s)
            video.append(otio.schema.Gap(source_range=span(length),
                                         metadata={"reelforge": {"shot": shot.id, "missing": "clip"}}))
        if voice_url is not None and voice_s:
            start = max(at, voice_end)
            if start > voice_end:
                audio.append(otio.schema.Gap(source_range=span(start - voice_end)))
            ref = otio.schema.ExternalReference(target_url=voice_url, available_range=span(voice_s))
            audio.append(otio.schema.Clip(name=f"Shot {shot.id} narration", media_reference=ref,
                                          source_range=span(voice_s),
                                          metadata={"reelforge": {"shot": shot.id, "line": shot.narration}}))
            voice_end = start + round(voice_s * rate) / rate
        at += round(length * rate) / rate
    name = story.title if story is not None else m.idea
    timeline = otio.schema.Timeline(name=name, metadata={"reelforge": {
        "session": m.id, "idea": m.idea, "film_settings": dict(m.film_settings),
        "note": "cuts only: the film's fades, title and end cards and crossfades are not in this timeline"}})
    timeline.tracks.append(video)
    if len(audio):
        rest = video.duration() - audio.duration()
        if rest.value > 0:  # both tracks as long as the film, as editors expect
            audio.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(0, rate), rest)))
        timeline.tracks.append(audio)
    return timeline


def timeline_json(session: Session, url_for: Callable[[str], str | None]) -> str:
    """The timeline as OTIO JSON, secrets masked (it carries the prompts and lines)."""
    import opentimelineio as otio

    _publishing(session)
    # As with the meta: masks hold no JSON syntax, so the text is redacted in one pass.
    return redact(otio.adapters.write_to_string(build_timeline(session, url_for), "otio_json"))


def write_timeline(session: Session, target: Path) -> Path:
    """Write the session's timeline to ``target`` (.otio), with absolute file URLs of the
    session's own files (checked to stay inside it)."""
    check_outside(session, target, "the timeline file")

    def url_for(rel: str | None) -> str | None:
        if not rel:
            return None
        under = tuple(rel.split("/")[:1])
        return Path(os.path.abspath(contained(session.path, rel, under=under, source=session.meta_path))).as_uri()

    atomic_write_text(Path(target), timeline_json(session, url_for))
    return Path(target)
