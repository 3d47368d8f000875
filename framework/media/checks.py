"""Media helpers the core needs: cheap validity checks of artifacts and setting a replaced
file aside. Joining clips into the film is reelforge.media.ffmpeg.assemble."""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: What a stage's files are called in messages.
KIND_LABEL = {"images": "image", "videos": "video", "narration": "WAV audio"}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_WEBP = (b"RIFF", b"WEBP")
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # WebM / Matroska


def looks_valid(stage: str, path: Path) -> bool:
    """A fast structural check: the image decodes (Pillow verify), or the video has a
    complete container header (ISO-BMFF ftyp+moov, or EBML). Files are written via a
    temp name and renamed, so a truncated file here means damage, not a crash mid-write."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:  # a link is never an artifact
            return False
        if stage == "images":
            from PIL import Image

            with Image.open(path) as im:
                im.verify()
            return True
        if stage == "narration":
            return _wav_seconds(path) > 0
        with open(path, "rb") as fh:
            head = fh.read(12)
        if head[:4] == _EBML_MAGIC:
            return True
        if head[4:8] == b"ftyp":
            return _has_moov(path)
        return False
    except Exception:
        return False


def _has_moov(path: Path) -> bool:
    """Walk the top-level MP4 boxes: a playable file has ftyp, moov, and boxes that add up."""
    size = path.stat().st_size
    seen = set()
    with open(path, "rb") as fh:
        pos = 0
        while pos < size:
            fh.seek(pos)
            header = fh.read(16)
            if len(header) < 8:
                return False
            box_len = int.from_bytes(header[:4], "big")
            kind = header[4:8]
            if box_len == 1:
                box_len = int.from_bytes(header[8:16], "big")
            elif box_len == 0:
                box_len = size - pos
            if box_len < 8 or pos + box_len > size:
                return False
            seen.add(kind)
            pos += box_len
    return b"moov" in seen and b"mdat" in seen


def set_aside(path: Path) -> Path:
    """Move a file that is about to be replaced into ``.replaced/`` next to it: nothing is
    deleted, and it is never mistaken for a finished artifact. A link is moved, never
    followed."""
    from reelforge.store.safefs import move_aside

    return move_aside(path)


def _wav_seconds(path: Path) -> float:
    import wave

    with wave.open(str(path), "rb") as w:
        rate, frames = w.getframerate(), w.getnframes()
    return frames / rate if rate else 0.0


def facts(stage: str, path: Path) -> dict:
    """What is worth remembering about a committed file: a clip's stream facts (so the film
    can be assembled without reading every clip again), a voice's duration (clip timing and
    subtitles follow it), an image's size."""
    try:
        if stage == "videos":
            from reelforge.media.ffmpeg import clip_facts

            return dict(clip_facts(path))
        if stage == "narration":
            return {"duration": round(_wav_seconds(path), 3)}
        if stage == "images":
            from PIL import Image

            with Image.open(path) as im:
                return {"width": im.width, "height": im.height}
    except Exception:  # facts are a convenience: the file itself was checked already
        return {}
    return {}


def write_silence(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A mono 16-bit WAV of silence (the narration of a shot that has no line)."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * max(1, int(seconds * rate)))
    return path


def clip_seconds(session_path: Path, art) -> float | None:
    """The real length of a shot's clip (``art``: its video ArtifactState), in seconds: the
    duration recorded with the clip's facts when it was committed, else (a session from an
    older reelforge) read from the file in-process. None when there is no finished clip or
    its length cannot be read. Shown next to the planned length: a clip lasts at least its
    line, so it is often longer than planned."""
    if art.state != "done" or not art.path:
        return None
    d = (art.info or {}).get("duration")
    if isinstance(d, (int, float)) and not isinstance(d, bool) and d > 0:
        return float(d)
    path = session_path / art.path
    if os.path.islink(path):  # a link is never an artifact
        return None
    from reelforge.media import mp4info

    try:
        d = mp4info.read_facts(path)["duration"]
    except (mp4info.Unsupported, OSError):
        return None
    return float(d) if d > 0 else None
