"""`reelforge cast`: the session's cast (one portrait per character of the story), shown,
replaced with the user's own picture, made again with a new seed, or brought back from a take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from reelforge.cli.core import _load_config, _output_dir_option, _resolve_output_dir, cli


def _store(output_dir: Path | None, config_path: Path | None):
    from reelforge.store.sessions import SessionStore

    return SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))


def _story_and_plan(session):
    story = session.read_step_output("story")
    if story is None:
        raise click.ClickException(f"session {session.id} has no story yet: run it first "
                                   f"(reelforge resume {session.id})")
    return story, session.read_step_output("shots")


def _character(story, name: str):
    from reelforge.engine.cast import character_names, find_character

    character = find_character(story, name)
    if character is None:
        names = ", ".join(character_names(story)) or "none"
        raise click.UsageError(f"{name!r} is not a character of the story (characters: {names})")
    return character


def cast_rows(session) -> list[dict[str, Any]]:
    """One row per character of the story: name, description, portrait and the shots using it."""
    from reelforge.engine.cast import cast_rows as rows

    _story_and_plan(session)  # no story yet: said, not an empty table
    return rows(session)


def _check_image(path: Path) -> str:
    """The portrait's suffix, or a usage error saying what is wrong with the file."""
    from reelforge.engine.cast import MAX_PORTRAIT_BYTES, portrait_suffix

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint="FILE") from None
    if size > MAX_PORTRAIT_BYTES:
        raise click.BadParameter(f"{path} is larger than {MAX_PORTRAIT_BYTES // 2**20} MB", param_hint="FILE")
    try:
        return portrait_suffix(path)
    except ValueError as exc:
        raise click.BadParameter(f"{path} is {exc}", param_hint="FILE") from None


@cli.group()
def cast() -> None:
    """The cast: one portrait per character, made after the story and handed to every shot
    the character is in (by an image generator that takes references)."""


@cast.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_output_dir_option
def show(session_id: str, as_json: bool, output_dir: Path | None, config_path: Path | None) -> None:
    """Show the characters of SESSION_ID: description, portrait file and the shots using each."""
    import json

    from reelforge.redact import for_terminal
    from reelforge.store import listing

    store = _store(output_dir, config_path)
    session = store.load(listing.resolve_session_id(store, session_id))
    rows = cast_rows(session)
    if as_json:
        click.echo(json.dumps({"session": session.id, "cast": rows}, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"Session {session.id}: the story has no characters.")
        return
    if not session.has_cast:
        click.echo(f"Session {session.id} was made before the cast step: its shots use no portraits "
                   f"until you give one (reelforge cast set).")
    for row in rows:
        shots = ", ".join(str(s) for s in row["shots"]) or "none"
        by = f" by {row['by']}" if row["by"] else ""
        chosen = " (chosen)" if row["chosen"] else ""
        click.echo(f"{for_terminal(row['name'], newlines=False)}: {for_terminal(row['description'], newlines=False)}")
        click.echo(f"  portrait: {row['file'] or '-'} [{row['state']}]{by}{chosen}"
                   + (f"  takes: {', '.join(map(str, row['takes']))}" if row["takes"] else ""))
        click.echo(f"  shots: {shots}")


@cast.command("set")
@click.argument("session_id")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_output_dir_option
def set_portrait(session_id: str, name: str, file: Path, output_dir: Path | None, config_path: Path | None) -> None:
    """Use FILE (PNG, JPEG or WebP) as the portrait of character NAME of SESSION_ID. It is
    copied into the session (the old portrait is kept as a take); `reelforge resume` then
    remakes the shots NAME is in, their clips and the film, and nothing else."""
    from reelforge.engine.cast import set_portrait, shots_using
    from reelforge.store import listing

    suffix = _check_image(file)
    store = _store(output_dir, config_path)
    sid = listing.resolve_session_id(store, session_id)
    with store.open(sid) as session:  # the lock: a running session is refused
        story, plan = _story_and_plan(session)
        _character(story, name)
        set_portrait(session, name, file, suffix)
        shots = shots_using(plan, name)
    click.echo(f"{name}'s portrait in {sid} is now {file.name} (the old one is kept as a take).")
    if shots:
        click.echo(f"Shots using {name}: {', '.join(map(str, shots))}. Remake them with: reelforge resume {sid}")
    else:
        click.echo(f"No shot names {name}.")


@cast.command("redo")
@click.argument("session_id")
@click.argument("name")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None, help="Use this seed for the portrait.")
@_output_dir_option
def redo_portrait(session_id: str, name: str, seed: int | None, output_dir: Path | None,
                  config_path: Path | None) -> None:
    """Make NAME's portrait again with a new seed (or --seed N) on the next run; the current
    one is kept as a take (`reelforge cast use` brings it back)."""
    import random

    from reelforge.store import listing

    store = _store(output_dir, config_path)
    sid = listing.resolve_session_id(store, session_id)
    with store.open(sid) as session:
        story, _plan = _story_and_plan(session)
        _character(story, name)
        new_seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        session.redo_portrait(name, new_seed)
    click.echo(f"{name}'s portrait in {sid} will be made again with seed {new_seed}: reelforge resume {sid}")


@cast.command("use")
@click.argument("session_id")
@click.argument("name")
@click.option("--take", "take_n", type=click.IntRange(min=1), required=True, help="The take to use (see `cast show`).")
@_output_dir_option
def use_portrait(session_id: str, name: str, take_n: int, output_dir: Path | None, config_path: Path | None) -> None:
    """Use take N of NAME's portrait again (the current one becomes a take)."""
    from reelforge.errors import SessionError
    from reelforge.store import listing

    store = _store(output_dir, config_path)
    sid = listing.resolve_session_id(store, session_id)
    with store.open(sid) as session:
        story, _plan = _story_and_plan(session)
        _character(story, name)
        try:
            session.use_portrait_take(name, take_n)
        except SessionError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{name}'s portrait in {sid} is take {take_n} again. Remake its shots with: reelforge resume {sid}")
