"""`reelforge report`: a self-contained index.html in the session folder (story, characters,
every shot with its picture, prompts, state, seed, backend, time, attempts and takes, a
player per clip, the film with its subtitles, and the ledger).

The page is made with Jinja2 with autoescaping on: an idea, a prompt or a backend's error
message is text, never markup. Media are referenced by relative path, so the folder can
be moved or shared as it is. The same templates make the pages of `reelforge serve`.
"""

from __future__ import annotations

import functools
import os
import stat
import urllib.parse
from pathlib import Path
from typing import Any

from reelforge.web.creator import session_data
from reelforge.store.safefs import atomic_write_text, refuse_link
from reelforge.store.meta import now
from reelforge.store.session import Session

TEMPLATES = Path(__file__).parent / "templates"
#: The page's style sheet: inlined in the report, served by the web app.
STATIC = Path(__file__).parent / "static"
REPORT_NAME = "index.html"


@functools.lru_cache(maxsize=1)
def environment():
    """The Jinja2 environment of the report and the web app (autoescaping everything)."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader([str(TEMPLATES), str(STATIC)]), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def relative_url(path: str | None, version: str | None = None) -> str | None:
    """A path stored in the session (already checked to stay inside it), as a relative URL."""
    if not path:
        return None
    url = urllib.parse.quote(path, safe="/")
    return f"{url}?v={version[:12]}" if version else url


#: Subtitles larger than this are linked, not embedded, in the report.
MAX_EMBEDDED_VTT = 1 << 20


def _embedded_vtt(session: Session) -> str | None:
    """film.vtt as a data: URL. A page opened from a file may not load a <track> from
    another file (each file: URL is its own origin), so the report carries the cues itself."""
    import base64

    from reelforge.store.safefs import O_BINARY, O_NOFOLLOW

    try:
        fd = os.open(session.path / "film.vtt", os.O_RDONLY | O_NOFOLLOW | O_BINARY)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        data = fh.read(MAX_EMBEDDED_VTT + 1)
    if len(data) > MAX_EMBEDDED_VTT:
        return None
    from reelforge.redact import redact

    try:  # the lines are the narration: a key an older version saved in one is masked
        data = redact(data.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        return None
    return "data:text/vtt;base64," + base64.b64encode(data).decode("ascii")


def render_report(session: Session) -> str:
    data = session_data(session, lambda path, _digest: relative_url(path))
    if data["film"]["vtt"]:
        data["film"]["vtt"] = _embedded_vtt(session) or data["film"]["vtt"]
    return environment().get_template("report.html").render(s=data, live=False, action=None, written=now())


def write_report(session: Session) -> Path:
    """Write ``index.html`` into the session folder, atomically (a link in its place is
    replaced, never followed). Nothing else in the session is touched."""
    refuse_link(session.path, "session folder")
    target = session.path / REPORT_NAME
    atomic_write_text(target, render_report(session))
    return target


def template(name: str):
    return environment().get_template(name)


def render(name: str, **context: Any) -> str:
    return template(name).render(**context)


__all__ = ["write_report", "render_report", "environment", "relative_url", "REPORT_NAME"]
