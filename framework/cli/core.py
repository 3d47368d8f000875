"""The ``reelforge`` command line: the group, `run` and `resume`, and what every command shares
(options, the Runner built from them, warnings and errors shown as one line).

Plugins load only where they are needed: `run`/`resume` (their backend flags come from the
installed backends), `plugins`, and a command name the core does not know (a plugin's, such
as `reelforge comfyui check`). `reelforge --help` and `sessions` load none.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

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
    from reelforge.engine.plugins import KINDS, backends
    from reelforge.options import cli_flags

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
    params.append(click.Option(["--music-under"], type=click.FloatRange(0, 60), default=None, metavar="LU",
                               help="How far under the voices' loudness the music bed plays, whatever the "
                                    "file's own level (default 18 LU, or as the session recorded)."))
    params.append(click.Option(["--credits"], default=None, metavar="TEXT",
                               help="The end card's lines (with --cards), split at '|' or newlines "
                                    "(default: \"Made with reelforge\")."))
    params.append(click.Option(["--no-credits"], is_flag=True, default=False,
                               help="No line on the end card, just \"The End\"."))
    params.append(click.Option(["--review"], type=click.Choice(["images"]), default=None,
                               help="Stop after the images (AWAITING_REVIEW) until `reelforge approve ID`."))
    params.append(click.Option(["--continuity"], type=click.Choice(["none", "last-frame"]), default=None,
                               help="last-frame: in each scene, a clip starts from the last frame of the clip "
                                    "before it, not from its own still (an image-to-video renderer only). "
                                    "Recorded in the session (default: none, or as the session recorded; "
                                    "also continuity = \"last-frame\" in reelforge.toml)."))
    params.append(click.Option(["--budget"], type=click.FloatRange(min=0, min_open=True), default=None,
                               metavar="SECONDS",
                               help="Start no work that the session's recorded averages say would take "
                                    "this run past SECONDS of backend time."))
    params.append(click.Option(["--engine"], metavar="NAME", default=None,
                               help="The engine that schedules the shots (default: local; also "
                                    "REELFORGE_ENGINE or engine = \"NAME\" in reelforge.toml)."))
    params.append(click.Option(["--db"], metavar="URL", default=None,
                               help="The database of an engine with workers (dbos: postgresql://...; "
                                    "also REELFORGE_DB)."))
    params.append(click.Option(["--detach"], is_flag=True, default=False,
                               help="With an engine that has workers: hand the session over, print its "
                                    "id and return without following it."))
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
    from reelforge.engine.plugins import KINDS
    from reelforge.engine.runner import DEFAULT_BACKENDS, Runner
    from reelforge.options import parse_pairs

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
    if kwargs.get("no_credits") and kwargs.get("credits") is not None:
        raise click.UsageError("--credits and --no-credits contradict each other; give one")
    film_options = {"music_under_lu": kwargs.get("music_under"),
                    "credits": "" if kwargs.get("no_credits") else kwargs.get("credits")}
    return Runner(output_dir, backends=chosen, options=options,
                  film_options={k: v for k, v in film_options.items() if v is not None},
                  transition=kwargs.get("transition") or config.transition,
                  subtitles=kwargs.get("subtitles"), music=kwargs.get("music"), cards=kwargs.get("cards"),
                  review=kwargs.get("review"), budget=kwargs.get("budget"),
                  continuity=kwargs.get("continuity"), default_continuity=config.continuity,
                  engine=kwargs.get("engine") or os.environ.get("REELFORGE_ENGINE") or config.engine,
                  engine_options={"db": kwargs["db"]} if kwargs.get("db") else None,
                  detach=bool(kwargs.get("detach")))


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
        from reelforge.errors import SessionIdError, describe_os_error
        from reelforge.redact import for_terminal

        try:
            return super().invoke(ctx)
        except (ConfigError, SessionIdError) as exc:  # bad input: a usage error, exit 2
            raise click.UsageError(for_terminal(str(exc))) from None
        except click.Abort as exc:  # a prompt got Ctrl-C (or, on a terminal, end of input)
            if isinstance(exc.__context__, EOFError):
                raise click.UsageError("no answer (end of input); nothing was changed") from None
            interrupted("interrupted at the question; nothing was changed")
        except KeyboardInterrupt:
            interrupted("interrupted")
        except ReelforgeError as exc:
            raise click.ClickException(for_terminal(str(exc))) from None
        except OSError as exc:
            raise click.ClickException(for_terminal(describe_os_error(exc))) from None
        except RecursionError:
            raise click.ClickException("input nested too deeply to read") from None


def interrupted(message: str) -> NoReturn:
    """End on Ctrl-C with one line on stderr and exit code 130 (not click's "Aborted!")."""
    click.echo(f"\n{message}", err=True)
    sys.exit(130)


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
    session starts. With no IDEA, the newest incomplete session is offered; answering n
    leaves it as it is and stops (exit 2): give an IDEA to start a new session.

    \b
    Examples:
      reelforge run "The rise and fall of an ancient trading city" --new
      reelforge run --resume
    """
    from reelforge.cli import support as cs
    from reelforge.cli.views import render_session
    from reelforge.redact import for_terminal
    from reelforge.store.sessions import SessionStore

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
                if idea is None:  # the spec's "n" starts a new session: of which idea, the user says
                    raise click.UsageError(
                        f"{candidate.id} is left as it is; to start a new session give its idea: "
                        f"reelforge run \"A lighthouse in a storm\" --new")
                click.echo(f"Starting a new session; {candidate.id} is left as it is.")
        elif answer == "resume":
            if idea is not None and others:
                raise click.UsageError(
                    f"no incomplete session of this idea in {store.root} to resume "
                    f"({cs.plural(others, 'incomplete session')} of other ideas: see `reelforge sessions "
                    f"list`, then `reelforge resume ID`)")
            if broken:
                raise click.ClickException(f"no readable incomplete session in {store.root} to resume "
                                           f"({len(broken)} damaged: see the warnings above)")
            raise click.UsageError(f"no incomplete session in {store.root} to resume")
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
    from reelforge.store import listing
    from reelforge.store.sessions import SessionStore

    config = _load_config(config_path)
    output_dir = _resolve_output_dir(output_dir, config)
    runner = _make_runner(output_dir, config, kwargs)
    if session_id is not None:
        session_id = listing.resolve_session_id(SessionStore(output_dir), session_id)
    _execute(runner, lambda: runner.resume(session_id))


@cli.command()
@click.option("--engine", metavar="NAME", default=None,
              help="The engine whose worker this is (also REELFORGE_ENGINE), e.g. dbos.")
@click.option("--db", metavar="URL", default=None, help="The engine's database (also REELFORGE_DB).")
@click.option("--id", "worker_id", metavar="ID", default=None,
              help="This worker's stable id (default HOST-PID; give each worker its own, kept across restarts).")
@click.option("--slots", type=click.IntRange(min=1), default=None,
              help="Backend calls (renders) at once across all workers: the sum of your ComfyUI "
                   "servers' slots (default 4; also REELFORGE_SLOTS).")
@click.option("--films", type=click.IntRange(min=1), default=4, show_default=True,
              help="Films this worker runs at once.")
@click.option("--lease", type=click.FloatRange(min=1), default=15.0, show_default=True,
              help="Seconds a silent worker is trusted; then another recovers its work.")
@click.option("--cpus", type=click.IntRange(min=1), default=None,
              help="Pieces of local work (stills, Ken Burns clips, local voices) this worker makes at "
                   "once, over all its films (default: the host's CPU count; workers sharing a host "
                   "should split its CPUs).")
@_output_dir_option
def worker(engine: str | None, db: str | None, worker_id: str | None, slots: int | None, films: int,
           lease: float, cpus: int | None, output_dir: Path | None, config_path: Path | None) -> None:
    """Run one worker of an engine that has them: films handed over by `reelforge run
    --engine NAME` run here. Start as many as you like, on any hosts that share the
    sessions folder (at the same path) and the database. See docs/dbos.md."""
    from reelforge.engine.plugins import get_engine_class, load_plugins

    config = _load_config(config_path)
    output_dir = _resolve_output_dir(output_dir, config)
    name = engine or os.environ.get("REELFORGE_ENGINE") or config.engine or "local"
    instance = get_engine_class(name, load_plugins()).cls(**({"db": db} if db else {}))
    slots = slots or int(os.environ.get("REELFORGE_SLOTS") or 4)
    sys.exit(instance.work(Path(output_dir).resolve(), worker_id=worker_id, slots=slots, films=films,
                           lease=lease, **({"cpus": cpus} if cpus else {})))


# -- the creator's loop: redo, edit, takes, use, approve ---------------------------------


_STAGE_CHOICE = click.Choice(["image", "narration", "video"])


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
    from reelforge.engine.runner import Interrupted
    from reelforge.redact import for_terminal

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
    if result.status == "HANDED_OFF":
        click.echo(f"Session {result.session_id} is with the workers; see how it goes with:\n"
                   f"  reelforge sessions view {result.session_id}")
        return
    if result.status == "AWAITING_REVIEW":
        click.echo(f"Session {result.session_id} AWAITING REVIEW: the images are ready in {result.path / 'images'}")
        click.echo(f"Look at them (reelforge report {result.session_id} writes a page with the pictures), "
                   f"redo any with "
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


# -- plugins ------------------------------------------------------------------------


# -- looking at a session: export, report, serve (reelforge/export.py, report.py, web/) ---


# The commands kept in this package's other modules join the group as they are imported.
from reelforge.cli import cast, creator, looks, outputs, sessions, shotviews  # noqa: E402,F401


def main() -> None:
    cli(prog_name="reelforge")
