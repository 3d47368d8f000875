"""One backend call as plain data (:class:`BackendCall`), and how any process makes it
(:func:`make_call`): what an engine with workers on other hosts sends them. The calling
process owns the session (it commits); the process that makes the call only reads the
session's files and writes into the shot's scratch folder, on storage both can see."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import attrs
import pluggy

from reelforge.engine.fingerprints import film_overlap
from reelforge.errors import SessionError, StageError
from reelforge.media import checks as media
from reelforge.options import structure_options
from reelforge.protocols import Places, Reference, ShotJob
from reelforge.records import Shot, converter
from reelforge.store.safefs import contained

#: The backend method each per-shot stage calls.
METHOD = {"images": "generate", "narration": "narrate", "videos": "render"}
#: Length of the silence recorded for a shot with no narration line.
SILENT_SHOT_S = 0.1


@attrs.frozen
class BackendCall:
    """Everything a process needs to make one attempt's backend call."""

    session_path: str
    "The session folder, absolute (the same path on every host: shared storage)."
    session_id: str
    stage: str
    "images, narration or videos."
    kind: str
    "The backend kind (image, narration, video)."
    backend: str
    "The backend's name, as registered."
    options: dict[str, Any]
    "Its public options (secrets come from each worker's own environment)."
    shot: dict[str, Any]
    "The shot as the backend sees it (its effective record), unstructured."
    attempt: int
    "The attempt number the store recorded: feeds deterministic remote ids."
    checkpoint: dict[str, Any]
    "What the backend saved for this shot so far."
    image: str | None = None
    "For a clip: the picture it starts from (its image, or a last frame in scratch), relative to the session."
    film_overlap_s: float = 0.0
    "For a clip: how many seconds the film lays it over each neighbour (ShotJob.film_overlap_s)."
    references: tuple[dict[str, str], ...] = ()
    "For an image: its references (ShotJob.references) as ``{name, path, sha256, kind}``, paths relative to the session folder."

    @property
    def key(self) -> str:
        """The unit this call is an attempt at: session, stage and shot."""
        return f"{self.session_id}/{self.stage}/{self.shot_id}"

    @property
    def shot_id(self) -> int:
        return int(self.shot["id"])

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendCall:
        data = dict(data)
        data["references"] = tuple(dict(r) for r in data.get("references") or ())
        return cls(**data)


def call_for(session, stage: str, kind: str, backend, shot: Shot, attempt: int, image: Path | None,
             references: tuple[Reference, ...] = ()) -> BackendCall:
    """The plain-data form of an attempt the runner is about to make."""
    art = session.shot_state(shot.id).artifact(stage)
    root = Path(session.path).resolve()
    refs = tuple({"name": r.name, "path": Path(r.path).resolve().relative_to(root).as_posix(),
                  "sha256": r.sha256, "kind": r.kind} for r in references)
    return BackendCall(
        session_path=str(Path(session.path).resolve()), session_id=session.id, stage=stage, kind=kind,
        backend=backend.name, options=dict(backend.public_options), shot=converter.unstructure(shot),
        attempt=attempt, checkpoint=dict(art.checkpoint),
        film_overlap_s=film_overlap(session) if stage == "videos" else 0.0,
        image=None if image is None else Path(image).resolve().relative_to(root).as_posix(), references=refs)


def build_backend(pm: pluggy.PluginManager, kind: str, name: str, options: dict[str, Any]):
    """One backend, built from its name and public options (a worker's own environment
    supplies secrets, as it does for ``reelforge run``)."""
    from reelforge.engine.plugins import KINDS, active_manager, get_backend_class

    with active_manager(pm):
        reg = get_backend_class(kind, name, pm)
        opt_cls = getattr(reg.cls, "Options", None)
        if opt_cls is None:
            return reg.cls()
        return reg.cls(structure_options(opt_cls, dict(options), what=f"{KINDS[kind][1]} {name!r}"))


def make_call(call: BackendCall, backend_instance, *, cancelled: threading.Event,
              save: Callable[[dict[str, Any]], None],
              progress: Callable[[float, str], None] = lambda f, m: None, places: Places | None = None) -> Path:
    """Make ``call`` with ``backend_instance`` in this process; returns the file produced,
    inside the shot's scratch folder. Writes nothing to the session but scratch files.
    ``places`` are the server slots shared by every worker (see reelforge.protocols.Places)."""
    session = Path(call.session_path)
    if not session.is_dir():
        raise SessionError(f"session folder {session} is not here: every worker must see the sessions "
                           f"folder at the same path (shared storage)")
    shot = converter.structure(call.shot, Shot)
    work_dir = contained(session, f".work/{call.stage}/shot_{shot.id:03d}", under=(".work",))
    work_dir.mkdir(parents=True, exist_ok=True)
    references = tuple(Reference(name=r["name"], path=contained(session, r["path"], under=("cast",)),
                                 sha256=r["sha256"], kind=r.get("kind", "character")) for r in call.references)
    job = ShotJob(session_id=call.session_id, stage=call.stage, shot=shot, attempt=call.attempt,
                  work_dir=work_dir, checkpoint=dict(call.checkpoint), cancelled=cancelled,
                  save=save, progress=progress, places=places, film_overlap_s=call.film_overlap_s,
                  references=references)
    # A clip starts from its shot's image, or (--continuity last-frame) from the last frame
    # of the clip before it, extracted into its scratch folder.
    image = contained(session, call.image, under=("images", ".work")) if call.image else None
    produced = run_backend(call.stage, backend_instance, shot, image, job)
    if produced is None:
        raise StageError(f"{call.backend} returned no file for shot {shot.id}")
    return produced


def run_backend(stage: str, instance, shot: Shot, image: Path | None, job: ShotJob) -> Path:
    """Call the stage's backend method for one shot (a shot with no narration line gets
    a short silence without a backend)."""
    if stage == "narration" and not shot.narration.strip():
        return media.write_silence(job.work_dir / "silence.wav", SILENT_SHOT_S)
    args = (shot, image, job) if stage == "videos" else (shot, job)
    produced = getattr(instance, METHOD[stage])(*args)
    return produced if produced is None else Path(produced)
