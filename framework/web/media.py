"""Media of a session for the web app: only files inside the session folder, opened
without following a link, served with ranges (video seeking) or, for subtitles, read
whole with a size cap."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from reelforge.errors import SessionCorruptError
from reelforge.redact import redact
from reelforge.store.safefs import O_BINARY, O_NOFOLLOW, contained
from reelforge.store.session import Session

#: Where media may come from inside a session: the stage folders (and their takes/) and the film.
MEDIA_FOLDERS = ("images", "videos", "narration", "cast")
MEDIA_FILES = ("film.mp4", "film.srt", "film.vtt")

_PROC_FD = "/proc/self/fd"


def file_response(path: Path, st: os.stat_result) -> Response:
    """Serve the checked file ``path`` (Starlette's FileResponse: ranges, ETag). Where the
    platform has /proc/self/fd, the file is opened here without following a link and must
    be the very file that was checked (device and inode); the response reads it through
    that descriptor, so a link swapped in after the check is never followed."""
    import mimetypes
    import weakref

    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.name.endswith(".vtt"):
        media_type = "text/vtt"
    headers = {"cache-control": "no-cache"}
    if not os.path.isdir(_PROC_FD):  # pragma: no cover - not Linux: the lstat check is all there is
        return FileResponse(str(path), stat_result=st, media_type=media_type, headers=headers)
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_BINARY)
    except OSError:
        raise HTTPException(404) from None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        raise HTTPException(404)
    response = FileResponse(f"{_PROC_FD}/{fd}", stat_result=opened, media_type=media_type, headers=headers)
    weakref.finalize(response, os.close, fd)  # once the response has been sent and dropped
    return response


#: Media that are text (the narration as subtitles): served with secrets masked.
SUBTITLE_SUFFIXES = {".vtt": "text/vtt", ".srt": "application/x-subrip"}
#: Larger subtitle files are not served (a film's cues are a few KB).
MAX_SUBTITLES = 8 << 20


def subtitle_response(session: Session, path: Path) -> Response:
    """A subtitle file, read without following a link, with the keys the environment holds
    for the backends masked (the lines are the narration an LLM wrote)."""
    from reelforge.engine.plugins import learn_secrets

    learn_secrets(session.meta)
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_BINARY)
    except OSError:
        raise HTTPException(404) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise HTTPException(404)
        data = fh.read(MAX_SUBTITLES + 1)
    if len(data) > MAX_SUBTITLES:
        raise HTTPException(404)
    text = redact(data.decode("utf-8", errors="replace"))
    return Response(text, media_type=SUBTITLE_SUFFIXES[path.suffix], headers={"cache-control": "no-cache"})


def media_file(session_path: Path, rel: str) -> tuple[Path, os.stat_result]:
    """The file ``rel`` names inside the session, checked: a stage folder's file (or one of
    its takes) or the film and its subtitles; no hidden or ``..`` part, no link on the
    way or at the end, a regular file. Anything else is a 404."""
    parts = rel.split("/")
    if rel in MEDIA_FILES:
        path = session_path / rel
    elif len(parts) >= 2 and parts[0] in MEDIA_FOLDERS and not any(p.startswith(".") for p in parts):
        try:
            path = contained(session_path, rel, under=MEDIA_FOLDERS)
        except SessionCorruptError:
            raise HTTPException(404) from None
    else:
        raise HTTPException(404)
    try:
        st = os.lstat(path)
    except OSError:
        raise HTTPException(404) from None
    if not stat.S_ISREG(st.st_mode):  # a link (never followed), a folder, a device...
        raise HTTPException(404)
    return path, st


# -- the app ----------------------------------------------------------------------------

