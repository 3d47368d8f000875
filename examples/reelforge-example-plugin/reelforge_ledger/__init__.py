"""An example reelforge plugin distribution: a per-shot ledger (``ledger.csv`` in each
session folder) and the ``vignette`` image generator, which builds on another one."""

__version__ = "0.1.0"
