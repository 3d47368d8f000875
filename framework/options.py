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
from .records import converter
from .redact import redact


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
        raise ConfigError(f"{what}: bad option value: {describe_option_errors(exc, data, hints)}") from exc


_TYPE_WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}


def _type_word(tp: Any) -> str:
    if tp in _TYPE_WORDS:
        return _TYPE_WORDS[tp]
    args = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis]
    if _is_sequence(tp):
        return f"a comma list of {_type_word(args[0]) if args else 'values'}"
    if len(args) == 1:  # Optional[X]
        return _type_word(args[0])
    return "a value of the right type"


def _shown(value: Any) -> str:
    text = repr(value)
    return redact(text if len(text) <= 60 else text[:60] + "…")


def describe_option_errors(exc: BaseException, data: dict[str, Any], hints: dict[str, Any]) -> str:
    """One readable clause per bad option, in the words a user typed them: ``width must be
    from 64 to 8192, got 20000`` (a validator's own message) or ``option 'fps': expected a
    number, got 'fast'`` (a value of the wrong type). No cattrs wording, paths or classes."""
    import cattrs

    if not isinstance(exc, cattrs.ClassValidationError):
        return redact(str(exc)) or type(exc).__name__
    clauses = []
    with_notes, without_notes = exc.group_exceptions()
    for _sub, note in with_notes:
        name = getattr(note, "name", str(note))
        tp = hints.get(name, getattr(note, "type", None))
        clauses.append(f"option {name!r}: expected {_type_word(tp)}, got {_shown(data.get(name))}")
    for sub in without_notes:
        # attrs validators and __attrs_post_init__ checks: their message names the option
        message = sub.args[0] if sub.args and isinstance(sub.args[0], str) else str(sub)
        clauses.append(redact(message))
    return "; ".join(clauses) or "invalid options"


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
