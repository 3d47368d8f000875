"""Running the web app: `reelforge serve` binds its socket, prints the address and serves
with uvicorn until Ctrl-C, then stops any running action (what finished is saved)."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import Any, Callable

import click

from reelforge.redact import for_terminal


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one)."""
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.UsageError(f"--host {host}: {exc.strerror}") from None
    family, _type, _proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = "; choose another with --port (0 picks a free one)" if exc.errno in (98, 48, 10048) else ""
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.listen(128)
    return sock


def serve(output_dir: Path, *, host: str, port: int, allow_remote: bool,
          runner_factory: Callable[[], Any] | None = None) -> None:
    import uvicorn

    from reelforge.web.app import LOCAL_HOSTS, create_app

    remote = not is_loopback(host)
    if remote and not allow_remote:
        raise click.UsageError(
            f"--host {host} can be reached from other machines, and the app has no login: anyone who "
            f"reaches it could see the sessions and start renders. Pass --allow-remote to do it anyway, "
            f"or keep the default --host 127.0.0.1")
    if remote:
        click.echo(f"warning: serving on {for_terminal(host)} with --allow-remote: anyone who can reach "
                   f"this machine can see the sessions in {output_dir} and start renders (there is no login)",
                   err=True)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    allowed = ["*"] if remote else list({*LOCAL_HOSTS, host.strip("[]")})
    app = create_app(output_dir, runner_factory=runner_factory, allowed_hosts=allowed)
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    click.echo(f"reelforge serve: http://{shown}:{port}/  (sessions in {output_dir / 'sessions'}; Ctrl-C stops)")
    sys.stdout.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        busy = app.state.actions.busy()
        if busy:
            click.echo(f"stopping: waiting for {', '.join(busy)} (what finished is saved)", err=True)
        left = app.state.actions.shutdown(timeout=60.0)
        if left:
            click.echo(f"still running when reelforge serve stopped: {', '.join(left)}; resume the "
                       f"session to finish", err=True)
