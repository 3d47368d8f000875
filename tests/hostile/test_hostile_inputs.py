"""Hostile local input: absurd reelforge.toml nesting, bad REELFORGE_RETRY_* values, frame
sizes that would eat the machine, and the bounded-HTTP layer itself (a server that sends its
headers one byte at a time)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from reelforge.cli.core import cli
from reelforge.errors import ConfigError
from reelforge.http import BodyTooLarge, bounded_client, deadline, fetch
from reelforge.engine.retry import RetryPolicy

CATTRS_WORDS = ("@ options", "cattrs", "ClassValidationError", "Structuring", "invalid value for type")


def run(tmp_path, *args, **kw):
    return CliRunner().invoke(cli, ["run", "x", "--new", "--output-dir", str(tmp_path / "out"), *args], **kw)


# -- item 11: reelforge.toml -------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n",
])
def test_a_deeply_nested_config_is_a_usage_error_naming_the_file(tmp_path, text):
    cfg = tmp_path / "reelforge.toml"
    cfg.write_text(text)
    r = run(tmp_path, "--config", str(cfg))
    assert r.exit_code == 2, r.output
    assert str(cfg) in r.output and "nested too deeply" in r.output
    assert "RecursionError" not in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


# -- item 13: the retry variables --------------------------------------------------------

@pytest.mark.parametrize("name, value, words", [
    ("REELFORGE_RETRY_ATTEMPTS", "abc", "REELFORGE_RETRY_ATTEMPTS must be a whole number from 1 to 100, got 'abc'"),
    ("REELFORGE_RETRY_ATTEMPTS", "0", "REELFORGE_RETRY_ATTEMPTS must be from 1 to 100, got 0"),
    ("REELFORGE_RETRY_ATTEMPTS", "101", "got 101"),
    ("REELFORGE_RETRY_ATTEMPTS", "3.5", "got '3.5'"),
    ("REELFORGE_RETRY_ATTEMPTS", "99999999999999999999999", "got 99999999999999999999999"),
    ("REELFORGE_RETRY_BACKOFF", "soon", "REELFORGE_RETRY_BACKOFF must be a number of seconds from 0 to 300, got 'soon'"),
    ("REELFORGE_RETRY_BACKOFF", "nan", "REELFORGE_RETRY_BACKOFF must be from 0 to 300 seconds, got nan"),
    ("REELFORGE_RETRY_BACKOFF", "-1", "got -1"),
    ("REELFORGE_RETRY_BACKOFF", "1e400", "got 1e400"),
])
def test_bad_retry_variables_are_usage_errors_naming_them(tmp_path, monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        RetryPolicy.from_env()
    r = run(tmp_path)
    assert r.exit_code == 2 and words in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "out" / "sessions").exists()


def test_good_retry_variables_are_taken(monkeypatch):
    monkeypatch.setenv("REELFORGE_RETRY_ATTEMPTS", " 7 ")
    monkeypatch.setenv("REELFORGE_RETRY_BACKOFF", "0.5")
    policy = RetryPolicy.from_env()
    assert (policy.attempts, policy.initial) == (7, 0.5)


# -- item 13: frame sizes ------------------------------------------------------------------

@pytest.mark.parametrize("opts, words", [
    (["-o", "image.width=20000", "-o", "image.height=20000"], "option width must be a whole number from 64 to 8192, got '20000'"),
    (["-o", "image.width=8192", "-o", "image.height=8192"], "storyboard size 8192x8192 has 67,108,864 pixels"),
    (["-o", "image.height=10"], "option height must be a whole number from 64 to 8192, got '10'"),
    (["-o", "kenburns.width=20000"], "option width must be a whole number from 16 to 8192, got '20000'"),
    (["-o", "kenburns.width=8192", "-o", "kenburns.height=8192"], "kenburns clip size 8192x8192"),
    (["-o", "kenburns.fps=0"], "option fps must be a whole number from 1 to 120, got '0'"),
    (["-o", "kenburns.fps=fast"], "option fps must be a whole number from 1 to 120, got 'fast'"),
    (["-o", "kenburns.crf=99"], "option crf must be a whole number from 0 to 51, got '99'"),
    (["-o", "kenburns.zoom=nan"], "zoom"),
    (["--story-llm", "openai", "-o", "openai.base_url=http://127.0.0.1:9/v1", "-o", "target_seconds=inf"],
     "openai.target_seconds must be from 0.1 to 86400, got inf"),
    (["--story-llm", "ollama", "-o", "shots=1000000"], "ollama.shots must be from 1 to 10000, got 1000000"),
])
def test_offline_sizes_are_bounded_with_plain_words(tmp_path, opts, words):
    r = run(tmp_path, *opts)
    assert r.exit_code == 2, r.output
    assert words in r.output, r.output
    assert not any(w in r.output for w in CATTRS_WORDS), r.output
    assert not (tmp_path / "out" / "sessions").exists()


def test_the_largest_allowed_frame_is_accepted():
    from reelforge.plugins.image_gen.storyboard import StoryboardOptions
    from reelforge.plugins.kenburns import KenBurnsOptions

    assert StoryboardOptions(width=8192, height=4352).width == 8192
    assert KenBurnsOptions(width=4352, height=8192).height == 8192


# -- the bounded-HTTP layer --------------------------------------------------------------

@pytest.fixture
def slowloris():
    """A raw TCP server that sends a valid HTTP answer one byte every 0.2 s, headers included."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()
    sent = []

    def handle(conn):
        with conn:
            conn.recv(65536)
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Pad: " + b"p" * 200 + b"\r\n\r\nhello"
            for i in range(len(answer)):
                if stop.is_set():
                    return
                try:
                    conn.send(answer[i:i + 1])
                except OSError:
                    return
                sent.append(1)
                time.sleep(0.2)

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", sent
    stop.set()
    srv.close()


def test_the_deadline_covers_the_headers_not_only_the_body(slowloris):
    url, sent = slowloris
    client = bounded_client(timeout=5.0, trust_env=False)
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        with deadline(1.0) as d:
            fetch(client, "GET", url, limit=None)
    assert d.expired
    assert time.monotonic() - started < 30  # the whole answer would take 45 s
    assert len(sent) < 100  # still inside the headers
    # outside a deadline block the same client is an ordinary httpx client
    client.close()


def test_bounded_clients_wrap_proxy_pools_too(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("NO_PROXY", "")
    client = bounded_client(timeout=1.0)
    pools = [t._pool for t in [client._transport, *client._mounts.values()] if t is not None]
    assert len(pools) >= 2
    assert all(type(p._network_backend).__name__ == "DeadlineBackend" for p in pools)
    client.close()


def test_read_limited_counts_decoded_bytes(tmp_path):
    import gzip

    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))  # 20 MiB that travel as 20 KB
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, content=bomb, headers={"Content-Encoding": "gzip"}))
    with httpx.Client(transport=transport) as client:
        with pytest.raises(BodyTooLarge, match="passed the 1.0 MiB limit"):
            fetch(client, "GET", "http://x/", limit=1024 * 1024)
