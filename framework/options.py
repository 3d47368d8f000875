"""Backend options: ``-o key=value`` pairs, config tables and CLI flags structured (cattrs)
into each backend's attrs ``Options`` class.

A backend declares its options as an attrs class; field metadata may add:

- ``{"secret": True}``: never written to the session meta or logs;
- ``{"cli": "--comfy-url"}``: also settable by that flag on ``reelforge run``/``resume``
  (repeatable when the field is a tuple).
"""

from __future__ import annotations

import typing
from typing import Any, Iterable

import attrs

from .errors import ConfigError
from .records import describe_errors, converter


def parse_pairs(pairs: Iterable[str]) -> list[tuple[str | None, str, str]]:
    """``["seed=3", "comfyui.url=http://x"]`` -> ``[(None, "seed", "3"), ("comfyui", "url", "http://x")]``."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"option {pair!r} is not of the form key=value")
        scope, dot, field = key.rpartition(".")
        out.append((scope if dot else None, field, value))
    return out


def _is_sequence(tp: Any) -> bool:
    return typing.get_origin(tp) in (tuple, list)


def field_names(cls: type) -> list[str]:
    return [f.name for f in attrs.fields(cls)] if attrs.has(cls) else []


def structure_options(cls: type, raw: dict[str, Any], *, what: str) -> Any:
    """Structure ``raw`` into ``cls``. Comma-separated strings fill tuple fields. A bad key or
    value raises ConfigError naming it (``what`` says whose options these are)."""
    if not attrs.has(cls):
        raise ConfigError(f"{what}: Options must be an attrs class")
    hints = typing.get_type_hints(cls)
    known = set(field_names(cls))
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            valid = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"{what} has no option {key!r} (valid: {valid})")
        if _is_sequence(hints.get(key)) and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        data[key] = value
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        raise ConfigError(f"{what}: bad option value: {describe_errors(exc, 'options')}") from exc


def public_options(options: Any) -> dict[str, Any]:
    """The options as JSON-ready data, without fields marked secret."""
    if options is None or not attrs.has(type(options)):
        return {}
    data = converter.unstructure(options)
    for f in attrs.fields(type(options)):
        if f.metadata.get("secret"):
            data.pop(f.name, None)
    return data


def cli_flags(cls: type) -> dict[str, tuple[str, bool]]:
    """Flags an Options class asks for: ``{"--comfy-url": ("urls", multiple)}``."""
    flags = {}
    if attrs.has(cls):
        hints = typing.get_type_hints(cls)
        for f in attrs.fields(cls):
            flag = f.metadata.get("cli")
            if flag:
                flags[flag] = (f.name, _is_sequence(hints.get(f.name)))
    return flags
