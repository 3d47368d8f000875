"""`reelforge sessions`: list, view, verify, abandon, rm, help."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # imported where used: `reelforge --help` stays light
    pass

from reelforge.cli.core import _load_config, _output_dir_option, _resolve_output_dir, _width, cli


def _parse_statuses(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> set[str]:
    from reelforge.cli import support as cs

    return cs.parse_statuses(ctx, param, values)


@cli.group()
def sessions() -> None:
    """List, inspect, abandon and remove sessions.

    \b
    Commands:
      reelforge sessions list         Sessions, newest first (-n, --status, --search)
      reelforge sessions view ID      A session's progress and shots (--json)
      reelforge sessions verify ID    Read every recorded file against its sha256 (--repair)
      reelforge sessions abandon ID   Never offer a session to continue again
      reelforge sessions prune ID     Delete the replaced files in .replaced/ (asks; --yes)
      reelforge sessions rm ID        Remove a session and its files (asks; --yes)
      reelforge sessions help         Show this help
    ID: a session id, a unique start of one (20261201_1530) or `latest`.
    Files: output/sessions/ID/story.json, shots.json, images/, videos/, film.mp4
    """


@sessions.command("list")
@_output_dir_option
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show only the N newest sessions (after --status and --search).")
@click.option("--status", "statuses", multiple=True, callback=_parse_statuses, metavar="STATUS",
              help="Only sessions with this status: NEW, IN_PROGRESS, COMPLETE, FAILED, AWAITING_REVIEW, "
                   "ABANDONED, EMPTY or UNREADABLE (any case). Repeatable.")
@click.option("--search", metavar="TEXT", default=None,
              help="Only sessions whose idea contains TEXT (ignoring case and spacing).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sessions_list(output_dir: Path | None, config_path: Path | None, limit: int | None,
                  statuses: set[str], search: str | None, as_json: bool) -> None:
    """List sessions, newest first: id, status, per-stage counts, last update, idea.

    Statuses: NEW, IN PROGRESS, COMPLETE, FAILED, AWAITING REVIEW (stopped after its
    images until approved), ABANDONED (given up with `reelforge sessions abandon`), EMPTY
    (a folder a crash left before the session was written: it holds no work and the next
    new session sweeps it away), UNREADABLE (a damaged file).
    """
    import json

    from reelforge.cli import support as cs
    from reelforge.cli.views import sessions_table
    from reelforge.store import listing
    from reelforge.store.session import Session
    from reelforge.store.sessions import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    found = listing.newest_first(store)
    total = len(found)
    if statuses:
        found = [e for e in found if listing.entry_status(e) in statuses]
    if search is not None:
        wanted = " ".join(search.split()).casefold()
        found = [e for e in found if isinstance(e, Session) and wanted in " ".join(e.meta.idea.split()).casefold()]
    matched = len(found)
    if limit is not None:
        found = found[:limit]
    if as_json:
        click.echo(json.dumps([listing.session_summary(s) for s in found], indent=2))
        return
    if not found:
        if total:
            click.echo(f"No sessions match in {store.root} ({cs.plural(total, 'session')} in all).")
        else:
            click.echo(f"No sessions in {store.root}. Start one with: reelforge run \"your idea\"")
        return
    sessions_table(found)
    if len(found) < matched:
        click.echo(f"({len(found):,} of {matched:,} shown, newest first)")


@sessions.command("view")
@click.argument("session_id", metavar="ID")
@_output_dir_option
@click.option("--json", "as_json", is_flag=True, help="The session's meta as JSON, with per-stage counts.")
def sessions_view(session_id: str, output_dir: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Show a session's progress bars and shot breakdown.

    ID is a session id, a unique start of one (20261201_1530, session_20261201) or `latest`."""
    import json

    from reelforge.store import listing
    from reelforge.store.replaced import replaced_files
    from reelforge.store.sessions import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    session = store.load(listing.resolve_session_id(store, session_id))
    replaced = replaced_files(session)
    if as_json:
        from reelforge.records import lenient_converter

        data = lenient_converter.unstructure(session.meta)
        data["counts"] = listing.step_counts(session.meta)
        data["path"] = str(session.path)
        data["replaced"] = {"files": len(replaced), "bytes": sum(f.size for f in replaced)}
        click.echo(json.dumps(data, indent=2))
        return
    from reelforge.cli.views import render_session, replaced_line

    click.echo(render_session(session, width=_width()))
    if replaced:
        click.echo(f"\n{replaced_line(session.id, replaced)}")


@sessions.command("verify")
@click.argument("session_id", metavar="ID")
@click.option("--repair", is_flag=True,
              help="Move bad files into .replaced/ beside them and mark them todo: the next "
                   "`reelforge resume ID` makes exactly them again.")
