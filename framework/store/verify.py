"""Verifying a session in full: every recorded file read against its size and sha256,
bad files set aside (as takes are) and their records made todo, the last result kept in the
meta. `resume` checks cheaply (size and mtime, the digest only when they differ); this reads
everything. Session's part is a mixin of :class:`reelforge.store.session.Session`."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import attrs

from reelforge.errors import SessionCorruptError
from reelforge.store.meta import (
    _STAGE_LABELS,
    COMPLETE,
    DONE,
    FILM_NAME,
    IN_PROGRESS,
    STEP_FILES,
    TODO,
    ArtifactState,
    Meta,
    now,
)
from reelforge.store.safefs import move_aside, sha256_file, uninterruptible


@attrs.frozen
class BadFile:
    """A recorded file that is missing or no longer holds the bytes recorded for it."""

    what: str
    "What it is: 'shot 2 clip', 'shot 2 clip take 1', 'film', 'story.json'."
    path: str
    "The file, relative to the session folder."
    problem: str
    "Why it is bad: missing, or damaged and how."
    ref: tuple = ()
    "Which record it belongs to: ('shot', stage, id), ('take', stage, id, n), ('film',) or ('step', step)."
    moved_to: str | None = None
    "With --repair: where the bad file was set aside (relative to the session), if it existed."


@attrs.frozen
class VerifyReport:
    """The outcome of :meth:`SessionStore.verify`."""

    session_id: str
    checked: int
    "Recorded files looked at."
    bytes_read: int
    "Bytes read and hashed."
    bad: tuple[BadFile, ...] = ()
    repaired: bool = False
    "The bad files were set aside and their records marked to be made again."

    @property
    def ok(self) -> bool:
        return not self.bad

    def lines(self) -> list[str]:
        """One line per bad file, then a summary line (what `sessions verify` prints)."""
        out = []
        for b in self.bad:
            moved = f"; moved to {b.moved_to}" if b.moved_to else ""
            out.append(f"BAD {b.path} ({b.what}): {b.problem}{moved}")
        return [*out, self.summary]

    @property
    def summary(self) -> str:
        read = f"{self.bytes_read / 1e6:,.1f} MB read"
        if self.ok:
            return f"verify: all {self.checked} recorded files of {self.session_id} match their sha256 ({read})."
        sid = self.session_id
        text = f"verify: {len(self.bad)} of {self.checked} recorded files of {sid} are missing or damaged ({read})."
        if self.repaired:
            return f"{text} They are set aside and marked todo: `reelforge resume {sid}` makes exactly them again."
        return f"{text} Set them aside and have them made again: reelforge sessions verify {sid} --repair"


def verify_summary(meta: Meta) -> dict[str, Any]:
    """The last verify as a line for `report` and `serve`: ``{state, text}``, state one of
    ok, bad, repaired, never."""
    last = meta.last_verify if isinstance(meta.last_verify, dict) else {}
    cmd = f"reelforge sessions verify {meta.id}"
    if not last:
        return {"state": "never", "text": f"Files not verified yet: `{cmd}` reads each against its sha256."}
    bad = [str(p) for p in last["bad"]] if isinstance(last.get("bad"), list) else []
    when = f"{last.get('at')}: {last.get('checked')} recorded files"
    if not bad:
        return {"state": "ok", "text": f"Verified {when}, all match their sha256."}
    named = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    if last.get("repaired"):
        return {"state": "repaired", "text": f"Verified {when}, {len(bad)} bad ({named}): set aside to be "
                                             f"made again by `reelforge resume {meta.id}`."}
    return {"state": "bad", "text": f"Verified {when}, {len(bad)} bad ({named}): `{cmd} --repair`."}


def _read_check(path: Path, size: int | None, sha256: str | None) -> tuple[str | None, int]:
    """(why the file at ``path`` is not the recorded one or None, bytes read). Reads it in full."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing", 0
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link (never followed)", 0
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file", 0
    if size is not None and st.st_size != size:
        return f"damaged: {st.st_size:,} bytes, recorded {size:,}", 0
    try:
        digest = sha256_file(path)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}", 0
    if digest != sha256:
        return "damaged: its bytes do not match the recorded sha256 (changed in place)", st.st_size
    return None, st.st_size


