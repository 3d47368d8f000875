"""The cast step, after the story: one portrait per character of the story, made by the
session's image generator from the character's description in the film's look, each saved
the moment it is done (a resumed run makes only the portraits not yet saved). A portrait
the user brought (``reelforge cast set``) or chose (``reelforge cast use``) is kept as is.

The shots use their cast (:func:`references_for`): an image generator with
``takes_references = True`` gets the portraits of the characters a shot names, and the shot's
fingerprint covers their digests, so a new portrait remakes exactly the shots it is in.

The step runs for an image generator that takes references (portraits no shot would use
cost a generation each for nothing). A session made before this step existed (its meta has no cast) and that has images already
keeps going without one: nothing it made is made again. Recurring places get no portrait."""

from __future__ import annotations

import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

from reelforge.engine.fingerprints import fingerprint
from reelforge.errors import ReelforgeError, StageError, storage_cause
from reelforge.media import checks as media
from reelforge.protocols import Reference, ShotJob, takes_references
from reelforge.records import MAX_SEED, Character, Shot, Story
from reelforge.redact import redact
from reelforge.store.meta import DONE, FAILED, ArtifactState
from reelforge.store.session import Session

if TYPE_CHECKING:
    from reelforge.engine.runner import Runner

#: Who brought a portrait with ``reelforge cast set`` (its record's backend).
USER = "user"
#: The scene id of a portrait's shot (what an image generator sees in ``job.stage == "cast"``).
CAST_SCENE = "cast"


def default_seed(session_id: str, name: str) -> int:
    """A character's first portrait seed: stable for the name (the same story gives the same
    portraits in any session, as its shots' seeds do)."""
    digest = hashlib.sha256(f"portrait\x1f{name}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def portrait_shot(story: Story, character: Character, index: int, seed: int) -> Shot:
    """The shot an image generator is asked to draw for ``character``'s portrait."""
    look = f" {story.style.strip()}" if story.style.strip() else ""
    prompt = (f"Character portrait of {character.name}: {character.description}. Head and shoulders, "
              f"facing the camera, plain background, even light.{look}")
    return Shot(id=index, scene_id=CAST_SCENE, description=f"{character.name}: {character.description}"[:500],
                image_prompt=prompt[:4000], characters=(character.name,), seed=seed % (MAX_SEED + 1))


def portrait_fingerprint(shot: Shot, backend) -> str:
    return fingerprint(stage="cast", prompt=shot.image_prompt, seed=shot.seed, backend=backend.name,
                       options=backend.fingerprint_options)


def character_names(story: Story | None) -> list[str]:
    return [c.name for c in story.characters] if story is not None else []


def find_character(story: Story | None, name: str) -> Character | None:
    for character in story.characters if story is not None else ():
        if character.name == name:
            return character
    return None


def references_for(session: Session, shot: Shot) -> tuple[Reference, ...]:
    """The portraits of the characters ``shot`` names, in its order (each name once; a name
    with no portrait done is left out)."""
    if not session.has_cast:
        return ()
    refs, seen = [], set()
    for name in shot.characters:
        art = session.portrait(name)
        if name in seen or art is None or art.state != DONE or not art.sha256:
            continue
        seen.add(name)
        refs.append(Reference(name=name, path=session.portrait_file(name), sha256=art.sha256))
    return tuple(refs)


def references_for_backend(session: Session, shot: Shot, backend) -> tuple[Reference, ...]:
    """:func:`references_for` for a backend that takes references, else ()."""
    return references_for(session, shot) if takes_references(backend.instance) else ()


def shots_using(plan, name: str) -> list[int]:
    """The ids of the shots that name ``name``."""
    return [s.id for s in plan.shots if name in s.characters] if plan is not None else []


#: The largest portrait file a user may give (`reelforge cast set`, serve's Replace).
MAX_PORTRAIT_BYTES = 50 * 1024 * 1024
_PORTRAIT_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}


def portrait_suffix(source) -> str:
    """The file suffix of a user's portrait (a path or a binary file object), after checking
    it is a PNG, JPEG or WebP image Pillow reads whole, at least 16 px a side; ValueError
    says what is wrong."""
    from PIL import Image

    try:
        with Image.open(source) as im:
            im.load()
            fmt = (im.format or "").upper()
            size = im.size
    except Exception as exc:  # noqa: BLE001 - whatever Pillow cannot read is not a portrait
        raise ValueError(f"not an image Pillow can read ({exc})") from None
    if min(size) < 16:
        raise ValueError(f"{size[0]}x{size[1]}: too small for a portrait")
    if fmt not in _PORTRAIT_SUFFIXES:
        raise ValueError(f"a {fmt or 'unknown'} image; give a PNG, JPEG or WebP file")
    return _PORTRAIT_SUFFIXES[fmt]


