"""What a run ends with (:class:`RunResult`), whichever engine ran it."""

from __future__ import annotations

from pathlib import Path

import attrs

from reelforge.store.meta import COMPLETE

#: RunResult status when a run stopped at its --budget (the session stays IN_PROGRESS).
BUDGET = "BUDGET"
#: RunResult status of a run handed to an engine's workers and not followed (``detach``).
HANDED_OFF = "HANDED_OFF"


@attrs.frozen
class RunResult:
    session_id: str
    "The session that ran."
    status: str
    "Its status at the end: COMPLETE or FAILED."
    path: Path
    "The session folder."
    failed: tuple[str, ...] = ()
    "One line per failed shot or stage."
    problems: tuple[str, ...] = ()
    "The failures grouped by cause, one line per cause (what `reelforge run` prints)."
    film: Path | None = None
    "film.mp4, when the session is complete."

    @property
    def ok(self) -> bool:
        return self.status == COMPLETE
