"""The film's look on the command line: `reelforge shots style` (one shot's own look is
`reelforge shots edit ID N --look`)."""

from __future__ import annotations

from pathlib import Path

import click

from reelforge.cli.core import _load_config, _output_dir_option, _resolve_output_dir
from reelforge.cli.creator import shots


@shots.command("style")
@click.argument("session_id")
@click.argument("style", required=False)
@_output_dir_option
def shots_style(session_id: str, style: str | None, output_dir: Path | None, config_path: Path | None) -> None:
    """Show or change the film's look: the story's style (palette, lens, light) that every
    shot without a look of its own is made with. Nothing runs: `reelforge resume ID` then
    remakes the images of those shots, their clips and the film.

    \b
    Examples:
      reelforge shots style latest
      reelforge shots style latest "cold cyan and sodium-orange palette, 40mm lens, haze"
      reelforge shots edit latest 3 --look "black and white, hard noon light"   (one shot)
    """
    from reelforge.errors import SessionError
    from reelforge.looks import restyle
    from reelforge.redact import for_terminal
    from reelforge.store import listing
    from reelforge.store.sessions import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    sid = listing.resolve_session_id(store, session_id)
    if style is None:
        story = store.load(sid).read_step_output("story")
        if story is None:
            raise SessionError(f"session {sid} has no story yet; run it first")
        click.echo(for_terminal(story.style) if story.style else "(no style: the shots are made as their prompts say)")
        return
    if not style.strip():
        raise click.UsageError("give the film's style, e.g. \"warm terracotta and teal palette, 35mm lens\"")
    with store.open(sid) as session:  # the lock: a running session is refused
        old, following = restyle(session, style)
    if following < 0:
        click.echo("No change.")
        return
    click.echo(f"{sid}: the film's style changed; {following} shot(s) take it.")
    click.echo(f"Make what it changes with: reelforge resume {sid}")
