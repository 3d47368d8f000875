"""Backend options: ``-o key=value`` pairs, config tables and CLI flags structured (cattrs)
into each backend's attrs ``Options`` class, and described for people (`reelforge backends`).

A backend declares its options as an attrs class, with a docstring (a string literal) under
each field; field metadata may add:

- ``{"secret": True}``: never written to the session meta or logs;
- ``{"cli": "--comfy-url"}``: also settable by that flag on ``reelforge run``/``resume``
  (repeatable when the field is a tuple);
- ``{"doc": "..."}``: the field's description, where there is no source to read it from
  (a class made with ``attrs.make_class``); otherwise the docstring under the field is used.
"""

from __future__ import annotations

import functools
import typing
from typing import Any, Iterable

import attrs

from reelforge.errors import ConfigError
from reelforge.records import converter, describe_errors
from reelforge.redact import redact


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
    return [f.name for f in attrs.fields(cls) if f.init] if attrs.has(cls) else []


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a name only the defining function knew: fall back to the raw annotation
        return {f.name: f.type for f in attrs.fields(cls)}


# -- describing options ----------------------------------------------------------------

@attrs.frozen
class OptionInfo:
    """One option of a backend, as `reelforge backends NAME` shows it."""

    name: str
    "The key, as in ``-o NAME.KEY=VALUE`` and ``[backends.NAME]``."
    type: str
    "Its type in short: int, float, str, bool, list of str, ..."
    default: str
    "The default, as it would be written on the command line; '(required)' if none."
    doc: str
    "The docstring under the field (whitespace collapsed), or '' if it has none."
    allowed: str = ""
    "What values its validators accept, in words (e.g. 'from 1 to 120'), if that is known."
    flag: str | None = None
    "The ``reelforge run`` flag that also sets it, if any."
    secret: bool = False
    "Read from the environment and never saved: not settable in reelforge.toml."


def type_name(tp: Any) -> str:
    """A short name for an option's type: int, float, str, bool, list of str, int or none."""
    if tp is None or tp is type(None):
        return "none"
    if isinstance(tp, str):
        return tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (tuple, list, set, frozenset):
        inner = [a for a in args if a is not Ellipsis]
        return f"list of {type_name(inner[0])}" if inner else "list"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return " or ".join(type_name(a) for a in args)
    return getattr(tp, "__name__", str(tp))


def _phrase(tp: Any) -> str:
    """The type in words for an error: 'a whole number', 'a number', 'text', ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        real = [a for a in args if a is not type(None)]
        return _phrase(real[0]) if len(real) == 1 else " or ".join(_phrase(a) for a in real)
    if origin in (tuple, list, set, frozenset):
        inner = [a for a in args if a is not Ellipsis]
        return f"a comma list of {_plural(inner[0]) if inner else 'values'}"
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(
        tp, f"a {type_name(tp)}")


def _plural(tp: Any) -> str:
    return {int: "whole numbers", float: "numbers", str: "text items", bool: "true/false values"}.get(
        tp, f"{type_name(tp)} values")


def _validators(validator: Any) -> list[Any]:
    if validator is None:
        return []
    inner = getattr(validator, "_validators", None)  # attrs' and_ (a list of validators)
    if isinstance(inner, (tuple, list)):
        return [v for sub in inner for v in _validators(sub)]
    if type(validator).__name__ == "_OptionalValidator":
        return _validators(getattr(validator, "validator", None))
    return [validator]


def _fmt(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000 \
        else str(value)


def allowed_values(field: attrs.Attribute) -> str:
    """What ``field``'s validators accept, in words ('from 1 to 120', 'at least 16', 'one of
    a, b'), from attrs' own validators (in_, ge, gt, le, lt) and from any validator with an
    ``allowed`` attribute (text such as 'from 1 to 120'); '' for any other validator."""
    lower = upper = None
    words = []
    for v in _validators(field.validator):
        name = type(v).__name__
        own = getattr(v, "allowed", None)  # a validator that says what it accepts (reelforge.limits.between)
        if isinstance(own, str) and own:
            words.append(own)
        elif name == "_InValidator":
            options = getattr(v, "_original_options", getattr(v, "options", ()))
            if isinstance(options, range) and options.step == 1 and len(options):
                words.append(f"from {_fmt(options.start)} to {_fmt(options.stop - 1)}")
            elif isinstance(options, (tuple, list, set, frozenset, range)):
                items = sorted(options, key=str) if isinstance(options, (set, frozenset)) else list(options)
                words.append("one of " + ", ".join(map(str, items)))
        elif name == "_NumberValidator":
            op, bound = getattr(v, "compare_op", None), getattr(v, "bound", None)
            if op in (">=", ">"):
                lower = (op, bound)
            elif op in ("<=", "<"):
                upper = (op, bound)
    if lower and upper and lower[0] == ">=" and upper[0] == "<=":
        words.append(f"from {_fmt(lower[1])} to {_fmt(upper[1])}")
    else:
        names = {">=": "at least", ">": "above", "<=": "at most", "<": "below"}
        words += [f"{names[pair[0]]} {_fmt(pair[1])}" for pair in (lower, upper) if pair]
    return " and ".join(words)


def _requirement(field: attrs.Attribute, tp: Any) -> str:
    """'a whole number from 1 to 120', 'one of a, b', 'a number above 0', 'text'."""
    allowed = allowed_values(field)
    if allowed.startswith("one of"):
        return allowed
    if allowed.startswith(("at least", "at most")):
        return f"{_phrase(tp)} of {allowed}"
    return f"{_phrase(tp)} {allowed}".strip()


def _default_text(field: attrs.Attribute) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "(required)"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            return "(computed)"
        try:
            default = default.factory()
        except Exception:
            return "(computed)"
    return value_text(default)


def value_text(value: Any) -> str:
    """A value as it would be given with ``-o``: comma lists, true/false, '' for empty."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(value_text(v) for v in value) if value else "''"
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


