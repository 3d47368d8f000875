"""What a session is handed on as, and what is installed: `export`, `report`, `serve`, `plugins`, `backends`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # imported where used: `reelforge --help` stays light
    pass

from reelforge.cli.core import (
    _BACKEND_FLAGS,
    _config_option,
    _load_config,
    _make_runner,
    _output_dir_option,
    _resolve_output_dir,
    _width,
    cli,
    interrupted,
)


@cli.command("plugins")
@click.option("--options", "show_options", is_flag=True,
              help="Also list every option of every backend: type, default, what it does.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_config_option
def plugins_cmd(show_options: bool, as_json: bool, config_path: Path | None) -> None:
    """List installed plugins, the backends each registers and the commands each adds.

    Plugins disabled in reelforge.toml ([plugins] disable) or by REELFORGE_DISABLE_PLUGINS
    are left out."""
    import json

    from reelforge.cli import support as cs
    from reelforge.engine.plugins import KINDS, backends, load_plugins, plugin_info

    _load_config(config_path)
    info = plugin_info(load_plugins())
    regs = {kind: backends(kind) for kind in KINDS} if show_options else {}
    if as_json:
        if show_options:
            for p in info:
                p["options"] = {kind: {name: cs.options_json(regs[kind][name]) for name in names}
                                for kind, names in p["backends"].items()}
        click.echo(json.dumps(info, indent=2))
        return
    width = _width()
    for p in info:
        version = f" {p['version']}" if p["version"] else ""
        dist = f" ({p['distribution']}{version})" if p["distribution"] else ""
        click.echo(f"{p['name']}{dist}: {p['module']}")
        for kind, names in p["backends"].items():
            click.echo(f"  {KINDS[kind][1]}: {', '.join(names)}")
            if show_options:
                for name in names:
                    lines = cs.option_lines(regs[kind][name], indent=4, width=width)
                    click.echo("\n".join([f"    {name} options (-o {name}.KEY=VALUE):", *lines]
                                         if lines else [f"    {name} takes no options"]))
        if p["commands"]:
            click.echo(f"  commands: {', '.join(p['commands'])}")
        others = [h for h in p["hooks"] if not h.startswith("register_")]
        if others:
            click.echo(f"  hooks: {', '.join(others)}")


@cli.command("backends")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_config_option
def backends_cmd(name: str | None, as_json: bool, config_path: Path | None) -> None:
    """List the installed backends, or show backend NAME and all its options.

    Each option is shown with its type, default and what it does; set it with
    `-o NAME.KEY=VALUE` on `reelforge run`, or in reelforge.toml under [backends.NAME]."""
    from reelforge.cli import support as cs

    _load_config(config_path)
    cs.show_backends(name, as_json=as_json, width=_width(), flags=_BACKEND_FLAGS)


@cli.command("export")
@click.argument("session_id", metavar="ID")
@click.option("--prompts", is_flag=True, help="Every shot's prompts, narration, duration and seed.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "txt"]), default="json", show_default=True,
              help="Format of --prompts.")
@click.option("-o", "--output", "output_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write --prompts to FILE instead of standard output.")
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Copy the film, clips, voices, stills, subtitles, story files, a timeline "
                                  "and a manifest into DIR (new or empty) for an editor.")
@click.option("--timeline", "timeline_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Write an OpenTimelineIO timeline (.otio) of the session's clips and narration.")
@click.option("--force", is_flag=True, help="Overwrite an existing -o FILE or --timeline FILE.")
@_output_dir_option
def export_cmd(session_id: str, prompts: bool, fmt: str, output_file: Path | None, bundle_dir: Path | None,
               timeline_file: Path | None, force: bool, output_dir: Path | None, config_path: Path | None) -> None:
    """Export a session's prompts, a bundle for an editor, or a timeline.

    \b
    Examples:
      reelforge export latest --prompts --format csv -o prompts.csv
      reelforge export 20261201_1530 --bundle ~/edit/lighthouse
      reelforge export latest --timeline lighthouse.otio
    Nothing is written inside a session; files are copied, never moved."""
    run_export_command(_resolve_output_dir(output_dir, _load_config(config_path)), session_id, prompts=prompts,
                       fmt=fmt, output_file=output_file, bundle_dir=bundle_dir, timeline_file=timeline_file,
                       force=force)


@cli.command("report")
@click.argument("session_id", metavar="ID")
@_output_dir_option
def report_cmd(session_id: str, output_dir: Path | None, config_path: Path | None) -> None:
    """Write index.html in a session's folder: story, characters, every shot with its
    picture, prompts, state, seed, backend, time, takes and clip, the film, the ledger."""
    from reelforge.store import listing
    from reelforge.store.sessions import SessionStore
    from reelforge.web.report import write_report

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    path = write_report(store.load(listing.resolve_session_id(store, session_id)))
    click.echo(f"Report: {path}")


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Only this machine's loopback without --allow-remote.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--allow-remote", is_flag=True,
              help="Allow a --host other machines can reach (there is no login: anyone who reaches it "
                   "can see the sessions and start renders).")
@_output_dir_option
def serve_cmd(host: str, port: int, allow_remote: bool, output_dir: Path | None, config_path: Path | None) -> None:
    """A local web app: the sessions, live progress of a running one, and buttons to redo a
    shot, use a take and approve, which run here as `reelforge redo/use/approve` would."""
    from reelforge.web.server import serve

    config = _load_config(config_path)
    output_dir = _resolve_output_dir(output_dir, config)
    try:
        serve(output_dir, host=host, port=port, allow_remote=allow_remote,
              runner_factory=lambda: _make_runner(output_dir, config, {}))
    except KeyboardInterrupt:  # uvicorn stops gracefully, then raises the Ctrl-C again
        interrupted("reelforge serve stopped")


def run_export_command(output_dir: Path, session_id: str, *, prompts: bool, fmt: str,
                       output_file: Path | None, bundle_dir: Path | None, timeline_file: Path | None,
                       force: bool = False) -> None:
    """`reelforge export`: exactly one of --prompts, --bundle DIR, --timeline FILE. An
    existing FILE is refused (exit 2) unless ``force``."""
    import os

    from reelforge.cli import support as cs
    from reelforge.store import listing
    from reelforge.store.sessions import SessionStore
    from reelforge.web.export import format_prompts, write_bundle, write_text_file, write_timeline

    chosen = [name for name, on in (("--prompts", prompts), ("--bundle", bundle_dir is not None),
                                    ("--timeline", timeline_file is not None)) if on]
    if len(chosen) != 1:
        raise click.UsageError("give one of --prompts, --bundle DIR or --timeline FILE"
                               + (f" (not {' and '.join(chosen)})" if chosen else ""))
    if output_file is not None and not prompts:
        raise click.UsageError("-o/--output goes with --prompts (--bundle and --timeline name their own target)")
    if force and output_file is None and timeline_file is None:
        raise click.UsageError("--force goes with -o FILE or --timeline FILE (a --bundle DIR must be new or empty)")
    for target, flag in ((output_file, "-o"), (timeline_file, "--timeline")):
        if target is not None and not force and os.path.lexists(target):
            raise click.UsageError(f"{target} exists; pass --force to overwrite it ({flag} FILE), "
                                   f"or choose another file")
    store = SessionStore(output_dir)
    session = store.load(listing.resolve_session_id(store, session_id))
    if prompts:
        if output_file is None:
            click.echo(format_prompts(session, fmt, terminal=sys.stdout.isatty()), nl=False)
            return
        write_text_file(session, output_file, format_prompts(session, fmt))
        click.echo(f"Wrote the prompts of {len(session.meta.shots)} shot(s) to {output_file}", err=True)
        return
    if timeline_file is not None:
        write_timeline(session, timeline_file)
        click.echo(f"Timeline: {timeline_file}")
        return
    result = write_bundle(session, bundle_dir)
    click.echo(f"Bundle: {result.path} ({cs.plural(result.files, 'file')}, {cs.human_size(result.bytes)}; "
               f"manifest.json lists them with their digests)")
    for item in result.missing:
        click.echo(f"  not in the bundle: {item}", err=True)
