"""The plugin manager: loads built-in and installed plugins and keeps the backend registry."""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from typing import Any

import attrs
import pluggy

from reelforge import hookspecs
from reelforge.errors import ConfigError

#: The distribution whose entry points are the built-in plugins: they always load, found
#: through the same entry points as third-party plugins (the core imports none of them).
BUILTIN_DISTRIBUTION = "reelforge"
#: Parts of the core that are plugins themselves (name -> module): the built-in engines.
CORE_PLUGINS: dict[str, str] = {"_reelforge_engines": "reelforge.engine.local"}

#: The three backend kinds: stage key -> (registration hook, what the user calls it)
KINDS: dict[str, tuple[str, str]] = {
    "story": ("register_story_llms", "story LLM"),
    "image": ("register_image_generators", "image generator"),
    "video": ("register_renderers", "renderer"),
    "narration": ("register_narrators", "narrator"),
}

ENTRY_POINT_GROUP = "reelforge"

def new_plugin_manager() -> pluggy.PluginManager:
    """An empty plugin manager with reelforge's hookspecs."""
    manager = pluggy.PluginManager("reelforge")
    manager.add_hookspecs(hookspecs)
    return manager


#: The process-wide plugin manager the CLI and Runner use.
pm = new_plugin_manager()

_loaded = False
# Names disable() blocked before the plugins were loaded: checked against what exists then.
_disabled_early: set[str] = set()

# The manager of the run in progress, so a backend built by a Runner with its own manager
# (e.g. one wrapping another backend) looks names up where the Runner does.
_active: contextvars.ContextVar[pluggy.PluginManager | None] = contextvars.ContextVar(
    "reelforge_plugin_manager", default=None)


@contextlib.contextmanager
def active_manager(manager: pluggy.PluginManager):
    """Make ``manager`` the one that backends(), get_backend_class() and plugin_info() use
    when given none, for the duration of the block."""
    token = _active.set(manager)
    try:
        yield manager
    finally:
        _active.reset(token)


def current_manager() -> pluggy.PluginManager:
    """The plugin manager of the run in progress, else the process-wide one."""
    return _active.get() or pm


def _env_list(name: str) -> list[str]:
    return [n.strip() for n in os.environ.get(name, "").split(",") if n.strip()]


