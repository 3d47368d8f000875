"""The ``reelforge`` command line: run, resume, sessions list/view, plugins.

Plugins load only where they are needed: `run`/`resume` (their backend flags come from the
installed backends), `plugins`, and a command name the core does not know (a plugin's, such
as `reelforge comfyui check`). `reelforge --help` and `sessions` load none.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # imported where used: `reelforge --help` stays light
    import logging

from reelforge.errors import ConfigError, ReelforgeError

#: The flag that picks each kind's backend.
_BACKEND_FLAGS = {"story": "--story-llm", "image": "--image-gen", "video": "--renderer",
                  "narration": "--narrator"}


def _config_option(f):
    return click.option(
        "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
        envvar="REELFORGE_CONFIG", help="Config file (default: ./reelforge.toml if present).")(f)


def _output_dir_option(f):
    f = click.option(
        "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        envvar="REELFORGE_OUTPUT_DIR",
        help="Where sessions live (default: output_dir from reelforge.toml, else ./output).")(f)
    return _config_option(f)


def _load_config(config_path: Path | None):
    from reelforge.engine.config import load_config
    from reelforge.engine.plugins import disable

    config = load_config(config_path)
    if config.disable:
        disable(config.disable)
    return config


def _resolve_output_dir(output_dir: Path | None, config) -> Path:
    return output_dir or Path(config.output_dir or "output")


def _backend_flags() -> dict[str, list[tuple[str, str, bool, type]]]:
    """Extra flags backends ask for (Options field metadata 'cli'):
    flag -> [(backend name, field, multiple, Options class)]."""
    from reelforge.options import cli_flags
    from reelforge.engine.plugins import KINDS, backends

    flags: dict[str, list[tuple[str, str, bool, type]]] = {}
    for kind in KINDS:
        try:
            regs = backends(kind)
        except ConfigError:
            continue
        for reg in regs.values():
            opt_cls = getattr(reg.cls, "Options", None)
            for flag, (field, multiple) in (cli_flags(opt_cls) if opt_cls else {}).items():
                flags.setdefault(flag, []).append((reg.name, field, multiple, opt_cls))
    return flags


_run_params_cache: tuple[Any, list[click.Parameter]] | None = None


def _run_params() -> list[click.Parameter]:
    """Backend selection and options shared by `run` and `resume`, built from the loaded
    plugins (loading them first). Rebuilt when the registered plugins change, e.g. a test
    registering a backend; otherwise the same objects, as click's parsing expects."""
    global _run_params_cache
    from reelforge.cli import support as cs
    from reelforge.engine.plugins import KINDS, load_plugins

    manager = load_plugins()
    key = tuple((name, id(plugin)) for name, plugin in manager.list_name_plugin())
    if _run_params_cache is not None and _run_params_cache[0] == key:
        return _run_params_cache[1]
    params: list[click.Parameter] = [
        click.Option([flag, f"{kind}_backend"], metavar="NAME",
                     help=f"The {KINDS[kind][1]} to use (see `reelforge backends`).")
        for kind, flag in _BACKEND_FLAGS.items()]
    params.append(click.Option(["-o", "--option", "options"], multiple=True, metavar="[NAME.]KEY=VALUE",
                               help="A backend option, e.g. -o shots=9 or -o kenburns.fps=30. Repeatable. "
                                    "`reelforge backends NAME` lists a backend's options."))
    params.append(click.Option(["--transition"], type=click.Choice(["cut", "crossfade"]), default=None,
                               help="How clips are joined into film.mp4 (default: cut, or as the session recorded)."))
    params.append(click.Option(["--subtitles"], type=click.Choice(["auto", "none", "soft", "burn"]), default=None,
                               help="Subtitles from the narration: soft (a track players can switch on), burn "
                                    "(drawn into the picture) or none. Default auto: soft when there is "
                                    "narration. film.srt and film.vtt are written beside the film either way."))
    params.append(click.Option(["--music"], type=click.Path(exists=True, dir_okay=False), default=None,
                               help="A music bed for the film, ducked under the narration (copied into the session)."))
    params.append(click.Option(["--cards/--no-cards"], default=None,
                               help="A title card (title and logline) and an end card."))
    params.append(click.Option(["--review"], type=click.Choice(["images"]), default=None,
                               help="Stop after the images (AWAITING_REVIEW) until `reelforge approve ID`."))
    params.append(click.Option(["--budget"], type=click.FloatRange(min=0, min_open=True), default=None,
                               metavar="SECONDS",
                               help="Start no work that the session's recorded averages say would take "
                                    "this run past SECONDS of backend time."))
    for flag, targets in sorted(_backend_flags().items()):
        multiple = any(m for _, _, m, _ in targets)
        params.append(click.Option([flag, "extra__" + flag.lstrip("-").replace("-", "_")],
                                   multiple=multiple, help=cs.flag_help(targets)))
    _run_params_cache = (key, params)
    return params