def describe_options(cls: type | None) -> list[OptionInfo]:
    """Every option of an Options class: name, type, default, docstring, allowed values,
    flag. Docstrings come from the class's source (see :func:`field_docs`)."""
    if cls is None or not attrs.has(cls):
        return []
    hints, docs = _hints(cls), field_docs(cls)
    return [OptionInfo(name=f.name, type=type_name(_field_type(f, hints)), default=_default_text(f),
                       doc=docs.get(f.name, ""), allowed=allowed_values(f), flag=f.metadata.get("cli"),
                       secret=bool(f.metadata.get("secret")))
            for f in attrs.fields(cls) if f.init]


def _field_type(field: attrs.Attribute, hints: dict[str, Any]) -> Any:
    """The field's type; for an untyped field (attrs.make_class), its default's type."""
    tp = hints.get(field.name, field.type)
    default = field.default
    if tp is None and default is not attrs.NOTHING and not isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        tp = type(default)
    return tp


def valid_keys(cls: type | None) -> str:
    """``crf (int), fps (int), ...`` for an error message: the keys an Options class takes."""
    if cls is None or not attrs.has(cls):
        return "none"
    return ", ".join(f"{o.name} ({o.type})" for o in sorted(describe_options(cls), key=lambda o: o.name)) \
        or "none"


