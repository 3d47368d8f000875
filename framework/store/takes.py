"""Takes: earlier versions of a shot's image, voice or clip kept when it is made again,
brought back (pinned), pruned. A mixin of :class:`reelforge.store.session.Session`."""

from __future__ import annotations

import os
from pathlib import Path

from reelforge.errors import SessionError
from reelforge.store.meta import DONE, TODO, ArtifactState
from reelforge.store.safefs import contained, ensure_dir, fsync_dir, move_aside, uninterruptible


#: The shot field that says what each stage makes (a take's ``prompt``, shown in lists).
PROMPT_FIELD = {"images": "image_prompt", "narration": "narration", "videos": "motion_prompt"}


class Takes:
    # -- takes: earlier versions of an artifact, kept and selectable
    def _take_path(self, stage: str, shot_id: int, n: int, suffix: str) -> Path:
        return self.path / stage / "takes" / f"shot_{shot_id:03d}.{n}{suffix}"

    @uninterruptible
    def keep_as_take(self, stage: str, shot_id: int, reason: str, *, inputs: dict | None = None,
                     rejected: bool = False) -> dict | None:
        """Move the shot's done artifact to ``<stage>/takes/shot_NNN.<n>.<ext>``, record it as
        take ``n`` with the inputs that made it, and set the artifact to be made again.
        ``inputs``: what made it when the artifact's record does not say (a file an older
        version made, known to match the shot now); otherwise the record's own inputs are
        kept, and none at all rather than a guess. Returns the take (None if the artifact was
        not done). The record is journalled before the move; a crash between the two is
        settled by the next check (see _settle_takes)."""
        with self._mutex:
            art = self.shot_state(shot_id).artifact(stage)
            if art.state != DONE or art.path is None:
                return None
            src = self.path / art.path
            n = max((t["n"] for t in art.takes), default=0) + 1
            dest = self._take_path(stage, shot_id, n, src.suffix)
            while os.path.lexists(dest):  # a file no record names (a crash after a duplicate's record went)
                n += 1
                dest = self._take_path(stage, shot_id, n, src.suffix)
            made_from = dict(art.inputs or inputs or {})
            take = {"n": n, "path": dest.relative_to(self.path).as_posix(), "sha256": art.sha256,
                    "size": art.size, "mtime_ns": art.mtime_ns, "fingerprint": art.fingerprint,
                    "seed": art.seed, "backend": art.backend, "seconds": art.seconds,
                    "created": art.updated, "info": dict(art.info), "rejected": rejected}
            if made_from:
                take["inputs"] = made_from
                take["prompt"] = made_from.get(PROMPT_FIELD[stage])
            else:
                take["prompt"] = None  # not recorded: never the prompt that replaced it
            ensure_dir(self.path, stage, "takes")
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": {
                "state": TODO, "last_error": reason, "sha256": None, "size": None, "mtime_ns": None,
                "pending": None, "pinned": False, "inputs": {}, "takes": [*art.takes, take]}})
            if os.path.lexists(src):
                os.replace(src, dest)
                fsync_dir(dest.parent)
                fsync_dir(src.parent)
            return take

    def find_take(self, stage: str, shot_id: int, n: int) -> tuple[dict, Path]:
        """Take ``n`` of a shot's ``stage`` and its file, checked (a SessionError if there is
        no such take, or its file is missing or damaged)."""
        art = self.shot_state(shot_id).artifact(stage)
        take = next((t for t in art.takes if t["n"] == n), None)
        if take is None:
            have = ", ".join(str(t["n"]) for t in art.takes) or "none"
            raise SessionError(f"shot {shot_id} has no {stage} take {n} (takes: {have})")
        src = contained(self.path, take["path"], under=(stage,), source=self.meta_path)
        if self._check_file_like(take, src) is not None:
            raise SessionError(f"take {n} of shot {shot_id} ({take['path']}) is missing or damaged")
        return take, src

    @uninterruptible
    def use_take(self, stage: str, shot_id: int, n: int, *, pinned: bool = False,
                 inputs: dict | None = None) -> ArtifactState:
        """Make take ``n`` the shot's artifact again, with the inputs it records; the current
        one (if done) becomes a new take (``inputs``: as for :meth:`keep_as_take`).
        ``pinned``: the user chose it, so it is kept even though its inputs differ."""
        with self._mutex:
            take, src = self.find_take(stage, shot_id, n)
            art = self.shot_state(shot_id).artifact(stage)
            if art.state == DONE:
                self.keep_as_take(stage, shot_id, f"replaced by take {n}", inputs=inputs)
                art = self.shot_state(shot_id).artifact(stage)
            dest = ensure_dir(self.path, stage) / f"shot_{shot_id:03d}{src.suffix}"
            if os.path.lexists(dest):
                move_aside(dest)
            fields = {"state": DONE, "path": dest.relative_to(self.path).as_posix(),
                      "sha256": take["sha256"], "size": take["size"], "mtime_ns": take.get("mtime_ns"),
                      "fingerprint": take.get("fingerprint"), "seed": take.get("seed"),
                      "backend": take.get("backend"), "seconds": take.get("seconds"),
                      "info": dict(take.get("info") or {}), "last_error": None, "pinned": pinned,
                      "inputs": dict(take.get("inputs") or {}),
                      "pending": take["path"],
                      "takes": [t for t in art.takes if t["n"] != n]}
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": fields})
            os.replace(src, dest)
            fsync_dir(dest.parent)
            art.pending = None
            return art

    @uninterruptible
    def prune_takes(self, stage: str, shot_id: int) -> list[str]:
        """Delete a shot's takes for ``stage`` (the only place reelforge deletes a finished
        file: `reelforge takes ID N --prune`). The records go first, then the files."""
        with self._mutex:
            art = self.shot_state(shot_id).artifact(stage)
            paths = [t["path"] for t in art.takes]
            if not paths:
                return []
            self._log({"op": "shot", "shot": shot_id, "stage": stage, "set": {"takes": []}})
            for rel in paths:
                path = contained(self.path, rel, under=(stage,), source=self.meta_path)
                try:
                    os.unlink(path)  # a link is removed itself, never followed
                except FileNotFoundError:
                    pass
            return paths

    @uninterruptible
    def repin(self, stage: str, shot_id: int, fingerprint: str) -> None:
        """Record a chosen take as made from the shot's current inputs (``fingerprint``)."""
        with self._mutex:
            self._log({"op": "shot", "shot": shot_id, "stage": stage,
                       "set": {"fingerprint": fingerprint, "pinned": True}})

    def _check_file_like(self, record: dict, path: Path) -> str | None:
        probe = ArtifactState(state=DONE, path="x", sha256=record["sha256"], size=record["size"],
                              mtime_ns=record.get("mtime_ns"))
        return self._check_file(probe, path)

    def _settle_takes(self, stage: str, art: ArtifactState, dest: Path) -> None:
        """Finish moves a crash cut short: a take whose file is missing while the artifact's
        own file still holds exactly that take's bytes gets its file."""
        for take in art.takes:
            path = self.path / take["path"]
            if os.path.lexists(path) or not os.path.lexists(dest):
                continue
            if art.state == DONE and art.sha256 == take["sha256"]:
                continue  # the artifact's own bytes: never taken away from it
            if self._check_file_like(take, dest) is None:
                ensure_dir(self.path, stage, "takes")
                os.replace(dest, path)
                fsync_dir(path.parent)