class _RunCommand(click.Command):
    """`run` and `resume`: the backend options (see :func:`_run_params`) join the command's
    own parameters when it is used, so only these commands load plugins."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        help_option = self.get_help_option(ctx)
        own = [p for p in params if p is not help_option]
        return [*own, *_run_params(), *([help_option] if help_option is not None else [])]


def _make_runner(output_dir: Path, config, kwargs: dict[str, Any]):
    """Build a Runner from the command line over reelforge.toml (the command line wins)."""
    from reelforge.engine.config import check_backend_tables
    from reelforge.options import parse_pairs
    from reelforge.engine.plugins import KINDS
    from reelforge.engine.runner import DEFAULT_BACKENDS, Runner

    chosen = dict(config.backends)
    for kind in KINDS:
        if kwargs.get(f"{kind}_backend"):
            chosen[kind] = kwargs[f"{kind}_backend"]
    selected = {DEFAULT_BACKENDS[k] if k not in chosen else chosen[k] for k in KINDS}
    check_backend_tables(config)
    options: dict[str | None, dict[str, Any]] = {
        scope: dict(table) for scope, table in config.options.items() if scope in selected or scope in KINDS}
    pairs = list(kwargs.get("options", ()))
    flag_targets = _backend_flags()
    for key in [k for k in kwargs if k.startswith("extra__")]:
        value = kwargs[key]
        if not value:
            continue
        flag = "--" + key[len("extra__"):].replace("_", "-")
        for name, field, _multiple, _cls in flag_targets.get(flag, []):
            if name in selected:
                text = ",".join(value) if isinstance(value, tuple) else str(value)
                pairs.append(f"{name}.{field}={text}")
    for scope, key, value in parse_pairs(pairs):
        options.setdefault(scope, {})[key] = value
    return Runner(output_dir, backends=chosen, options=options,
                  transition=kwargs.get("transition") or config.transition,
                  subtitles=kwargs.get("subtitles"), music=kwargs.get("music"), cards=kwargs.get("cards"),
                  review=kwargs.get("review"), budget=kwargs.get("budget"))


# -- group --------------------------------------------------------------------------

class _Group(click.Group):
    """The top-level group. Commands plugins add (hook ``register_commands``) are added the
    first time a name the core does not know is asked for, so that `reelforge --help` and the
    core commands do not load every plugin; `reelforge plugins` lists them. Errors become
    one clear line (secrets redacted, control characters escaped), never a traceback."""

    _plugin_commands_added = False

    def make_context(self, info_name, args, parent=None, **extra):
        # click finds the help width through shutil, whose import (zlib, bz2, lzma) is a
        # tenth of `reelforge --help`; the same width from os costs nothing.
        import click.formatting

        if parent is None and "terminal_width" not in extra and click.formatting.FORCED_WIDTH is None:
            extra["terminal_width"] = _help_width()
        return super().make_context(info_name, args, parent=parent, **extra)

    def add_plugin_commands(self) -> None:
        """Load plugins and let them add their commands (once)."""
        if self._plugin_commands_added:
            return
        self._plugin_commands_added = True
        from reelforge.engine.plugins import load_plugins

        load_plugins().hook.register_commands(cli=self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._plugin_commands_added:
            self.add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        if ctx.resilient_parsing:  # shell completion: offer plugin commands too
            self.add_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx):
        from reelforge.errors import describe_os_error
        from reelforge.redact import for_terminal

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.UsageError(for_terminal(str(exc))) from None
        except ReelforgeError as exc:
            raise click.ClickException(for_terminal(str(exc))) from None
        except OSError as exc:
            raise click.ClickException(for_terminal(describe_os_error(exc))) from None
        except RecursionError:
            raise click.ClickException("input nested too deeply to read") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Plugins may add more commands: `reelforge plugins` lists them.")
@click.version_option(package_name="reelforge")
def cli() -> None:
    """reelforge: turn a one-line idea into a short film.

    Every step is saved the moment it is done. After a crash or Ctrl-C, `reelforge run`
    finds the incomplete session, shows its progress and asks to continue.
    """


# -- run / resume -------------------------------------------------------------------

@cli.command(cls=_RunCommand)
@click.argument("idea", required=False)
@click.option("--resume", "answer", flag_value="resume",
              help="Continue the newest incomplete session (of IDEA, if given) without asking.")
@click.option("--new", "answer", flag_value="new", help="Start a new session even if an incomplete one exists.")
@_output_dir_option
def run(idea: str | None, answer: str | None, output_dir: Path | None, config_path: Path | None,
        **kwargs: Any) -> None:
    """Make a film from IDEA, or continue an incomplete session.

    With IDEA, only an incomplete session of the same idea is offered; otherwise a new
    session starts. With no IDEA, the newest incomplete session is offered, and answering
    n asks for the idea of a new one.

    \b
    Examples:
      reelforge run "The rise and fall of an ancient trading city" --new
      reelforge run --resume
    """
    from reelforge.cli import support as cs
    from reelforge.redact import for_terminal
    from reelforge.store.session import SessionStore
    from reelforge.cli.views import render_session

    config = _load_config(config_path)
    output_dir = _resolve_output_dir(output_dir, config)
    runner = _make_runner(output_dir, config, kwargs)
    runner.validate()
    store = SessionStore(output_dir)
    session_id = None
    if idea is not None and not idea.strip():
        raise click.UsageError("the IDEA is empty; e.g. reelforge run \"A lighthouse in a storm\"")
    if answer != "new":
        incomplete, broken = store.scan()
        for problem in broken:  # never skipped silently: say which file is damaged
            click.echo(f"warning: skipping a damaged session: {for_terminal(str(problem))}", err=True)
        # A new idea must never be swallowed by an unrelated session: only the same idea
        # (ignoring case and spacing) is offered.
        offered = [s for s in incomplete if idea is None or cs.same_idea(s.meta.idea, idea)]
        others = len(incomplete) - len(offered)
        if offered:
            candidate = offered[0]
            click.echo("INCOMPLETE SESSION FOUND")
            click.echo(render_session(candidate, width=_width()))
            if answer == "resume" or cs.ask_continue(candidate.id):
                session_id = candidate.id
            else:
                click.echo(f"Starting a new session; {candidate.id} is left as it is.")
                if idea is None:
                    idea = cs.ask_idea()
        elif answer == "resume":
            if idea is not None and others:
                raise click.ClickException(
                    f"no incomplete session of this idea in {store.root} to resume "
                    f"({cs.plural(others, 'incomplete session')} of other ideas: see `reelforge sessions "
                    f"list`, then `reelforge resume ID`)")
            if broken:
                raise click.ClickException(f"no readable incomplete session in {store.root} to resume "
                                           f"({len(broken)} damaged: see the warnings above)")
            raise click.ClickException(f"no incomplete session in {store.root} to resume")
        elif idea is not None and others:
            click.echo(f"Starting a new session for this idea; {cs.plural(others, 'incomplete session')} "
                       f"of other ideas {'is' if others == 1 else 'are'} left as "
                       f"{'it is' if others == 1 else 'they are'} (`reelforge resume ID` continues one).")
    if session_id is None and not idea:
        raise click.UsageError("give an IDEA to start a new session, e.g. reelforge run \"A lighthouse in a storm\"")
    _execute(runner, lambda: runner.resume(session_id) if session_id else runner.start(idea))


@cli.command(cls=_RunCommand)
@click.argument("session_id", required=False)
@_output_dir_option
def resume(session_id: str | None, output_dir: Path | None, config_path: Path | None,
           **kwargs: Any) -> None:
    """Continue SESSION_ID (default: the newest incomplete session), doing only what remains.

    SESSION_ID may be a unique start of an id (20261201_1530) or `latest`. An ABANDONED
    session continues too (and is IN PROGRESS again)."""
    from reelforge.cli import support as cs
    from reelforge.store.session import SessionStore

    config = _load_config(config_path)
    output_dir = _resolve_output_dir(output_dir, config)
    runner = _make_runner(output_dir, config, kwargs)
    if session_id is not None:
        session_id = cs.resolve_session_id(SessionStore(output_dir), session_id)
    _execute(runner, lambda: runner.resume(session_id))


# -- the creator's loop: redo, edit, takes, use, approve ---------------------------------

def _session_runner(session_id: str, output_dir: Path | None, config_path: Path | None, kwargs: dict):
    from reelforge.cli import support as cs
    from reelforge.store.session import SessionStore

    config = _load_config(config_path)
    output_dir = _resolve_output_dir(output_dir, config)
    runner = _make_runner(output_dir, config, kwargs)
    return runner, cs.resolve_session_id(SessionStore(output_dir), session_id)


_STAGE_CHOICE = click.Choice(["image", "narration", "video"])


@cli.command(cls=_RunCommand)
@click.argument("session_id")
@click.option("--shot", "shot_id", type=int, required=True, help="The shot to make again.")
@click.option("--stage", type=_STAGE_CHOICE, default="image", show_default=True,
              help="What to make again; what depends on it (its clip, the film) follows only if it changes.")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=None, help="Use this seed for the shot.")
@click.option("--new-seed", is_flag=True, help="Give the shot a new random seed.")
@_output_dir_option
def redo(session_id: str, shot_id: int, stage: str, seed: int | None, new_seed: bool,
         output_dir: Path | None, config_path: Path | None, **kwargs: Any) -> None:
    """Make one shot's image (or voice, or clip) of SESSION_ID again, keep the old one as a
    take, and bring the session up to date (its clip and the film are remade if they change).

    \b
    Examples:
      reelforge redo latest --shot 3
      reelforge redo 20261201_1530 --shot 3 --new-seed
      reelforge redo latest --shot 5 --stage video
    """
    if seed is not None and new_seed:
        raise click.UsageError("give --seed N or --new-seed, not both")
    runner, sid = _session_runner(session_id, output_dir, config_path, kwargs)
    _execute(runner, lambda: runner.redo(sid, shot_id, stage, seed=seed, new_seed=new_seed))


@cli.group()
def shots() -> None:
    """Look at and edit the shots of a session."""


@shots.command("edit")
@click.argument("session_id")
@click.argument("shot_id", type=int)
@click.option("--image-prompt", default=None, help="The prompt of the shot's still image.")
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
    then remakes only what the change reaches (a new image prompt: that image, its clip and
    the film; a new line: its voice, clip timing and the film)."""
    import json as _json

    from reelforge.cli import support as cs
    from reelforge.engine.runner import EDITABLE, _plan_shot, _saved_plan, edit_shot
    from reelforge.records import unstructure
    from reelforge.store.session import SessionStore

    config = _load_config(config_path)
    store = SessionStore(_resolve_output_dir(output_dir, config))
    sid = cs.resolve_session_id(store, session_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    with store.open(sid) as session:  # the lock: a running session is refused
        plan = _saved_plan(session)
        current = unstructure(_plan_shot(plan, shot_id))
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

    from reelforge.cli import support as cs
    from reelforge.redact import for_terminal
    from reelforge.store.session import SHOT_STAGES, SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    sid = cs.resolve_session_id(store, session_id)
    if prune:
        with store.open(sid) as opened:  # the lock: a running session is refused
            try:
                count = sum(len(opened.shot_state(shot_id).artifact(st).takes) for st in SHOT_STAGES)
            except KeyError:
                raise click.ClickException(f"no shot {shot_id} in {sid}") from None
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
        raise click.ClickException(f"no shot {shot_id} in {session.id}") from None
    rows = {stage: {"current": {"path": art.path, "state": art.state, "seed": art.seed,
                                "backend": art.backend, "pinned": art.pinned},
                    "takes": art.takes}
            for stage, art in (("image", state.image), ("narration", state.narration), ("video", state.video))}
    if as_json:
        click.echo(_json.dumps(rows, indent=2))
        return
    for stage, row in rows.items():
        cur = row["current"]
        pin = " (chosen)" if cur["pinned"] else ""
        click.echo(f"{stage}: now {cur['path'] or '-'} [{cur['state']}] seed {cur['seed']}{pin}")
        for t in row["takes"]:
            note = " rejected" if t.get("rejected") else ""
            prompt = for_terminal(" ".join(str(t.get("prompt") or "").split())[:70], newlines=False)
            click.echo(f"  take {t['n']}: {t['path']}  seed {t.get('seed')}  {t.get('backend') or '-'}"
                       f"{note}  {prompt}")
        if not row["takes"]:
            click.echo("  (no takes)")
    click.echo(f"Choose one with: reelforge use {session.id} {shot_id} --take N [--stage image|narration|video]")


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
    _execute(runner, lambda: runner.use_take(sid, shot_id, stage, take_n))


@cli.command(cls=_RunCommand)
@click.argument("session_id")
@_output_dir_option
def approve(session_id: str, output_dir: Path | None, config_path: Path | None, **kwargs: Any) -> None:
    """Approve the images of a session started with `--review images` and make its clips and film."""
    runner, sid = _session_runner(session_id, output_dir, config_path, kwargs)
    _execute(runner, lambda: runner.approve(sid))


def _help_width() -> int:
    """The width click's help formatter would pick (shutil.get_terminal_size's rules)."""
    import os

    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return max(min(columns or 80, 80) - 2, 50)


def _width() -> int:
    """Width for session views: the terminal's, at most 100 (80 when it is not known)."""
    import shutil

    return min(100, shutil.get_terminal_size((80, 24)).columns)


def _show_warnings(console) -> logging.Handler:
    """Backends' log warnings and Python warnings print above the live progress bars; when
    the output is not a terminal (a log file, a pipe), one plain line each: rich would
    wrap them at 80 columns and pad them with spaces."""
    import logging

    from rich.logging import RichHandler

    from reelforge.redact import RedactingFilter

    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_time=False, show_path=False,
                                               markup=False, rich_tracebacks=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    handler.addFilter(RedactingFilter())
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)
    return handler


