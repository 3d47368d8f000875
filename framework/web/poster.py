"""The film player's poster for `reelforge serve`: a frame taken from film.mp4 itself, made
once per film with the ffmpeg of imageio-ffmpeg and kept beside the film as
``.poster.<first 16 hex of the film's sha256>.jpg``.

The file is a cache, not a record: no record of the session names it, so `sessions verify`
never reads it and a resume never sets it aside; a new film has a new digest, so a new name
(the old poster is removed once the new one is in place). It is written whole or not at all
(:func:`atomic_write_bytes`: a kill part-way leaves at most a hidden ``.tmp`` file, removed by
the next poster made for the session), and only after the film on disk was checked to be the
recorded one, before and after the frame was taken. A link is never followed."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import threading
import time
from pathlib import Path

from reelforge.errors import ReelforgeError
from reelforge.store.meta import FILM_NAME
from reelforge.store.safefs import O_BINARY, O_NOFOLLOW, atomic_write_bytes

POSTER_RE = re.compile(r"\.poster\.([0-9a-f]{16})\.jpg")
#: Temporary files of a poster write a kill cut short (atomic_write_bytes names them so).
_TMP_RE = re.compile(r"\.\.poster\.[0-9a-f]{16}\.jpg\..+\.tmp")
#: A temporary poster file older than this is left over from a kill, not being written.
STALE_TMP_S = 600
#: ffmpeg gets this long to take one frame.
FFMPEG_TIMEOUT_S = 120
MAX_POSTER_BYTES = 16 << 20

_lock = threading.Lock()


class PosterError(ReelforgeError):
    """No poster could be taken from the film (none on disk, not the recorded one, or ffmpeg failed)."""


def poster_name(film_sha256: str) -> str:
    return f".poster.{film_sha256[:16]}.jpg"


def frame_time(duration: float | None) -> float:
    """Where the poster is taken: a tenth into the film (at least 1 s, at most half way), past
    the fade in from black at its start."""
    if not duration or duration <= 0:
        return 0.0
    return round(min(max(1.0, duration / 10), duration / 2), 3)


def film_poster(session_path: Path, film_sha256: str) -> Path:
    """The poster of the film whose sha256 is ``film_sha256`` (made now if there is none yet);
    PosterError if the film on disk is not that film or no frame can be taken from it."""
    if not re.fullmatch(r"[0-9a-f]{64}", film_sha256 or ""):
        raise PosterError("the film has no recorded sha256")
    path = session_path / poster_name(film_sha256)
    if _is_file(path):
        return path
    with _lock:  # one ffmpeg per poster in this process
        if _is_file(path):
            return path
        film = session_path / FILM_NAME
        before = _film_stat(film)
        if _sha256(film) != film_sha256:
            raise PosterError("film.mp4 is not the recorded film (made again meanwhile, or damaged)")
        data = _take_frame(film)
        if _film_stat(film) != before:
            raise PosterError("film.mp4 changed while its poster was taken")
        atomic_write_bytes(path, data)
        _tidy(session_path, keep=path.name)
    return path


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _film_stat(film: Path) -> tuple[int, int, int]:
    try:
        st = os.lstat(film)
    except OSError as exc:
        raise PosterError(f"no film on disk: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise PosterError("film.mp4 is not a regular file (a link is never followed)")
    return st.st_ino, st.st_size, st.st_mtime_ns


def _sha256(film: Path) -> str:
    digest = hashlib.sha256()
    try:
        fd = os.open(film, os.O_RDONLY | O_NOFOLLOW | O_BINARY)
    except OSError as exc:
        raise PosterError(f"cannot read film.mp4: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _duration(film: Path) -> float | None:
    from reelforge.media.mp4info import Unsupported, read_facts

    try:
        return float(read_facts(film)["duration"])
    except (Unsupported, OSError, KeyError, TypeError, ValueError):
        return None


def _take_frame(film: Path) -> bytes:
    """One frame of the film as JPEG bytes, at its own size, read from ffmpeg's output pipe."""
    from reelforge.media.ffmpeg import ffmpeg_exe

    try:
        exe = ffmpeg_exe()
    except ReelforgeError as exc:
        raise PosterError(str(exc)) from None
    cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-ss", f"{frame_time(_duration(film))}",
           "-i", str(film), "-frames:v", "1", "-an", "-sn", "-c:v", "mjpeg", "-q:v", "3", "-f", "image2pipe",
           "pipe:1"]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PosterError(f"ffmpeg could not take a frame: {exc}") from None
    data = done.stdout
    if done.returncode or not data.startswith(b"\xff\xd8") or len(data) > MAX_POSTER_BYTES:
        tail = done.stderr.decode("utf-8", errors="replace").strip()[-300:]
        raise PosterError(f"ffmpeg could not take a frame (exit {done.returncode}): {tail or 'no image'}")
    return data


def _tidy(session_path: Path, keep: str) -> None:
    """Remove the posters of earlier films and poster writes a kill left behind (regular
    files only; a link is removed as itself, never followed)."""
    try:
        entries = list(os.scandir(session_path))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        name = entry.name
        old_poster = POSTER_RE.fullmatch(name) and name != keep
        try:
            stale_tmp = bool(_TMP_RE.fullmatch(name)) and now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_S
            if old_poster or stale_tmp:
                os.unlink(entry.path)
        except OSError:  # removed meanwhile, or not ours to remove: untidy, not harmful
            continue


__all__ = ["PosterError", "film_poster", "frame_time", "poster_name"]
