"""The session store: one folder per session, its meta and journal, the artifact commit
protocol (scratch -> fsync -> journal -> rename), takes, listing, and file operations that
never leave the folder or follow a link.

May import: the leaf modules (reelforge.records, reelforge.errors, reelforge.redact, ...)
and the standard library. Nothing here knows of backends, engines, media or the command line."""