@_output_dir_option
def sessions_verify(session_id: str, repair: bool, output_dir: Path | None, config_path: Path | None) -> None:
    """Read every file the session records (images, voices, clips, takes, the film; the
    story files must parse) against its recorded sha256. `resume` only compares size and
    modification time, so damage that keeps both is found here. Exits 1 naming each bad
    file; refused while a run is using the session."""
    from reelforge.redact import for_terminal
    from reelforge.store import listing
    from reelforge.store.sessions import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    report = store.verify(listing.resolve_session_id(store, session_id), repair=repair)
    click.echo(for_terminal("\n".join(report.lines())))
    if not report.ok:
        raise SystemExit(1)


@sessions.command("abandon")
@click.argument("session_id", metavar="ID")
@_output_dir_option
def sessions_abandon(session_id: str, output_dir: Path | None, config_path: Path | None) -> None:
    """Give up an incomplete session: `reelforge run` no longer offers to continue it.

    Its files are kept; `reelforge resume ID` still continues it (it is then IN PROGRESS
    again) and `reelforge sessions rm ID` removes it."""
    from reelforge.store import listing
    from reelforge.store.meta import ABANDONED, COMPLETE
    from reelforge.store.session import Session
    from reelforge.store.sessions import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    sid = listing.resolve_session_id(store, session_id)
    status = store.load(sid).meta.status  # exists, is no link, and is readable
    if status == COMPLETE:
        raise click.ClickException(f"session {sid} is COMPLETE: there is nothing to abandon "
                                   f"(`reelforge sessions rm {sid}` removes it)")
    if status != ABANDONED:
        session = Session(store, sid)
        session.lock()  # refused while a run has it
        try:
            session.load(repair=True)
            session.set_status(ABANDONED, session.meta.last_error)
        finally:
            session.close()
    click.echo(f"Session {sid} is ABANDONED: `reelforge run` will not offer it again.\n"
               f"Continue it with `reelforge resume {sid}`, remove it with `reelforge sessions rm {sid}`.")


@sessions.command("rm")
@click.argument("session_id", metavar="ID")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_output_dir_option
def sessions_rm(session_id: str, yes: bool, output_dir: Path | None, config_path: Path | None) -> None:
    """Remove a session and all its files (asks first, unless --yes).

    A session a run is using is refused. A session folder that is a symbolic link is
    refused, and links inside a session are removed, never followed."""
    from reelforge.cli import support as cs
    from reelforge.store.sessions import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    cs.remove_session(store, session_id, yes=yes)


@sessions.command("prune")
@click.argument("session_id", metavar="ID")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_output_dir_option
def sessions_prune(session_id: str, yes: bool, output_dir: Path | None, config_path: Path | None) -> None:
    """Delete the files a session set aside in its .replaced/ folders: each film an edit
    made again, files no record vouched for, bad files `sessions verify --repair` moved.
    Asks first, unless --yes. The session needs none of them (no record names them); its
    takes stay (`reelforge takes ID N --prune` deletes a shot's). Refused while a run is
    using the session."""
    from reelforge.cli import support as cs
    from reelforge.store import listing
    from reelforge.store.replaced import prune_replaced, replaced_files
    from reelforge.store.session import Session
    from reelforge.store.sessions import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    sid = listing.resolve_session_id(store, session_id)
    store.load(sid)  # exists, is no link, and is readable
    session = Session(store, sid)
    session.lock()  # refused while a run has it; store.open would also make an ABANDONED one IN PROGRESS
    try:
        session.load(repair=True)
        found = replaced_files(session)
        if not found:
            click.echo(f"Session {sid} has no replaced files.")
            return
        size = cs.human_size(sum(f.size for f in found))
        click.echo(f"{cs.plural(len(found), 'replaced file')} ({size}) in {session.path}:")
        for f in found[:10]:
            click.echo(f"  {f.path} ({cs.human_size(f.size)})")
        if len(found) > 10:
            click.echo(f"  ... and {len(found) - 10:,} more")
        if not yes and not cs.ask_yes_no(f"Delete them ({size})?", default=False,
                                          no_input="no answer on standard input; pass --yes to delete them"):
            click.echo("Nothing deleted.")
            return
        removed = prune_replaced(session)
    finally:
        session.close()
    click.echo(f"Deleted {cs.plural(len(removed), 'replaced file')} "
               f"({cs.human_size(sum(f.size for f in removed))}) of {sid}.")


@sessions.command("help")
@click.pass_context
def sessions_help(ctx: click.Context) -> None:
    """Show help for the sessions commands."""
    click.echo(ctx.parent.get_help())
