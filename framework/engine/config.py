"""reelforge.toml: default backends, per-backend options and plugin settings.

    output_dir = "output"
    story_llm = "ollama"          # default backends
    image_gen = "storyboard"
    renderer = "comfyui"
    transition = "cut"
    engine = "local"              # what schedules the shots (reelforge engines)
    continuity = "last-frame"     # new sessions: a scene's clips follow each other's last frame

    [backends.comfyui]            # options of every backend named comfyui
    urls = ["http://gpu1:8188", "http://gpu2:8188"]

    [backends.image]              # options of whichever image generator is selected
    width = 960

    [plugins]
    disable = ["some_plugin"]

Command-line options override the file. Secrets never go in it: options marked secret are
refused here and read from the environment variables their backends name.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import attrs

from reelforge.engine.plugins import KINDS, backends
from reelforge.errors import ConfigError
from reelforge.options import structure_options

CONFIG_NAME = "reelforge.toml"
#: Top-level keys naming the default backend of each kind.
BACKEND_KEYS = {"story_llm": "story", "image_gen": "image", "renderer": "video", "narrator": "narration"}
_TOP_KEYS = {"output_dir", "transition", "engine", "continuity", "backends", "plugins", *BACKEND_KEYS}


@attrs.frozen
class Config:
    path: Path | None = None
    "The file read, or None when there is none."
    output_dir: str | None = None
    "Where sessions live."
    backends: dict[str, str] = attrs.Factory(dict)
    "Default backend per kind (story, image, video)."
    transition: str | None = None
    "How clips are joined."
    engine: str | None = None
    "The engine that schedules the shots."
    continuity: str | None = None
    "How the clips of a scene follow each other (none, last-frame); None: as the session recorded."
    options: dict[str, dict[str, Any]] = attrs.Factory(dict)
    "[backends.NAME] tables: scope (backend name or kind) -> options."
    disable: tuple[str, ...] = ()
    "Plugins not to load."


def find_config(explicit: str | os.PathLike | None) -> Path | None:
    """``--config PATH`` (must exist), else ./reelforge.toml if present."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    default = Path.cwd() / CONFIG_NAME
    return default if default.is_file() else None


def load_config(explicit: str | os.PathLike | None = None) -> Config:
    path = find_config(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses per nesting level of arrays and inline tables
        raise ConfigError(f"{path}: not valid here: arrays or inline tables are nested too "
                          f"deeply to read") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} (valid: {', '.join(sorted(_TOP_KEYS))})")

    def string(key: str, table: dict, where: str) -> str | None:
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: {where}{key} must be a string, got {value!r}")
        return value

    chosen = {kind: string(key, data, "") for key, kind in BACKEND_KEYS.items()}
    plugins_table = data.get("plugins", {})
    if not isinstance(plugins_table, dict):
        raise ConfigError(f"{path}: [plugins] must be a table")
    for key in plugins_table:
        if key != "disable":
            raise ConfigError(f"{path}: [plugins] has no key {key!r} (valid: disable)")
    disable = plugins_table.get("disable", [])
    if not isinstance(disable, list) or not all(isinstance(d, str) for d in disable):
        raise ConfigError(f"{path}: [plugins] disable must be a list of plugin names")
    tables = data.get("backends", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"{path}: [backends] must hold one table per backend, e.g. [backends.comfyui]")
    return Config(path=path, output_dir=string("output_dir", data, ""),
                  backends={k: v for k, v in chosen.items() if v},
                  transition=string("transition", data, ""),
                  engine=string("engine", data, ""), continuity=_continuity(path, string("continuity", data, "")),
                  options=tables, disable=tuple(disable))


def _continuity(path: Path, value: str | None) -> str | None:
    from reelforge.engine.continuity import MODES

    if value is not None and value not in MODES:
        raise ConfigError(f"{path}: continuity must be one of {', '.join(MODES)}, got {value!r}")
    return value


def check_backend_tables(config: Config) -> None:
    """Check every [backends.X] table against the installed backends named X (or of kind X):
    an unknown table, key or value is a ConfigError naming the file, the table and the key;
    a secret option in the file is refused."""
    installed: dict[str, list[type]] = {}
    for kind in KINDS:
        for reg in backends(kind).values():
            installed.setdefault(reg.name, []).append(reg.cls)
            installed.setdefault(kind, []).append(reg.cls)
    for scope, table in config.options.items():
        where = f"{config.path}: [backends.{scope}]"
        if scope not in installed:
            raise ConfigError(f"{where}: no installed backend is named {scope!r} "
                              f"(installed: {', '.join(sorted(n for n in installed if n not in KINDS))})")
        option_classes = [c.Options for c in installed[scope] if attrs.has(getattr(c, "Options", None))]
        for key, value in table.items():
            owners = [o for o in option_classes if key in attrs.fields_dict(o)]
            if not owners:
                valid = sorted({f for o in option_classes for f in attrs.fields_dict(o)})
                raise ConfigError(f"{where}: unknown key {key!r} (valid: {', '.join(valid) or 'none'})")
            for opt_cls in owners:
                if attrs.fields_dict(opt_cls)[key].metadata.get("secret"):
                    raise ConfigError(f"{where}: {key!r} is a secret; set it in the environment, "
                                      f"not in the config file")
                structure_options(opt_cls, {key: value}, what=where) \
                    if _all_defaults_ok(opt_cls) else None


def _all_defaults_ok(opt_cls: type) -> bool:
    """Whether the Options class can be built from one key alone (all other fields default)."""
    return all(f.default is not attrs.NOTHING for f in attrs.fields(opt_cls))
