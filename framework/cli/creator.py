"""The creator's loop on the command line: `redo`, `shots edit`, `takes`, `use`, `approve`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # imported where used: `reelforge --help` stays light
    pass

from reelforge.cli.core import (
    _STAGE_CHOICE,
    _execute,
    _load_config,
    _make_runner,
    _output_dir_option,
    _resolve_output_dir,
    _RunCommand,
    cli,
)


def _session_runner(session_id: str, output_dir: Path | None, config_path: Path | None, kwargs: dict):
    from reelforge.store import listing
    from reelforge.store.sessions import SessionStore

    config = _load_config(config_path)
    output_dir = _resolve_output_dir(output_dir, config)
    runner = _make_runner(output_dir, config, kwargs)
    return runner, listing.resolve_session_id(SessionStore(output_dir), session_id)


@cli.command(cls=_RunCommand)
@click.argument("session_id")
@click.option("--shot", "shot_id", type=int, required=True, help="The shot to make again.")
@click.option("--stage", type=_STAGE_CHOICE, default="image", show_default=True,
              help="What to make again; what depends on it (its clip, the film) follows only if it changes.")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=None, help="Use this seed for the shot.")
@click.option("--new-seed", is_flag=True, help="Give the shot a new random seed (what a redo does without --seed).")
@_output_dir_option
def redo(session_id: str, shot_id: int, stage: str, seed: int | None, new_seed: bool,
         output_dir: Path | None, config_path: Path | None, **kwargs: Any) -> None:
    """Make one shot's image (or voice, or clip) of SESSION_ID again, keep the old one as a
    take, and bring the session up to date (its clip and the film are remade if they change).

    A redo asks for something new: the shot gets a new seed (--seed N, else a random one,
    printed) and a redo of its clip keeps its image. A backend that makes the same file
    whatever the seed is refused with what to change instead (`reelforge shots edit`);
    a voice is made again as it is. A file that comes out identical to a take is kept once.

    \b
    Examples:
      reelforge redo latest --shot 3
      reelforge redo 20261201_1530 --shot 3 --seed 42
      reelforge redo latest --shot 5 --stage video
    """
    if seed is not None and new_seed:
        raise click.UsageError("give --seed N or --new-seed, not both")
    runner, sid = _session_runner(session_id, output_dir, config_path, kwargs)
    runner.announce = click.echo  # the new seed, or a file made again that is the same as a take
    _say_followers(runner, sid, shot_id, stage)
    _execute(runner, lambda: runner.redo(sid, shot_id, stage, seed=seed, new_seed=new_seed))


def _say_followers(runner, sid: str, shot_id: int, stage: str) -> None:
    """Before a redo starts: which other clips it remakes (clips that follow from its last
    frame under --continuity last-frame), as the redo will then do."""
    from reelforge.engine import continuity
    from reelforge.engine.edits import stage_name

    session = runner.store.load(sid)
    plan = session.read_step_output("shots")
    if plan is not None and any(s.id == shot_id for s in plan.shots):
        said = continuity.redo_plan(session, plan, shot_id, stage_name(stage), runner.continuity).message
        if said:
            click.echo(said)


@cli.group()
def shots() -> None:
    """Look at and edit the shots of a session."""


@shots.command("edit")
@click.argument("session_id")
@click.argument("shot_id", type=int)
@click.option("--image-prompt", default=None,
              help="What is in the shot's still: subject, action, framing (the film's look is added by the backend).")
@click.option("--look", default=None,
              help="This shot's own look (palette, lens, light) instead of the film's; \"\" for the film's again.")
@click.option("--motion-prompt", default=None, help="The camera and motion note for its clip.")
@click.option("--negative-prompt", default=None, help="What its image and clip should avoid.")
@click.option("--narration", default=None, help="The line spoken over the shot.")
@click.option("--description", default=None, help="The one line shown in `sessions view`.")
@click.option("--duration", "duration_s", type=float, default=None, help="Seconds (the clip lasts at least its line).")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=None, help="The shot's seed.")
@click.option("--editor", "use_editor", is_flag=True, help="Edit the shot's JSON in $EDITOR instead.")
@_output_dir_option
def shots_edit(session_id: str, shot_id: int, use_editor: bool, output_dir: Path | None,
               config_path: Path | None, **changes: Any) -> None:
    """Change shot SHOT_ID of SESSION_ID in its shots.json. Nothing runs: `reelforge resume ID`
    then remakes only what the change reaches (a new image prompt or look: that image, its clip
    and the film; a new line: its voice, clip timing and the film). The film's look is
    `reelforge shots style ID`."""
    import json as _json

    from reelforge.engine.edits import EDITABLE, edit_shot, plan_shot, saved_plan
    from reelforge.records import unstructure
    from reelforge.store import listing
    from reelforge.store.sessions import SessionStore

    config = _load_config(config_path)
    store = SessionStore(_resolve_output_dir(output_dir, config))
    sid = listing.resolve_session_id(store, session_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    with store.open(sid) as session:  # the lock: a running session is refused
        plan = saved_plan(session)
        current = unstructure(plan_shot(plan, shot_id))
        if use_editor:
            if changes:
                raise click.UsageError("give field options or --editor, not both")
            editable = {k: v for k, v in current.items() if k in EDITABLE}
            text = click.edit(_json.dumps(editable, indent=2, ensure_ascii=False) + "\n", extension=".json")
            if text is None:
                click.echo("No change.")
                return
            try:
                edited = _json.loads(text)
            except ValueError as exc:
                raise click.ClickException(f"the edited shot is not valid JSON: {exc}") from None
            if not isinstance(edited, dict):
                raise click.ClickException("the edited shot must be a JSON object")
            changes = {k: v for k, v in edited.items() if current.get(k) != v}
        if not changes:
            click.echo("No change.")
            return
        edit_shot(session, plan, shot_id, changes)
    click.echo(f"Shot {shot_id} of {sid}: changed {', '.join(sorted(changes))}.")
    click.echo(f"Make what it changes with: reelforge resume {sid}")


@cli.command("takes")
@click.argument("session_id")
@click.argument("shot_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--prune", is_flag=True, help="Delete the shot's takes (asks first). The only way reelforge deletes finished work.")
@click.option("-y", "--yes", is_flag=True, help="With --prune: do not ask.")
@_output_dir_option
def takes_cmd(session_id: str, shot_id: int, as_json: bool, prune: bool, yes: bool, output_dir: Path | None,
              config_path: Path | None) -> None:
    """List the takes (earlier versions) of shot SHOT_ID's image, voice and clip."""
    import json as _json

    from reelforge.store import listing
    from reelforge.store.meta import SHOT_STAGES
    from reelforge.store.sessions import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    sid = listing.resolve_session_id(store, session_id)
    if prune:
        with store.open(sid) as opened:  # the lock: a running session is refused
            try:
                count = sum(len(opened.shot_state(shot_id).artifact(st).takes) for st in SHOT_STAGES)
            except KeyError:
                raise click.UsageError(f"no shot {shot_id} in {sid}") from None
            if not count:
                click.echo(f"Shot {shot_id} of {sid} has no takes.")
                return
            if not yes and not click.confirm(f"Delete the {count} take(s) of shot {shot_id}?", default=False):
                click.echo("Nothing deleted.")
                return
            removed = [p for st in SHOT_STAGES for p in opened.prune_takes(st, shot_id)]
        click.echo(f"Deleted {len(removed)} take(s) of shot {shot_id}.")
        return
    session = store.load(sid)
    try:
        state = session.shot_state(shot_id)
    except KeyError:
        raise click.UsageError(f"no shot {shot_id} in {session.id}") from None
    rows = {stage: {"current": {"path": art.path, "state": art.state, "seed": art.seed,
                                "backend": art.backend, "pinned": art.pinned, "inputs": art.inputs or None},
                    "takes": art.takes}
            for stage, art in (("image", state.image), ("narration", state.narration), ("video", state.video))}
    if as_json:
        click.echo(_json.dumps(rows, indent=2))
        return
    for stage, row in rows.items():
        cur = row["current"]
        pin = " (chosen)" if cur["pinned"] else ""
        click.echo(f"{stage}: now {cur['path'] or '-'} [{cur['state']}] seed {cur['seed']}{pin}"
                   f"  {_made_from(stage, cur.get('inputs'), cur['state'] == 'done')}")
        for t in row["takes"]:
            note = " rejected" if t.get("rejected") else ""
            click.echo(f"  take {t['n']}: {t['path']}  seed {t.get('seed')}  {t.get('backend') or '-'}"
                       f"{note}  {_made_from(stage, t.get('inputs'), True)}")
        if not row["takes"]:
            click.echo("  (no takes)")
    click.echo(f"Choose one with: reelforge use {session.id} {shot_id} --take N [--stage image|narration|video]")
    _show_replaced(session, shot_id)