def _execute(runner, action) -> None:
    import logging

    from reelforge.cli.progress import RichProgress
    from reelforge.redact import for_terminal
    from reelforge.engine.runner import Interrupted

    observer = RichProgress()
    runner.pm.register(observer, name="_reelforge_progress")
    log_handler = _show_warnings(observer.console)
    try:
        try:
            result = action()
        finally:
            observer.stop()
            runner.pm.unregister(observer)
            logging.getLogger().removeHandler(log_handler)
            logging.captureWarnings(False)
    except Interrupted as exc:
        click.echo(f"\n{exc}", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("\ninterrupted; everything finished is saved. Run `reelforge run` to continue.", err=True)
        sys.exit(130)
    if result.ok:
        click.echo(f"Session {result.session_id} COMPLETE")
        click.echo(f"Film: {result.film}")
        return
    if result.status == "AWAITING_REVIEW":
        click.echo(f"Session {result.session_id} AWAITING REVIEW: the images are ready in {result.path / 'images'}")
        click.echo(f"Look at them (reelforge sessions view {result.session_id}), redo any with "
                   f"`reelforge redo {result.session_id} --shot N`, then make the clips with:\n"
                   f"  reelforge approve {result.session_id}")
        return
    if result.status == "BUDGET":
        click.echo(f"Session {result.session_id} stopped at its budget: {for_terminal(result.failed[0])}", err=True)
        click.echo(f"Everything that finished is saved. Continue with a larger --budget (or none):\n"
                   f"  reelforge resume {result.session_id}", err=True)
        sys.exit(1)
    problems = result.problems or result.failed  # grouped by cause: one line per cause
    click.echo(f"Session {result.session_id} FAILED: {len(problems)} problem(s)", err=True)
    for line in problems:
        click.echo(f"  - {for_terminal(line)}", err=True)
    click.echo(f"Everything that finished is saved. Fix the cause, then resume with:\n"
               f"  reelforge resume {result.session_id}", err=True)
    sys.exit(1)


# -- sessions -----------------------------------------------------------------------

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
    from reelforge.store.session import Session, SessionStore
    from reelforge.cli.views import sessions_table

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    found = sorted(store.sessions(), key=lambda e: cs.session_sort_key(cs.entry_id(e)), reverse=True)
    total = len(found)
    if statuses:
        found = [e for e in found if cs.entry_status(e) in statuses]
    if search is not None:
        wanted = " ".join(search.split()).casefold()
        found = [e for e in found if isinstance(e, Session) and wanted in " ".join(e.meta.idea.split()).casefold()]
    matched = len(found)
    if limit is not None:
        found = found[:limit]
    if as_json:
        click.echo(json.dumps([cs.session_summary(s) for s in found], indent=2))
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

    from reelforge.cli import support as cs
    from reelforge.store.session import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    session = store.load(cs.resolve_session_id(store, session_id))
    if as_json:
        from reelforge.records import lenient_converter

        data = lenient_converter.unstructure(session.meta)
        data["counts"] = cs.step_counts(session.meta)
        data["path"] = str(session.path)
        click.echo(json.dumps(data, indent=2))
        return
    from reelforge.cli.views import render_session

    click.echo(render_session(session, width=_width()))


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
    from reelforge.cli import support as cs
    from reelforge.redact import for_terminal
    from reelforge.store.session import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    report = store.verify(cs.resolve_session_id(store, session_id), repair=repair)
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
    from reelforge.cli import support as cs
    from reelforge.store.session import ABANDONED, COMPLETE, Session, SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    sid = cs.resolve_session_id(store, session_id)
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
    from reelforge.store.session import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    cs.remove_session(store, session_id, yes=yes)


@sessions.command("help")
@click.pass_context
def sessions_help(ctx: click.Context) -> None:
    """Show help for the sessions commands."""
    click.echo(ctx.parent.get_help())


# -- plugins ------------------------------------------------------------------------

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


# -- looking at a session: export, report, serve (reelforge/export.py, report.py, web/) ---

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
@_output_dir_option
def export_cmd(session_id: str, prompts: bool, fmt: str, output_file: Path | None, bundle_dir: Path | None,
               timeline_file: Path | None, output_dir: Path | None, config_path: Path | None) -> None:
    """Export a session's prompts, a bundle for an editor, or a timeline.

    \b
    Examples:
      reelforge export latest --prompts --format csv -o prompts.csv
      reelforge export 20261201_1530 --bundle ~/edit/lighthouse
      reelforge export latest --timeline lighthouse.otio
    Nothing is written inside a session; files are copied, never moved."""
    from reelforge.web.export import run_export_command

    run_export_command(_resolve_output_dir(output_dir, _load_config(config_path)), session_id, prompts=prompts,
                       fmt=fmt, output_file=output_file, bundle_dir=bundle_dir, timeline_file=timeline_file)


@cli.command("report")
@click.argument("session_id", metavar="ID")
@_output_dir_option
def report_cmd(session_id: str, output_dir: Path | None, config_path: Path | None) -> None:
    """Write index.html in a session's folder: story, characters, every shot with its
    picture, prompts, state, seed, backend, time, takes and clip, the film, the ledger."""
    from reelforge.cli import support as cs
    from reelforge.web.report import write_report
    from reelforge.store.session import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    path = write_report(store.load(cs.resolve_session_id(store, session_id)))
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
    serve(output_dir, host=host, port=port, allow_remote=allow_remote,
          runner_factory=lambda: _make_runner(output_dir, config, {}))


def main() -> None:
    cli(prog_name="reelforge")
