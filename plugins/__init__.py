"""reelforge's built-in plugins (import name ``reelforge.plugins``). Each is registered
exactly like a third-party plugin, through the ``reelforge`` entry points in
pyproject.toml; the core imports none of them."""
