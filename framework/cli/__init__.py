"""The ``reelforge`` command line: the group, `run` and `resume` and what all commands share
(cli.core), the creator's loop (cli.creator), `sessions` (cli.sessions), export, report,
serve, plugins and backends (cli.outputs), their helpers (cli.support), live progress
(cli.progress) and the text views of sessions (cli.views).

May import anything in reelforge; nothing in reelforge imports it. Heavy modules load inside
commands so that ``reelforge --help`` stays fast and loads no plugin."""

from reelforge.cli.core import cli, main

__all__ = ["cli", "main"]
