"""The /ws event socket of one client_id: what the server says about a prompt as it runs.

Events are only a hint (ComfyUI sends them to the submitting client_id alone and replays
nothing after a reconnect); the server's record stays the source of truth (see watch.py).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any, Mapping

from reelforge.http import MIB

#: Largest websocket frame accepted. ComfyUI's events are a few KB and its binary previews
#: (latent previews, at most 512 px by default) well under 1 MB.
WS_MAX_FRAME = 16 * MIB
#: Frames buffered while we are busy elsewhere (a /history poll): bounds memory to
#: WS_MAX_FRAME times this against a server that floods the socket.
WS_MAX_QUEUE = 4


#: The websocket library's own log: a socket we shut down while its reader thread is in a
#: read logs "unexpected internal error" with a traceback. Every socket failure already
#: means "poll instead", so its messages are kept out of the user's terminal.
_WS_LOG = logging.getLogger("reelforge.comfyui.websocket")
_WS_LOG.setLevel(logging.CRITICAL)
_WS_LOG.propagate = False


class EventStream:
    """The /ws event socket of one client_id. Text frames are parsed JSON; binary frames
    (previews) are skipped. A dropped socket raises ConnectionError from next()."""

    def __init__(self, base_url: str, client_id: str, *, open_timeout: float = 5.0,
                 headers: Mapping[str, str] | None = None, max_frame: int = WS_MAX_FRAME):
        scheme = "wss" if base_url.startswith("https") else "ws"
        host = base_url.split("://", 1)[-1].rstrip("/")
        self.url = f"{scheme}://{host}/ws?clientId={client_id}"
        self.open_timeout = open_timeout
        self.headers = dict(headers or {})
        self.max_frame = max_frame
        self._ws = None

    @property
    def alive(self) -> bool:
        return self._ws is not None

    def connect(self) -> bool:
        from websockets.sync.client import connect

        # A frame over max_size closes the socket (1009) and we poll /history instead. A full
        # queue pauses reading (the server waits); close() then gives up after close_timeout.
        kw = dict(open_timeout=self.open_timeout, max_size=self.max_frame, max_queue=WS_MAX_QUEUE,
                  close_timeout=1, additional_headers=self.headers or None, logger=_WS_LOG)
        try:
            try:
                self._ws = connect(self.url, legacy=True, **kw)  # websockets >= 17
            except TypeError:
                self._ws = connect(self.url, **kw)
        except Exception:  # refused, reset, handshake failure: fall back to polling
            self._ws = None
        return self._ws is not None

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON event, or None when ``timeout`` passes first."""
        if self._ws is None:
            raise ConnectionError("event socket is closed")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                frame = self._ws.recv(timeout=left)
            except TimeoutError:
                return None
            except Exception as exc:  # ConnectionClosed and socket errors alike
                self.close()
                raise ConnectionError(f"event socket dropped: {exc}") from exc
            if isinstance(frame, bytes):
                continue  # preview images and text frames: not needed
            try:
                msg = json.loads(frame)
            except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
                continue
            if isinstance(msg, dict) and isinstance(msg.get("type"), str):
                return msg

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is None:
            return
        # With a full frame queue the reader is paused and a polite close() would wait
        # close_timeout for a close frame it cannot read: end the connection at once instead.
        try:
            ws.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        try:
            ws.close()
        except Exception:
            pass

