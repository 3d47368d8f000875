"""What a person looks at in a browser or hands on: ``reelforge serve`` (web.app,
web.server), ``reelforge report`` (web.report), ``reelforge export`` (web.export) and the
plain data they share (web.creator).

May import: reelforge.store, reelforge.engine (for actions: redo, use a take, approve),
reelforge.media and the leaf modules. Never reelforge.cli."""