def _show_replaced(session, shot_id: int) -> None:
    """`takes`: the shot's files in .replaced/ (not takes: nothing brings them back) and the
    session's total, with how to delete them."""
    from reelforge.cli.support import human_size
    from reelforge.cli.views import replaced_line
    from reelforge.store.replaced import replaced_files

    found = replaced_files(session)
    mine = [f for f in found if Path(f.path).name.startswith(f"shot_{shot_id:03d}.")]
    for f in mine:
        click.echo(f"replaced (not a take): {f.path} ({human_size(f.size)})")
    if found:
        click.echo(replaced_line(session.id, found))


def _made_from(stage: str, inputs: dict | None, made: bool) -> str:
    """What a take (or the current file) was made from, on one line: its prompt, else
    "inputs not recorded" (a file an older version made), never the shot's prompt now."""
    from reelforge.redact import for_terminal
    from reelforge.store.takes import PROMPT_FIELD

    if not made:
        return ""
    if not inputs:
        return "(inputs not recorded)"
    field = PROMPT_FIELD[{"image": "images", "video": "videos"}.get(stage, stage)]
    text = " ".join(str(inputs.get(field) or "").split())
    return for_terminal(f'"{text[:70]}"', newlines=False)


@cli.command("use", cls=_RunCommand)
@click.argument("session_id")
@click.argument("shot_id", type=int)
@click.option("--take", "take_n", type=click.IntRange(min=1), required=True, help="The take to use (see `reelforge takes`).")
@click.option("--stage", type=_STAGE_CHOICE, default="image", show_default=True, help="Which of the shot's takes.")
@_output_dir_option
def use_cmd(session_id: str, shot_id: int, take_n: int, stage: str, output_dir: Path | None,
            config_path: Path | None, **kwargs: Any) -> None:
    """Use take N of a shot's image (or voice, or clip) again, then bring the session up to
    date (the clip follows a chosen image; the film is rebuilt). Nothing is deleted."""
    runner, sid = _session_runner(session_id, output_dir, config_path, kwargs)
    _check_take(runner.store, sid, shot_id, stage, take_n)
    runner.announce = click.echo  # "take N brought back", and what of its inputs went back
    _execute(runner, lambda: runner.use_take(sid, shot_id, stage, take_n))


