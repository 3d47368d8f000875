"""A real Postgres for the tests: initdb into a temporary folder, a server on a loopback
port, one fresh database per test. Debian's ``postgresql`` package provides the binaries
(.ci/run installs it); as root the server runs as the ``postgres`` user, as Postgres wants."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from support import need_system_package


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    def __init__(self) -> None:
        initdb, server = _bin("initdb"), _bin("postgres")
        if not (initdb and server):  # skipped with this line locally, failed in CI
            need_system_package("Postgres is not installed (apt-get install postgresql): the dbos engine's "
                                "tests need a real one")
        self.root = Path(tempfile.mkdtemp(prefix="reelforge-pg-"))
        self.port = _free_port()
        as_user: list[str] = []
        if os.geteuid() == 0:  # Postgres refuses to run as root
            shutil.chown(self.root, "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*as_user, initdb, "-D", str(self.root / "data"), "-A", "trust", "-U", "reelforge",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        self.log = open(self.root / "server.log", "wb")
        self.proc = subprocess.Popen(
            [*as_user, server, "-D", str(self.root / "data"), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.root), "-c", "fsync=off", "-c", "max_connections=300"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"postgresql://reelforge@127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import psycopg

        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with psycopg.connect(f"{self.url}/postgres", connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)

    def database(self) -> str:
        """A new, empty database: its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as conn:
            conn.execute(f"create database {name}")
        return f"{self.url}/{name}"

    def server_pid(self) -> int | None:
        """The postmaster's pid (under runuser, ``proc`` is runuser's)."""
        try:
            return int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster: sessions are cut off), then clean up."""
        import signal

        pid = self.server_pid()
        if pid is not None and self.proc.poll() is None:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