def valid_keys_of(backends: list[tuple[str, type | None]]) -> str:
    """The keys several backends take, for an error message: ``offline: shots (int), ...;
    kenburns: crf (int), ...`` (no names when there is one Options class)."""
    seen: dict[type | None, str] = {}
    for name, cls in backends:
        seen.setdefault(cls, name)
    if len(seen) == 1:
        return valid_keys(next(iter(seen)))
    return "; ".join(f"{name}: {valid_keys(cls)}" for cls, name in seen.items())


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of an attrs class (a string literal right after the
    field, as in PEP 257's "attribute docstrings"), read from its source with :mod:`ast`,
    base classes included; ``metadata={"doc": ...}`` wins. Whitespace is collapsed."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object and attrs.has(klass):
            docs.update(_class_docs(klass))
    for f in attrs.fields(cls):
        if f.metadata.get("doc"):
            docs[f.name] = " ".join(str(f.metadata["doc"]).split())
    return docs


@functools.lru_cache(maxsize=256)
def _class_docs(klass: type) -> dict[str, str]:
    import ast
    import inspect
    import sys

    module = sys.modules.get(klass.__module__)
    try:
        tree = _module_ast(inspect.getsource(module)) if module is not None else None
    except (OSError, TypeError, SyntaxError):
        return {}
    if tree is None:
        return {}
    own = {f.name for f in attrs.fields(klass) if not f.inherited}
    names = {klass.__name__, klass.__qualname__.rpartition(".")[2]}
    best: dict[str, str] | None = None
    # The class statement with this name and these fields (a class made in a function and
    # renamed afterwards, as the ComfyUI options are, is found by its fields alone).
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        fields, docs = _fields_and_docs(node)
        if fields != own:
            continue
        if node.name in names:
            return docs
        if best is None:
            best = docs
    return best or {}


@functools.lru_cache(maxsize=64)
def _module_ast(source: str):
    import ast

    return ast.parse(source)


def _fields_and_docs(node) -> tuple[set[str], dict[str, str]]:
    import ast

    fields: set[str] = set()
    docs: dict[str, str] = {}
    body = node.body
    for i, stmt in enumerate(body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
        else:
            continue
        if isinstance(stmt, ast.AnnAssign):
            annotation = ast.unparse(stmt.annotation)
            if annotation.startswith(("ClassVar", "typing.ClassVar")):
                continue
            fields.add(name)
        elif isinstance(stmt.value, ast.Call):  # x = attrs.field(...) with no annotation
            fields.add(name)
        # The string literal(s) right after the field: consecutive ones are one docstring
        # (a long one is often written as two literals on two lines).
        parts = []
        for nxt in body[i + 1:]:
            if not (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                break
            parts.append(nxt.value.value)
        if parts:
            docs[name] = " ".join(" ".join(parts).split())
    return fields, docs


# -- structuring -----------------------------------------------------------------------

def structure_options(cls: type, raw: dict[str, Any], *, what: str) -> Any:
    """Structure ``raw`` into ``cls``. Comma-separated strings fill tuple fields. A bad key or
    value raises ConfigError naming it in plain words (``what`` says whose options these
    are), e.g. ``renderer 'kenburns' option fps must be a whole number from 1 to 120, got '0'``."""
    if not attrs.has(cls):
        raise ConfigError(f"{what}: Options must be an attrs class")
    hints = _hints(cls)
    fields = {f.name: f for f in attrs.fields(cls) if f.init}
    data: dict[str, Any] = {}
    for key, value in raw.items():
        field = fields.get(key)
        if field is None:
            raise ConfigError(f"{what} has no option {key!r} (valid: {valid_keys(cls)})")
        tp = _field_type(field, hints)
        if _is_sequence(tp) and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        try:
            value = converter.structure(value, tp) if tp is not None and not isinstance(tp, str) else value
        except Exception:
            raise ConfigError(f"{what} option {key} must be {_requirement(field, tp)}, "
                              f"got {_shown(raw[key])}") from None
        _check_field(field, tp, value, raw[key], what)
        data[field.alias or key] = value
    try:
        return cls(**data)
    except (ValueError, TypeError) as exc:  # a check across fields, or one that needs the instance
        raise ConfigError(f"{what}: {redact(_message(exc))}") from exc
    except Exception as exc:  # pragma: no cover - a class's own __attrs_post_init__ failing oddly
        raise ConfigError(f"{what}: bad options: {describe_errors(exc, 'options')}") from exc


def _check_field(field: attrs.Attribute, tp: Any, value: Any, given: Any, what: str) -> None:
    """Run ``field``'s validators on ``value`` alone, so a failure names the field in words."""
    if field.validator is None:
        return
    try:
        field.validator(None, field, value)
    except (ValueError, TypeError) as exc:
        if allowed_values(field):
            raise ConfigError(f"{what} option {field.name} must be {_requirement(field, tp)}, "
                              f"got {_shown(given)}") from None
        message = redact(_message(exc))
        if message.startswith(f"{field.name} "):  # "fps must be ...": it names the field itself
            raise ConfigError(f"{what} option {message}") from None
        for named in (f"{field.name}: ", f"'{field.name}': "):
            if message.startswith(named):
                message = message[len(named):]
        raise ConfigError(f"{what} option {field.name}: {message}") from None
    except Exception:
        return  # a validator that needs the instance: the class itself runs it below


def _shown(value: Any) -> str:
    """A value the user gave, for an error message: quoted, cut short, secrets masked."""
    text = repr(value)
    return redact(text if len(text) <= 60 else text[:60] + "…")


def _message(exc: BaseException) -> str:
    return exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)


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
        hints = _hints(cls)
        for f in attrs.fields(cls):
            flag = f.metadata.get("cli")
            if flag:
                flags[flag] = (f.name, _is_sequence(hints.get(f.name)))
    return flags