def _check_take(store, sid: str, shot_id: int, stage: str, take_n: int) -> None:
    """A shot or take that does not exist is a usage error (exit 2), said before any run. Read
    under the session's lock: a running session is refused as such, not for a take it may add."""
    from reelforge.store.meta import SHOT_STAGES
    from reelforge.store.session import Session

    session = Session(store, sid)
    session.lock()
    try:
        session.load(repair=False)
    finally:
        session.close()
    try:
        state = session.shot_state(shot_id)
    except KeyError:
        have = ", ".join(str(s.id) for s in session.meta.shots) or "none yet"
        raise click.UsageError(f"no shot {shot_id} in {sid} (shots: {have})") from None
    folder = next(f for f, name in SHOT_STAGES.items() if name == stage)
    takes = state.artifact(folder).takes
    if not any(t["n"] == take_n for t in takes):
        have = ", ".join(str(t["n"]) for t in takes) or "none"
        raise click.UsageError(f"shot {shot_id} has no {stage} take {take_n} (takes: {have}; "
                               f"see `reelforge takes {sid} {shot_id}`)")


@cli.command(cls=_RunCommand)
@click.argument("session_id")
@_output_dir_option
def approve(session_id: str, output_dir: Path | None, config_path: Path | None, **kwargs: Any) -> None:
    """Approve the images of a session started with `--review images` and make its clips and film."""
    runner, sid = _session_runner(session_id, output_dir, config_path, kwargs)
    _execute(runner, lambda: runner.approve(sid))
