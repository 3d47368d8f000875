"""A session followed by a reader that looks again and again (a polling page of `reelforge
serve`): loaded read-only once, then brought up to date by what changed since the last look.

Journal events appended since are applied on their own (:meth:`Session.catch_up`, with the
journal's own parsing: a torn last line is not there yet); the session is read again in full
only when its meta was rewritten (a compaction, a session-level change). A step output
(story.json, scenes.json, shots.json) is parsed again only when its file changed, and a
changed shot plan reuses the records of the shots whose entries are as they were. Nothing
here writes or takes the session's lock.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import attrs

from reelforge.errors import SessionCorruptError
from reelforge.records import Shot, ShotPlan, structure
from reelforge.store.meta import STEP_FILES, read_json
from reelforge.store.safefs import file_identity, refuse_link

if TYPE_CHECKING:
    from reelforge.store.session import Session
    from reelforge.store.sessions import SessionStore


@attrs.frozen
class Changes:
    """What a :meth:`SessionView.refresh` found changed since the last one."""

    full: bool
    "The meta was read again in full: its shot records are new objects (compare them by value)."
    shots: frozenset[int] = frozenset()
    "Without ``full``: the shots whose records journal events changed (in place)."


class SessionView:
    """One session, read-only, kept up to date by :meth:`refresh`. Not thread-safe: one
    reader at a time (the caller holds a lock)."""

    def __init__(self, store: SessionStore, session_id: str):
        self.session: Session = store.load(session_id)
        # step -> (the file's identity, its value, the error reading it gave, its entries as read)
        self._outputs: dict[str, tuple[Any, Any, SessionCorruptError | None, Any]] = {}

    @property
    def meta(self):
        return self.session.meta

    def refresh(self) -> Changes:
        """Read what changed in the meta and journal since the last look (see :class:`Changes`);
        the step outputs are looked at when asked for (:meth:`step_output`)."""
        shots = self.session.catch_up()
        return Changes(full=True) if shots is None else Changes(full=False, shots=frozenset(shots))

    def _file_key(self, step: str) -> Any:
        try:
            st = os.lstat(self.session.path / STEP_FILES[step][0])
        except FileNotFoundError:
            return None
        return (st.st_mode, *file_identity(st))

    def step_output(self, step: str) -> Any | None:
        """As :meth:`Session.read_step_output` (the value, None without a file, a
        SessionCorruptError for a bad file), parsed again only when the file changed."""
        key = self._file_key(step)  # before reading: a change from now on is read next time
        hit = self._outputs.get(step)
        if hit is None or hit[0] != key:
            value = error = entries = None
            try:
                if step == "shots" and key is not None:
                    value, entries = self._read_plan(hit[1] if hit else None, hit[3] if hit else None)
                else:
                    value = self.session.read_step_output(step)
            except SessionCorruptError as exc:
                error = exc
            hit = self._outputs[step] = (key, value, error, entries)
        if hit[2] is not None:
            raise hit[2]
        return hit[1]

    def _read_plan(self, before: ShotPlan | None, entries: list[str] | None) -> tuple[ShotPlan, list[str] | None]:
        """shots.json, structuring only the shots whose entries changed since ``before`` (an
        entry is compared by its JSON text, so ``1`` and ``true`` differ as the strict
        reading says). Anything unusual is read the store's own way, for its exact message."""
        name = STEP_FILES["shots"][0]
        path = self.session.path / name
        if not os.path.lexists(path):
            return None, None
        refuse_link(path, name)
        data = read_json(path)
        if not (isinstance(data, dict) and list(data) == ["shots"] and isinstance(data["shots"], list)
                and [f.name for f in attrs.fields(ShotPlan)] == ["shots"]):
            return self.session.read_step_output("shots"), None
        try:
            texts = [json.dumps(entry, sort_keys=True) for entry in data["shots"]]
            old = dict(zip(entries, before.shots)) if before is not None and entries else {}
            shots = []
            for i, (entry, text) in enumerate(zip(data["shots"], texts)):
                shot = old.get(text)
                shots.append(shot if shot is not None else structure(entry, Shot, f"{name}: shots[{i}]"))
            return ShotPlan(shots=tuple(shots)), texts
        except (ValueError, TypeError, RecursionError):
            return self.session.read_step_output("shots"), None
