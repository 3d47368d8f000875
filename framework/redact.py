"""Keep secrets out of everything reelforge prints or writes.

Backends call :func:`register_secret` with every secret they hold (an API key read from the
environment, a token); the session store, the CLI and the log handlers pass text through
:func:`redact` before it reaches a file or the terminal. ``user:password@`` and secret-looking
query parameters (``?api_key=...``) in any URL are redacted too, registered or not.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import urllib.parse
from typing import Any, Iterable

#: What a secret is replaced with.
MASK = "***"
#: Shorter values are not treated as secrets (masking "a" would mangle every message).
MIN_SECRET_LEN = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_generation = 0  # counts the changes of the registered secrets

# scheme://user:password@host -> scheme://user:***@host (also without a user name).
# Quotes never belong to the match, so redacting JSON text never crosses into another value.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/\s:@\"']*):(?P<pw>[^/\s@\"']+)@")


#: Query parameters that carry a secret in a URL (compared lower-case, ``-`` read as ``_``).
SECRET_PARAMS = frozenset({"key", "api_key", "apikey", "token", "access_token"})
# ?api_key=VALUE / &token=VALUE in any text -> ?api_key=***. The value stops at &, #, space, a
# quote or a backslash, so redacting JSON text never eats half of an escape (\").
_SECRET_PARAM = re.compile(r"(?P<name>[?&](?:key|api[_-]?key|token|access[_-]token)=)[^&#\s\"'\\]+",
                           re.IGNORECASE)


def register_secret(value: str | None) -> None:
    """Treat ``value`` as a secret from now on, in this process (and the forms a server may
    echo it in: URL-encoded, JSON-escaped)."""
    global _pattern, _generation
    if not value or not isinstance(value, str) or len(value.strip()) < MIN_SECRET_LEN:
        return
    value = value.strip()
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
             value.replace("\\", "\\\\").replace('"', '\\"')}
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(f for f in forms if len(f) >= MIN_SECRET_LEN)
        # Longest first, so a secret containing another is masked whole.
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))
        _generation += 1


def register_env_secrets(names: Iterable[str]) -> None:
    """Treat the values of the environment variables ``names`` as secrets (those that are
    set). What publishes a session without running a backend (a report, a page, an export)
    learns the keys this way, so a key an older version saved is still masked."""
    for name in names:
        if isinstance(name, str) and name:
            register_secret(os.environ.get(name))


def forget_secrets() -> None:
    """Drop every registered secret (for tests)."""
    global _pattern, _generation
    with _lock:
        _secrets.clear()
        _pattern = None
        _generation += 1


def secrets_generation() -> int:
    """A number that changes whenever the registered secrets do: text redacted before
    keeps its masks only while it is the same (a cache of redacted data compares it)."""
    return _generation


def redact(text: Any) -> Any:
    """``text`` with every registered secret and every URL password replaced by ``***``.
    Anything that is not a string is returned as it is."""
    if not isinstance(text, str) or not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "@" in text and "://" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m['name']}{MASK}", text)
    return text


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` (dicts, lists, strings) with every string redacted."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {k: redact_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v) for v in data]
    return data


def secret_params(url: Any) -> list[str]:
    """The query parameters of ``url`` that look like they carry a secret (``?api_key=``,
    ``key``, ``apikey``, ``token``, ``access_token``), as written in the URL."""
    if not isinstance(url, str) or "=" not in url:
        return []
    try:
        query = urllib.parse.urlsplit(url.strip()).query
    except ValueError:
        query = url.partition("?")[2]
    names = [name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)]
    return [n for n in names if n.strip().lower().replace("-", "_") in SECRET_PARAMS]


def url_credentials(url: Any) -> str | None:
    """What secret ``url`` carries, said for a message ("a user name or password", "a key
    in its query (api_key=)"), or None. URLs are saved with a session: no secret may be in one."""
    if not isinstance(url, str):
        return None
    if "@" in url:
        try:
            userinfo = "@" in urllib.parse.urlsplit(url.strip()).netloc
        except ValueError:
            userinfo = "@" in url.split("?", 1)[0]
        if userinfo:
            return "a user name or password"
    params = secret_params(url)
    if params:
        return f"a key in its query ({', '.join(f'{p}=' for p in dict.fromkeys(params))})"
    return None


def url_has_credentials(url: Any) -> bool:
    """Whether ``url`` carries a user name or password (``scheme://user:password@host``) or
    a secret-looking query parameter (``?api_key=...``)."""
    return url_credentials(url) is not None


def mask_url_credentials(url: str) -> str:
    """``url`` with its whole user-info part (name and password) and the values of its
    secret-looking query parameters replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return MASK
    if "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{MASK}@{host}")
    if parts.query:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        masked = [(n, MASK if n.strip().lower().replace("-", "_") in SECRET_PARAMS else v) for n, v in pairs]
        parts = parts._replace(query=urllib.parse.urlencode(masked, safe="*"))
    return redact(urllib.parse.urlunsplit(parts))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (arguments merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging to report
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


# Control characters (C0, DEL, C1) and the Unicode controls that reorder or hide text: an
# idea, a shot description or a server's message can carry them, and printed raw they can
# move the cursor, retitle the terminal or disguise what is shown.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_CONTROL_NL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: Any, *, newlines: bool = True) -> str:
    """``text`` made safe to print: secrets redacted, control and escape characters shown
    as ``\\xNN`` (newlines and tabs kept unless ``newlines`` is False)."""
    text = redact(text if isinstance(text, str) else str(text))
    return (_CONTROL if newlines else _CONTROL_NL).sub(_escape, text)
