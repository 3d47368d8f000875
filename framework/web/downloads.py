"""Downloads of `reelforge serve`: a session's bundle as a zip and its prompts export,
made by the functions `reelforge export` uses (framework/web/export.py) and streamed.

The bundle is written by :func:`write_bundle` (digests checked, secrets masked, manifest
and timeline) into a private temporary folder outside every session, zipped as it is
sent, and removed when the download ends, however it ends."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from reelforge.store.session import Session
from reelforge.web.export import format_prompts, write_bundle

PROMPT_FORMATS = {"json": "application/json", "csv": "text/csv", "txt": "text/plain"}
CHUNK = 1 << 20


class _Sink:
    """A write-only stream zipfile writes into; the bytes are taken out as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def bundle_folder(session: Session) -> Path:
    """The bundle written into a new private temporary folder (ExportError if it cannot be)."""
    work = Path(tempfile.mkdtemp(prefix="reelforge-bundle-"))
    try:
        write_bundle(session, work / session.id)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return work


def zip_stream(work: Path, top: str) -> Iterator[bytes]:
    """The folder ``work/top`` as a zip, a chunk at a time; ``work`` is removed at the end
    (also when the download is cut off: the generator is closed)."""
    try:
        sink = _Sink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            root = work / top
            for folder, dirs, names in os.walk(root):
                dirs.sort()
                for name in sorted(names):
                    path = Path(folder) / name
                    arc = f"{top}/{path.relative_to(root).as_posix()}"
                    # videos and pictures are compressed already; text is small
                    with open(path, "rb") as fin, zf.open(zipfile.ZipInfo.from_file(path, arc), "w",
                                                           force_zip64=True) as fout:
                        for chunk in iter(lambda: fin.read(CHUNK), b""):
                            fout.write(chunk)
                            if sum(map(len, sink.parts)) >= CHUNK:
                                yield sink.take()
                    data = sink.take()
                    if data:
                        yield data
        data = sink.take()
        if data:
            yield data
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prompts_text(session: Session, fmt: str) -> str:
    return format_prompts(session, fmt)
