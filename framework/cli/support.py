"""Helpers of the ``reelforge`` commands, imported when a command runs rather than with
:mod:`reelforge.cli.core`, so that `reelforge --help` loads (and, without a bytecode cache,
compiles) less: session ids and prefixes, the prompts, session summaries, and the option
listings of `reelforge backends` and `reelforge plugins --options`."""

from __future__ import annotations

import sys
from typing import Any

import click

from reelforge.store.listing import EMPTY, UNREADABLE, describe_session, folder_size, resolve_session_id


def flag_help(targets: list[tuple[str, str, bool, type]]) -> str:
    """A backend flag's help: the docstring of the option it sets, and whose option it is."""
    from reelforge.options import field_docs

    doc = next((d for _, field, _, cls in targets if (d := field_docs(cls).get(field))), "")
    owners = ", ".join(sorted({f"{name} option {field}" for name, field, _, _ in targets}))
    names = ", ".join(sorted({name for name, _, _, _ in targets}))
    return f"{doc} [{owners}]" if doc else f"Option of {names}."


def same_idea(a: str, b: str) -> bool:
    """Whether two ideas are the same, ignoring case and spacing."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def read_line(prompt: str, no_input: str) -> str:
    """With no terminal: print ``prompt``, read one line from stdin and echo it (so a log
    shows the answer). At end of input fail with ``no_input`` instead of hanging or guessing."""
    click.echo(prompt, nl=False)
    try:
        line = sys.stdin.readline() if sys.stdin is not None else ""
    except KeyboardInterrupt:
        raise click.Abort() from None  # as click's own prompts: one line, exit 130 (cli.core)
    if not line:
        click.echo()
        raise click.UsageError(no_input)
    line = line.strip()
    from reelforge.redact import for_terminal

    click.echo(for_terminal(line, newlines=False))
    return line


def ask_yes_no(question: str, *, default: bool, no_input: str) -> bool:
    if interactive():
        return click.confirm(question, default=default)
    reply = read_line(f"{question} {'[Y/n]' if default else '[y/N]'}: ", no_input).lower()
    if reply in ("y", "yes") or (reply == "" and default):
        return True
    if reply in ("n", "no") or reply == "":
        return False
    raise click.UsageError(f"answer y or n, not {reply!r}")


def ask_continue(session_id: str) -> bool:
    """Ask `Continue? [Y/n]` (see read_line for what happens with no terminal)."""
    return ask_yes_no("Continue?", default=True, no_input=(
        f"incomplete session {session_id} found and no answer on standard input; "
        f"pass --resume to continue it or --new to start a new session"))


def status_choices() -> tuple[str, ...]:
    from reelforge.store.meta import STATUSES

    return (*STATUSES, EMPTY, UNREADABLE)


def parse_statuses(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> set[str]:
    choices = status_choices()
    picked = set()
    for value in values:
        status = "_".join(value.replace("-", " ").split()).upper()
        if status not in choices:
            raise click.BadParameter(f"{value!r} is not a status; use one of {', '.join(choices)}",
                                     ctx=ctx, param=param)
        picked.add(status)
    return picked


def human_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


def backend_description(reg) -> str:
    """A backend's one-line description: its ``description``, else its docstring's first
    paragraph."""
    import inspect

    text = getattr(reg.cls, "description", None)
    if not isinstance(text, str) or not text:
        cls = reg.cls if isinstance(reg.cls, type) else type(reg.cls)
        text = (inspect.getdoc(cls) or "").split("\n\n")[0]
    from reelforge.redact import for_terminal

    return for_terminal(" ".join(text.split()), newlines=False)


def option_infos(reg):
    from reelforge.options import describe_options

    return describe_options(getattr(reg.cls, "Options", None))


def options_json(reg) -> list[dict[str, Any]]:
    import attrs

    return [attrs.asdict(o) for o in option_infos(reg)]


def wrap(text: str, indent: int, width: int) -> str:
    import textwrap

    return textwrap.fill(text, width=max(40, width), initial_indent=" " * indent,
                         subsequent_indent=" " * indent)


def option_lines(reg, *, indent: int, width: int) -> list[str]:
    """Each option as ``KEY (TYPE; default X; ALLOWED; flag --F)`` and its docstring under it."""
    import textwrap

    from reelforge.redact import for_terminal

    lines = []
    for o in option_infos(reg):
        facts = [o.type, f"default {o.default}"]
        if o.allowed:
            facts.append(o.allowed)
        if o.flag:
            facts.append(f"flag {o.flag}")
        if o.secret:
            facts.append("secret: not saved, not allowed in reelforge.toml")
        head = for_terminal(f"{o.name} ({'; '.join(facts)})", newlines=False)
        lines.append(textwrap.fill(head, width=max(40, width), initial_indent=" " * (indent + 2),
                                   subsequent_indent=" " * (indent + 6)))
        if o.doc:
            lines.append(wrap(for_terminal(o.doc, newlines=False), indent + 6, width))
    return lines


def remove_session(store, session_id: str, *, yes: bool) -> None:
    """`reelforge sessions rm`: remove a session folder (after asking, unless ``yes``) while
    holding its lock; refuse a linked folder; never follow a link inside it."""
    import os
    import shutil
    import stat

    from reelforge.errors import SessionError, SessionNotFoundError
    from reelforge.store.session import Session

    sid = resolve_session_id(store, session_id)
    path = store.path_for(sid)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise SessionNotFoundError(f"no session {sid!r} in {store.root}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SessionError(f"{path} is a symbolic link: reelforge removes no files through links "
                           f"(remove the link itself if it is yours)")
    if not stat.S_ISDIR(st.st_mode):
        raise SessionError(f"{path} is not a session folder")
    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - not on Linux
        raise SessionError("this platform's shutil.rmtree may follow links; remove the folder by hand")
    session = Session(store, sid)
    session.lock()  # refused while a run has it; held until the folder is gone
    try:
        files, size = folder_size(path)
        click.echo(f"{describe_session(store, sid)}\n  {plural(files, 'file')}, {human_size(size)} in {path}")
        if not yes and not ask_yes_no(f"Remove session {sid} and all its files?", default=False,
                                      no_input=f"no answer on standard input; pass --yes to remove {sid}"):
            click.echo("Nothing removed.")
            return
        shutil.rmtree(path)  # refuses a linked root; removes links inside without following them
    finally:
        session.close()
    click.echo(f"Removed session {sid}.")


def show_backends(name: str | None, *, as_json: bool, width: int, flags: dict[str, str]) -> None:
    """`reelforge backends [NAME]`: every backend, or NAME's options in full."""
    import json

    from reelforge.engine.plugins import KINDS, backends, load_plugins

    load_plugins()
    found = [(kind, reg) for kind in KINDS for reg in backends(kind).values()]
    if name is not None:
        chosen = [(kind, reg) for kind, reg in found if reg.name == name]
        if not chosen:
            installed = ", ".join(sorted({reg.name for _, reg in found})) or "none"
            raise click.UsageError(f"no backend is named {name!r}; installed: {installed}")
        found = chosen
    if as_json:
        click.echo(json.dumps([{"kind": kind, "name": reg.name, "plugin": reg.plugin,
                                "description": backend_description(reg), "options": options_json(reg)}
                               for kind, reg in found], indent=2))
        return
    if name is None:
        for kind, reg in found:
            click.echo(f"{KINDS[kind][1]:<16} {reg.name:<12} {backend_description(reg)}")
        click.echo("\nOptions of one: reelforge backends NAME (all of them: reelforge plugins --options)")
        return
    for i, (kind, reg) in enumerate(found):
        flag = flags.get(kind, f"--{kind}")
        if i:
            click.echo()
        click.echo(f"{reg.name}: {KINDS[kind][1]} (plugin {reg.plugin}; select with {flag} {reg.name})")
        if backend_description(reg):
            click.echo(wrap(backend_description(reg), 2, width))
        lines = option_lines(reg, indent=2, width=width)
        if lines:
            click.echo(f"  Options (-o {reg.name}.KEY=VALUE, or [backends.{reg.name}] in reelforge.toml):")
            click.echo("\n".join(lines))
        else:
            click.echo("  No options.")
