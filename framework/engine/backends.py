"""Building a run's backends: names chosen by the caller, the session's record or the
defaults; options structured into each backend's ``Options``; secrets registered for
redaction; pre-flight checks; closing."""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import pluggy

from reelforge.engine.plugins import KINDS, active_manager, get_backend_class
from reelforge.errors import ConfigError, ReelforgeError
from reelforge.options import parse_pairs, public_options, structure_options, valid_keys_of
from reelforge.redact import redact, register_secret
from reelforge.store.meta import BackendChoice
from reelforge.store.session import Session

#: The backend of each kind a new session uses unless told otherwise: all offline.
DEFAULT_BACKENDS = {"story": "offline", "image": "storyboard", "video": "kenburns", "narration": "espeak"}
#: Kinds a session may go without: naming "none" skips their stage.
OPTIONAL_KINDS = {"narration"}


@attrs.define
class Backend:
    """One built backend of a run."""

    kind: str
    "story, image, video or narration."
    name: str
    "The name it was selected by."
    instance: Any
    "The backend object."
    options: Any
    "Its structured options (an attrs instance), or None."

    @property
    def public_options(self) -> dict[str, Any]:
        return public_options(self.options)

    @property
    def fingerprint_options(self) -> dict[str, Any]:
        """Options that change the output (fields marked fingerprint=False do not, e.g. URLs)."""
        data = self.public_options
        if attrs.has(type(self.options)):
            for f in attrs.fields(type(self.options)):
                if f.metadata.get("fingerprint") is False:
                    data.pop(f.name, None)
        return data


def collect_options(options) -> dict[str | None, dict[str, Any]]:
    """``-o`` pairs or a mapping, as scope (backend name, kind or None) -> options."""
    if isinstance(options, dict):
        # {"shots": 3} is unscoped, {"kenburns": {"fps": 30}} scoped; both may mix.
        collected: dict[str | None, dict[str, Any]] = {}
        for key, value in options.items():
            if isinstance(value, dict):
                collected.setdefault(key, {}).update(value)
            else:
                collected.setdefault(None, {})[key] = value
        return collected
    collected = {}
    for scope, key, value in parse_pairs(options):
        collected.setdefault(scope, {})[key] = value
    return collected


def build_backends(pm: pluggy.PluginManager, requested: dict[str, str],
                   raw_options: dict[str | None, dict[str, Any]], session: Session | None) -> dict[str, Backend]:
    """The backends of a run, by kind, built in ``pm``'s registry."""
    with active_manager(pm):
        return _build(pm, requested, raw_options, session)


def _names(requested: dict[str, str], session: Session | None) -> dict[str, str]:
    recorded = session.meta.backends if session is not None else {}
    names = {}
    for kind in KINDS:
        if kind in requested:
            names[kind] = requested[kind]
        elif kind in recorded:
            names[kind] = recorded[kind].name
        elif session is not None and kind in OPTIONAL_KINDS:
            names[kind] = "none"  # a session made before this kind existed goes on without it
        else:
            names[kind] = DEFAULT_BACKENDS[kind]
    return {k: v for k, v in names.items() if not (k in OPTIONAL_KINDS and v == "none")}


def _build(pm, requested, raw_options, session) -> dict[str, Backend]:
    recorded = session.meta.backends if session is not None else {}
    names = _names(requested, session)
    regs = {kind: get_backend_class(kind, name, pm) for kind, name in names.items()}
    scopes = {None} | set(names.values()) | set(KINDS)
    for scope in raw_options:
        if scope not in scopes:
            raise ConfigError(
                f"option scope {scope!r} matches no selected backend "
                f"(selected: {', '.join(f'{k}={v}' for k, v in names.items())})")
    built: dict[str, Backend] = {}
    claimed: set[tuple[str | None, str]] = set()
    for kind, reg in regs.items():
        opt_cls = getattr(reg.cls, "Options", None)
        fields = {f.name for f in attrs.fields(opt_cls)} if opt_cls and attrs.has(opt_cls) else set()
        raw: dict[str, Any] = {}
        # On resume, the options recorded for the same backend are the base.
        if kind in recorded and recorded[kind].name == reg.name:
            raw.update(recorded[kind].options)
        # Unscoped keys and keys scoped by a name several backends share (an image
        # generator and a renderer may both be called "comfyui") go to whichever take them.
        for scope in (None, reg.name):
            for key, value in raw_options.get(scope, {}).items():
                if key in fields:
                    raw[key] = value
                    claimed.add((scope, key))
        raw.update(raw_options.get(kind, {}))
        options = structure_options(opt_cls, raw, what=f"{KINDS[kind][1]} {reg.name!r}") \
            if opt_cls is not None else None
        if options is not None and attrs.has(type(options)):
            for f in attrs.fields(type(options)):
                if f.metadata.get("secret"):
                    register_secret(getattr(options, f.name, None))
        try:
            instance = reg.cls(options) if opt_cls is not None else reg.cls()
        except ReelforgeError:
            raise
        except Exception as exc:
            raise ConfigError(f"{KINDS[kind][1]} {reg.name!r} could not start: {exc}") from exc
        built[kind] = Backend(kind, reg.name, instance, options)
    _refuse_stray_options(raw_options, claimed, regs)
    return built


def _refuse_stray_options(raw_options, claimed, regs) -> None:
    for scope, values in raw_options.items():
        if scope in KINDS:
            continue
        stray = sorted(k for k in values if (scope, k) not in claimed)
        if stray:
            names = ", ".join(map(repr, stray))
            valid = valid_keys_of([(r.name, getattr(r.cls, "Options", None)) for r in regs.values()
                                   if scope is None or r.name == scope])
            raise ConfigError(f"no selected backend takes option {names} (valid: {valid})" if scope is None
                              else f"backend {scope!r} has no option {names} (valid: {valid})")


def choices(backends: dict[str, Backend]) -> dict[str, BackendChoice]:
    """What the session records of its backends (names and public options)."""
    chosen = {k: BackendChoice(b.name, b.public_options) for k, b in backends.items()}
    for kind in OPTIONAL_KINDS - set(chosen):
        chosen[kind] = BackendChoice("none")  # recorded, so a resume does not add one
    return chosen


def close_backends(backends: dict[str, Backend]) -> None:
    for backend in backends.values():
        close = getattr(backend.instance, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # a failed cleanup must not hide the run's result
                warnings.warn(f"reelforge: closing {backend.name} failed: {redact(str(exc))}",
                              RuntimeWarning, stacklevel=2)


class Preflight:
    """Each backend's optional ``preflight()`` (a cheap check that its server is there and
    speaks its API), run at most once per run, just before the backend is first needed."""

    def __init__(self) -> None:
        self._unchecked: dict[str, Backend] = {}

    def arm(self, backends: dict[str, Backend]) -> None:
        """Check these backends before their first use in this run."""
        self._unchecked = dict(backends)

    def leave(self, kinds) -> None:
        """Do not check these kinds in this run (another process checks them)."""
        for kind in kinds:
            self._unchecked.pop(kind, None)

    def all(self, backends: dict[str, Backend]) -> None:
        """Check every backend now (a new session: before anything exists)."""
        self.arm(backends)
        for kind in list(backends):
            self.kind(kind)

    def kind(self, kind: str) -> None:
        backend = self._unchecked.pop(kind, None)
        check = getattr(backend.instance, "preflight", None) if backend is not None else None
        if callable(check):
            check()