class Verification:
    # -- verify: every recorded file read in full (resume trusts size + mtime)
    def verify_files(self) -> VerifyReport:
        """Read every file the session records: the step outputs (they have no recorded
        digest: they must parse), each done image, voice and clip and its takes, and the
        film, against the sha256 and size recorded for them."""
        bad: list[BadFile] = []
        checked = read = 0
        for step, (name, _cls) in STEP_FILES.items():
            if self.meta.steps.get(step) != DONE:
                continue
            checked += 1
            try:
                found = self.read_step_output(step)
                problem = "missing" if found is None else None
            except SessionCorruptError as exc:
                problem = exc.reason
            if problem:
                bad.append(BadFile(name, name, problem, ("step", step)))
        for shot in self.meta.shots:
            for stage, label in _STAGE_LABELS.items():
                art = shot.artifact(stage)
                records = [(art, f"shot {shot.id} {label}", ("shot", stage, shot.id))] if art.state == DONE else []
                records += [(t, f"shot {shot.id} {label} take {t['n']}", ("take", stage, shot.id, t["n"]))
                            for t in art.takes]
                for rec, what, ref in records:
                    checked += 1
                    problem, n = self._verify_record(rec)
                    read += n
                    if problem:
                        rel = rec.path if isinstance(rec, ArtifactState) else rec["path"]
                        bad.append(BadFile(what, rel, problem, ref))
        f = self.meta.film
        if f.state == DONE:
            checked += 1
            problem, n = _read_check(self.film_path, f.size, f.sha256)
            read += n
            for name in [] if problem else f.info.get("subtitles", []):
                if name not in ("film.srt", "film.vtt") or not (self.path / name).is_file():
                    problem = f"its subtitle file {name} is missing"
            if problem:
                bad.append(BadFile("film", FILM_NAME, problem, ("film",)))
        return VerifyReport(self.id, checked, read, tuple(bad))

    def _verify_record(self, rec: ArtifactState | dict) -> tuple[str | None, int]:
        if isinstance(rec, dict):
            return _read_check(self.path / rec["path"], rec.get("size"), rec.get("sha256"))
        path = self.path / rec.path
        if rec.pending and not os.path.lexists(path):  # a commit a kill cut short: its bytes are in .work/
            path = self.path / rec.pending
        return _read_check(path, rec.size, rec.sha256)

    @uninterruptible
    def set_aside_bad(self, bad: BadFile) -> BadFile:
        """Move a bad file into ``.replaced/`` beside it (nothing is deleted) and mark its
        record todo, so the next run makes exactly it again; a bad take is only set aside
        and forgotten (a take cannot be made again)."""
        with self._mutex:
            kind, *ref = bad.ref
            path = self.path / bad.path
            moved = None
            if kind == "shot":
                art = self.shot_state(ref[1]).artifact(ref[0])
                if art.pending and not os.path.lexists(path):
                    path = self.path / art.pending
            if os.path.lexists(path):
                moved = move_aside(path).relative_to(self.path).as_posix()
            reason = f"verify: {bad.path} {bad.problem}"
            if kind == "shot":
                self.reset_shot(ref[0], ref[1], reason)
            elif kind == "take":
                art = self.shot_state(ref[1]).artifact(ref[0])
                self._log({"op": "shot", "shot": ref[1], "stage": ref[0],
                           "set": {"takes": [t for t in art.takes if t["n"] != ref[2]]}})
            elif kind == "film":
                self.reset_film(reason)
            else:
                self.meta.steps[ref[0]] = TODO
            if kind != "take" and self.meta.status == COMPLETE:
                self.meta.status, self.meta.last_error = IN_PROGRESS, reason
            self.write_meta()
            return attrs.evolve(bad, moved_to=moved)

    @uninterruptible
    def record_verify(self, report: VerifyReport) -> None:
        """Keep the outcome in the meta (for `report` and `serve`) and fold the journal in."""
        with self._mutex:
            self.meta.last_verify = {"at": now(), "checked": report.checked,
                                     "bad": [b.path for b in report.bad], "repaired": report.repaired}
            self.compact()