def load_plugins(into: pluggy.PluginManager | None = None) -> pluggy.PluginManager:
    """Load built-in plugins and installed ones (entry-point group ``reelforge``) into the
    process-wide manager, once (or into ``into``, e.g. a fresh manager in a test).

    ``REELFORGE_LOAD_PLUGINS`` (a comma list of entry-point names, possibly empty) limits
    which *installed* plugins load; built-ins always load. A plugin that fails to import is
    skipped with a warning naming it. ``REELFORGE_PLUGINS`` (a comma list of module names)
    registers plugin modules that are not installed, e.g. while developing one.
    ``REELFORGE_DISABLE_PLUGINS`` (a comma list of plugin names) blocks plugins, built-ins
    included.
    """
    import importlib.metadata  # not at the top: it costs more than the rest of `reelforge --help`

    global _loaded
    if into is None:
        if _loaded:
            return pm
        _loaded = True
    manager = into or pm
    for name in _env_list("REELFORGE_DISABLE_PLUGINS"):
        manager.set_blocked(name)
    for name, module_name in CORE_PLUGINS.items():
        if manager.get_plugin(name) is None:
            manager.register(importlib.import_module(module_name), name=name)
    allowed = os.environ.get("REELFORGE_LOAD_PLUGINS")
    allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    builtin_names = {ep.name for ep in entry_points if _is_builtin(ep)}
    for ep in entry_points:
        if manager.get_plugin(ep.name) is not None or manager.is_blocked(ep.name):
            continue
        if allow is not None and ep.name not in allow and ep.name not in builtin_names:
            continue
        if ep.name in builtin_names:  # ours: a failure to import is a broken install, said loudly
            manager.register(ep.load(), name=ep.name)
            continue
        try:
            plugin = ep.load()
            manager.register(plugin, name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not take the CLI down
            warnings.warn(f"reelforge: skipped plugin {ep.name!r} ({ep.value}): {exc}", stacklevel=2)
    # Plugin modules named directly (like pytest's -p): for local development and tests.
    for module_name in _env_list("REELFORGE_PLUGINS"):
        if manager.get_plugin(module_name) is None and not manager.is_blocked(module_name):
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                warnings.warn(f"reelforge: skipped plugin module {module_name!r} from REELFORGE_PLUGINS: "
                              f"{exc}", stacklevel=2)
                continue
            if manager.is_registered(module):  # a built-in or an installed plugin: loaded already
                warnings.warn(f"reelforge: REELFORGE_PLUGINS names {module_name!r}, which is already "
                              f"loaded as plugin {manager.get_name(module)!r}; ignored", stacklevel=2)
                continue
            try:
                manager.register(module, name=module_name)
            except ValueError as exc:  # pluggy refuses it (e.g. a hookimpl of a blocked name)
                warnings.warn(f"reelforge: skipped plugin module {module_name!r} from REELFORGE_PLUGINS: "
                              f"{exc}", stacklevel=2)
    if into is None and _disabled_early:
        known = builtin_names | {ep.name for ep in entry_points} | set(_env_list("REELFORGE_PLUGINS"))
        for name in sorted(_disabled_early - known):
            warnings.warn(f"reelforge: cannot disable plugin {name!r}: no plugin has that name", stacklevel=2)
        _disabled_early.clear()
    manager.check_pending()
    return manager


def _is_builtin(ep) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and (dist.metadata["Name"] or "").lower() == BUILTIN_DISTRIBUTION


def disable(names) -> None:
    """Unregister and block plugins by name (``[plugins] disable`` in reelforge.toml, or
    ``REELFORGE_DISABLE_PLUGINS``). Unknown names are warned about, not fatal (when the
    plugins load, if they have not yet: the commands that need no plugin load none)."""
    for name in names:
        if not _loaded:
            _disabled_early.add(name)
        elif pm.get_plugin(name) is None and not pm.is_blocked(name):
            warnings.warn(f"reelforge: cannot disable plugin {name!r}: no plugin has that name", stacklevel=2)
        pm.set_blocked(name)


@attrs.frozen
class Registered:
    name: str
    "The name users select it by."
    cls: type
    "The backend class."
    plugin: str
    "Name of the plugin that registered it."


def backends(kind: str, manager: pluggy.PluginManager | None = None) -> dict[str, Registered]:
    """All backends of ``kind`` ('story', 'image' or 'video'), by name. Two plugins
    registering one name is a ConfigError naming both."""
    hook_name, label = KINDS[kind]
    return _registered(hook_name, label, manager)


def _registered(hook_name: str, label: str, manager: pluggy.PluginManager | None) -> dict[str, Registered]:
    found: dict[str, Registered] = {}
    hook = getattr((manager or current_manager()).hook, hook_name)
    for impl in hook.get_hookimpls():
        def register(cls: type, name: str | None = None, _plugin: str = impl.plugin_name) -> None:
            key = name or getattr(cls, "name", None)
            if not key:
                raise ConfigError(f"plugin {_plugin!r} registered a {label} without a name")
            if key in found and found[key].cls is not cls:
                raise ConfigError(
                    f"two plugins register {label}s named {key!r}: "
                    f"{found[key].plugin!r} and {_plugin!r}; uninstall or block one of them"
                )
            found[key] = Registered(key, cls, _plugin)

        impl.function(register=register)
    return found


def engines(manager: pluggy.PluginManager | None = None) -> dict[str, Registered]:
    """All engines, by name (the ``register_engines`` hook)."""
    return _registered("register_engines", "engine", manager)


def get_engine_class(name: str, manager: pluggy.PluginManager | None = None) -> Registered:
    """Look up an engine by name; an unknown name lists what is installed."""
    available = engines(manager)
    if name not in available:
        raise ConfigError(f"unknown engine {name!r}; installed: {', '.join(sorted(available)) or 'none'}")
    return available[name]


def get_backend_class(kind: str, name: str, manager: pluggy.PluginManager | None = None) -> Registered:
    """Look up a backend by name; an unknown name lists what is installed. Called while a
    Runner builds its backends (e.g. from a backend's ``__init__``), it searches that
    Runner's plugin manager."""
    available = backends(kind, manager)
    if name not in available:
        label = KINDS[kind][1]
        names = ", ".join(sorted(available)) or "none"
        raise ConfigError(f"unknown {label} {name!r}; installed: {names}")
    return available[name]


def plugin_info(manager: pluggy.PluginManager | None = None) -> list[dict[str, Any]]:
    """What `reelforge plugins` prints: each plugin, its version, hooks, backends and the
    commands it adds."""
    import importlib.metadata

    dists = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                dists[ep.name] = (dist.metadata["Name"], dist.version)
    by_plugin: dict[str, dict[str, list[str]]] = {}
    for kind in KINDS:
        for reg in backends(kind, manager).values():
            by_plugin.setdefault(reg.plugin, {}).setdefault(kind, []).append(reg.name)
    info = []
    manager = manager or current_manager()
    commands = plugin_commands(manager)
    for name, plugin in manager.list_name_plugin():
        if name is None or plugin is None or name.startswith("_"):
            continue
        hooks = sorted(c.name for c in manager.get_hookcallers(plugin) or [])
        dist_name, version = dists.get(name, (None, None))
        info.append({
            "name": name,
            "module": getattr(plugin, "__name__", type(plugin).__name__),
            "distribution": dist_name,
            "version": version,
            "hooks": hooks,
            "backends": {k: sorted(v) for k, v in by_plugin.get(name, {}).items()},
            "commands": commands.get(name, []),
        })
    return info


def plugin_commands(manager: pluggy.PluginManager | None = None) -> dict[str, list[str]]:
    """The commands each plugin adds through ``register_commands``: plugin name -> command
    names. Each hook is called on a scratch group, so the real one is left as it is."""
    import click

    found: dict[str, list[str]] = {}
    for impl in (manager or current_manager()).hook.register_commands.get_hookimpls():
        group = click.Group()
        try:
            impl.function(cli=group)
        except Exception as exc:  # listing must not fail on one broken plugin
            warnings.warn(f"reelforge: plugin {impl.plugin_name!r} failed to add its commands: {exc}",
                          stacklevel=2)
            continue
        found.setdefault(impl.plugin_name, []).extend(sorted(group.commands))
    return found


# -- the keys a session's pages must never show ------------------------------------------

def is_key_env_field(field: attrs.Attribute) -> bool:
    """Whether an Options field names the environment variable a backend reads its key
    from (llm's ``key_env_var``): marked ``{"key_env": True}``, or named ``key_env`` or
    ``*_key_env`` (``api_key_env``)."""
    return bool(field.metadata.get("key_env")) or field.name == "key_env" or field.name.endswith("_key_env")


def key_env_vars(recorded: dict[str, Any] | None = None, manager: pluggy.PluginManager | None = None) -> set[str]:
    """The environment variables that may hold a backend's key: those every registered
    backend names (a class's ``key_env_vars`` and its key-env options' defaults) and those a
    session's recorded backend options name (``recorded``: kind -> BackendChoice)."""
    names: set[str] = set()
    classes: dict[str, type] = {}
    for kind in KINDS:
        try:
            found = backends(kind, manager)
        except ConfigError:  # two plugins claim a name: what each names is still known below
            continue
        for reg in found.values():
            classes.setdefault(f"{kind}:{reg.name}", reg.cls)
            names.update(n for n in getattr(reg.cls, "key_env_vars", ()) or () if isinstance(n, str))
            opt_cls = getattr(reg.cls, "Options", None)
            if opt_cls is not None and attrs.has(opt_cls):
                names.update(f.default for f in attrs.fields(opt_cls)
                             if is_key_env_field(f) and isinstance(f.default, str))
    for kind, choice in (recorded or {}).items():
        options = getattr(choice, "options", None)
        if not isinstance(options, dict):
            continue
        opt_cls = getattr(classes.get(f"{kind}:{getattr(choice, 'name', '')}"), "Options", None)
        fields = attrs.fields_dict(opt_cls) if opt_cls is not None and attrs.has(opt_cls) else {}
        for key, value in options.items():
            field = fields.get(key)
            marked = is_key_env_field(field) if field is not None else (key == "key_env" or key.endswith("_key_env"))
            if marked and isinstance(value, str):
                names.add(value)
    names.discard("")
    return names


def learn_secrets(meta: Any = None) -> None:
    """Register as secrets the keys the environment holds for the backends ``meta`` (a
    session's Meta) recorded, and for every registered backend once plugins are loaded,
    so what shows a session without running it (report, serve, export) masks a key an
    older reelforge saved in it. A session records each backend's options in full, so
    ``api_key_env`` is there even at its default: report and export load no plugin for it."""
    from reelforge.redact import register_env_secrets

    # No plugin is loaded for this (report and export stay fast): the recorded options say it.
    register_env_secrets(sorted(key_env_vars(getattr(meta, "backends", None))))
