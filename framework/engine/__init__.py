"""The engine: the Runner facade, the units of work (an LLM step, one shot stage for one
shot, the film), fingerprints, retry, backends and their options, reelforge.toml, the plugin
manager, and the engines that schedule the shots behind one interface (base.Engine; local).

May import: reelforge.store, reelforge.media and the leaf modules. Never reelforge.cli or
reelforge.web, and never a built-in plugin by module (they load through entry points)."""
