"""The ``reelforge`` command line."""

from reelforge.cli.core import cli, main

__all__ = ["cli", "main"]
