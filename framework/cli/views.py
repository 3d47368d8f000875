"""Text views of sessions: the seed's progress bars and shot breakdown, and the list table."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterable

from reelforge.errors import SessionCorruptError
from reelforge.redact import for_terminal
from reelforge.store.meta import COMPLETE, DONE, FAILED_STATE, IN_PROGRESS
from reelforge.store.session import Session
from reelforge.store.sessions import AbandonedSession

BAR_WIDTH = 20
ICONS = {"done": "✓", "running": "⏳", "todo": "⬜", "failed": "✗"}


def status_label(status: str) -> str:
    return status.replace("_", " ")


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def _row(label: str, done: int, total: int, state: str, counts: bool) -> str:
    pct = int(100 * done / total) if total else 0
    if state == DONE or (counts and total and done == total):
        icon = ICONS["done"]
    elif state == FAILED_STATE:
        icon = ICONS["failed"]
    elif done:
        icon = ICONS["running"]
    else:
        icon = ICONS["todo"]
    tail = f" ({done}/{total})" if counts else ""
    return f"{label:<8} [{bar(done, total)}] {pct:>3}%  {icon}{tail}"


def progress_rows(session: Session) -> list[str]:
    m = session.meta
    rows = []
    for step, label in (("story", "Story"), ("scene_graph", "Scenes"), ("shots", "Shots")):
        state = m.steps.get(step, "todo")
        rows.append(_row(label, int(state == DONE), 1, state, counts=False))
    narrated = m.backends.get("narration") is not None and m.backends["narration"].name != "none"
    for stage, label in (("images", "Images"), ("narration", "Voice"), ("videos", "Videos")):
        if stage == "narration" and not narrated:
            continue
        done, total = m.counts(stage)
        rows.append(_row(label, done, total, m.steps.get(stage, "todo"), counts=True))
    state = m.steps.get("assemble", "todo")
    film = _row("Film", int(state == DONE), 1, state, counts=False)
    if session.film_stale:
        film = f"{film[:-1]}⏳ stale: made before the edits to {_shots(m.edited)}; `reelforge resume {m.id}` remakes it"
    rows.append(film)
    return rows


def _shots(ids: list[int]) -> str:
    return f"shot{'' if len(ids) == 1 else 's'} {', '.join(map(str, ids))}"


def shot_lines(session: Session, width: int = 100) -> list[str]:
    plan = None
    try:
        plan = session.read_step_output("shots")
    except SessionCorruptError:
        pass
    descriptions = {s.id: s.description for s in plan.shots} if plan else {}
    lines = []
    digits = len(str(max((st.id for st in session.meta.shots), default=1)))
    edited = set(session.meta.edited)
    for st in session.meta.shots:
        tag = "[EDIT]" if st.id in edited else f"[{st.indicator}]"
        text = for_terminal(" ".join(descriptions.get(st.id, "").split()), newlines=False)
        head = f"  {tag:<8} Shot {st.id:>{digits}}: "
        lines.append(head + textwrap.shorten(text, max(10, width - len(head)), placeholder="..."))
        for art, what in ((st.image, "image"), (st.narration, "narration"), (st.video, "video")):
            if art.state == FAILED_STATE and art.last_error:
                err = textwrap.shorten(for_terminal(art.last_error, newlines=False), max(20, width - 20),
                                       placeholder="...")
                lines.append(f"           {what} failed after {art.attempts} attempt(s): {err}")
    return lines


def render_session(session: Session, width: int = 100) -> str:
    from reelforge.engine.plugins import learn_secrets

    m = session.meta
    learn_secrets(m)  # a key an older version saved in a prompt is masked by for_terminal
    out = [
        f"Session: {m.id}",
        f"Status: {status_label(m.status)}",
        f"Idea: {for_terminal(m.idea, newlines=False)}",
        f"Created: {m.created}   Updated: {m.updated}",
    ]
    if m.backends:
        out.append("Backends: " + for_terminal(", ".join(f"{k}={b.name}" for k, b in m.backends.items()),
                                              newlines=False))
    if m.continuity:  # only sessions that chose one: older views stay as they were
        out.append(f"Continuity: {for_terminal(str(m.continuity), newlines=False)} "
                   f"(in each scene, a clip starts from the last frame of the one before)")
    if m.last_error and m.status != COMPLETE:
        out.append(f"Last error: {for_terminal(m.last_error)}")
    out += ["", "Progress Bar:", *progress_rows(session)]
    if m.shots:
        out += ["", "Shot Breakdown:", *shot_lines(session, width)]
    if m.status == COMPLETE:
        out += ["", f"Film: {session.film_path}"]
    elif m.edited and m.status == IN_PROGRESS:
        out += ["", (f"[EDIT]: {_shots(m.edited)} changed since the film was made; make what the changes "
                     f"reach, and the film, with `reelforge resume {m.id}`.")]
    elif m.status == "AWAITING_REVIEW":
        out += ["", (f"The images wait for review: look at them with `reelforge report {m.id}` (a page with "
                     f"the pictures), redo any with `reelforge redo {m.id} --shot N`, "
                     f"then make the clips with `reelforge approve {m.id}`.")]
    from reelforge.web.creator import ledger_lines

    ledger = ledger_lines(m)
    if ledger:
        out += ["", *ledger]
    return "\n".join(out)


def sessions_table(found: Iterable[Session | SessionCorruptError | AbandonedSession],
                   width: int | None = None) -> None:
    """Print the sessions as aligned columns (the idea, last, is cut to the width). Plain
    text: a rich table took half a millisecond a row, the slowest part of `sessions list`."""
    import shutil
    import sys

    columns = ("ID", "STATUS", "STORY", "SHOTS", "IMAGES", "VIDEOS", "FILM", "UPDATED", "IDEA")
    right = {"SHOTS", "IMAGES", "VIDEOS"}
    rows: list[tuple[str, ...]] = []
    for s in found:
        if isinstance(s, AbandonedSession):  # a crash inside create(): no work in it
            rows.append((s.id, "EMPTY", "", "", "", "", "", "", s.reason))
            continue
        if isinstance(s, SessionCorruptError):
            folder = Path(s.path).parent.name
            rows.append((folder if folder.startswith("session_") else Path(s.path).name, "UNREADABLE",
                         "", "", "", "", "", "", f"{Path(s.path).name}: {s.reason}"))
            continue
        m = s.meta
        mark = {step: "✓" if state == DONE else ("✗" if state == FAILED_STATE else "-")
                for step, state in m.steps.items()}
        img, total = m.counts("images")
        vid, _ = m.counts("videos")
        film = "stale" if s.film_stale else mark.get("assemble", "-")
        rows.append((m.id, status_label(m.status), mark.get("story", "-"), f"{total}" if total else "-",
                     f"{img}/{total}", f"{vid}/{total}", film,
                     m.updated[:19].replace("T", " "), m.idea))
    rows = [tuple(for_terminal(cell, newlines=False) for cell in row) for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns[:-1])]
    if width is None:
        width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    lines = []
    for row in [columns, *rows]:
        cells = [cell.rjust(w) if columns[i] in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        head = "  ".join(cells) + "  "
        idea = row[-1]
        room = max(10, width - len(head))
        if len(idea) > room:
            idea = idea[: room - 1] + "…"
        lines.append((head + idea).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


def replaced_line(session_id: str, replaced: list) -> str:
    """One line on a session's replaced files (``replaced``: store.replaced.ReplacedFile)."""
    from reelforge.cli.support import human_size, plural

    size = human_size(sum(f.size for f in replaced))
    return (f"Replaced: {plural(len(replaced), 'file')} ({size}) in .replaced/ folders, kept when an edit or "
            f"repair made them again; delete them with `reelforge sessions prune {session_id}`")