def set_portrait(session: Session, name: str, data_file, suffix: str) -> ArtifactState:
    """``name``'s portrait is now the user's picture (copied from ``data_file``, a path or a
    binary file object, into the session's scratch, then committed like a made one, pinned):
    the old one is kept as a take. The caller holds the session's lock."""
    import shutil

    work = session.cast_work_dir(name)
    copy = work / f"user{suffix}"
    if isinstance(data_file, (str, os.PathLike)):
        shutil.copyfile(data_file, copy)
    else:
        with open(copy, "wb") as out:
            shutil.copyfileobj(data_file, out)
    return session.commit_portrait(name, copy, backend=USER, seed=None, seconds=None, fingerprint=None,
                                   info=media.facts("images", copy), pinned=True)


def cast_rows(session: Session, story: Story | None = None, plan=None) -> list[dict[str, Any]]:
    """One row per character of the session's story: name, description, portrait (file,
    state, digest, maker, seed, chosen, takes) and the shots using it; [] before the story.
    A caller that has read the story and the plan already passes them."""
    story = story if story is not None else session.read_step_output("story")
    if story is None:
        return []
    plan = plan if plan is not None else session.read_step_output("shots")
    rows = []
    for character in story.characters:
        art = session.portrait(character.name)
        rows.append({"name": character.name, "description": character.description,
                     "file": art.path if art is not None and art.state == DONE else None,
                     "state": art.state if art is not None else "todo",
                     "sha256": art.sha256 if art is not None else None,
                     "by": art.backend if art is not None else None,
                     "seed": art.seed if art is not None else None,
                     "chosen": bool(art.pinned) if art is not None else False,
                     "takes": [t["n"] for t in art.takes] if art is not None else [],
                     "shots": shots_using(plan, character.name)})
    return rows


def make_cast(runner: Runner, session: Session, story: Story, backends: dict[str, Any]) -> None:
    """Make every character's portrait that is not saved (or was made from other inputs)."""
    image = backends.get("image")
    if image is None or not story.characters or not takes_references(image.instance):
        return  # portraits no shot would use are not made (`reelforge cast set` still gives one)
    if not session.has_cast:
        if any(st.image.state == DONE for st in session.meta.shots):
            return  # made before the cast step: its images stand as they are
        session.start_cast()
    todo = []
    for index, character in enumerate(story.characters, start=1):
        art = session.portrait(character.name)
        seed = art.seed if art is not None and art.seed is not None else default_seed(session.id, character.name)
        shot = portrait_shot(story, character, index, seed)
        fp = portrait_fingerprint(shot, image)
        problem = session.check_portrait(character.name)
        if problem is None and (art.pinned or art.backend == USER or art.fingerprint == fp):
            continue
        if problem is None:  # sound, but made from another description or look: kept as a take
            session.keep_portrait_as_take(character.name, "redo: the description or look changed")
        todo.append((character, shot, fp))
    if not todo:
        return
    # No stage_started/finished hooks: an engine that follows a run from its files (dbos)
    # shows the steps of STEPS, and the local run shows the same.
    runner.preflight.kind("image")
    for character, shot, fp in todo:
        try:
            produced, seconds = _attempt(runner, session, character.name, shot, image)
            if not media.looks_valid("images", produced):
                raise StageError(f"{image.name} produced {produced.name}, which is not a valid image file")
            session.commit_portrait(character.name, produced, backend=image.name, seed=shot.seed,
                                    seconds=seconds, fingerprint=fp, info=media.facts("images", produced))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if storage_cause(exc) is not None:
                raise
            error = redact(str(exc) if isinstance(exc, ReelforgeError) else f"{type(exc).__name__}: {exc}")
            message = f"cast: {character.name}'s portrait: {error}"
            session.mark_portrait_failed(character.name, message)
            session.set_status(FAILED, message)
            runner.hook("stage_failed", session=session, stage="cast", error=exc)
            raise StageError(message) from exc


def _attempt(runner: Runner, session: Session, name: str, shot: Shot, image) -> tuple[Any, float]:
    work_dir = session.cast_work_dir(name)
    art = session.portrait(name)
    checkpoint = dict(art.checkpoint) if art is not None else {}
    t0 = time.monotonic()

    def once():
        n = session.mark_portrait_started(name)
        job = ShotJob(session_id=session.id, stage="cast", shot=shot, attempt=n, work_dir=work_dir,
                      checkpoint=checkpoint, cancelled=runner.cancel, save=lambda data: checkpoint.update(data))
        produced = image.instance.generate(shot, job)
        if runner.cancel.is_set():
            raise KeyboardInterrupt
        if produced is None:
            raise StageError(f"{image.name} returned no file for {name}'s portrait")
        from pathlib import Path

        produced = Path(produced)
        if not produced.is_absolute():
            produced = Path.cwd() / produced
        if not produced.resolve().is_relative_to(work_dir.resolve()):
            raise StageError(f"{image.name} returned {produced}, outside the portrait's scratch folder {work_dir}")
        return work_dir / produced.resolve().relative_to(work_dir.resolve())

    return runner.with_retries(once), time.monotonic() - t0
