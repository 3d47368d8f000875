"""What the ComfyUI renderer and image generator share: options, the servers (a pool shared
by both stages, see pool.py), and one shot's life on a server (submit or reattach, wait,
download), with one retry policy whose deadline is server_grace_s.

ComfyBackend holds the configuration and the clients and hands the work to its parts:
preflight.py (before a run), prompts.py (what a shot's prompt is), attempts.py (one shot
across attempts and servers), submit.py (submit or reattach), watch.py (waiting),
outputs.py (the files).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from reelforge.errors import StageError
from reelforge.plugins.comfy_render.attempts import ShotRun
from reelforge.plugins.comfy_render.client import ComfyClient
from reelforge.plugins.comfy_render.pool import ServerPool, normalise_url, shared_pool
from reelforge.plugins.comfy_render.preflight import NodeCheck, check_urls, preflight
from reelforge.plugins.comfy_render.prompts import ShotPrompts
from reelforge.plugins.comfy_render.references import ReferenceUploads
from reelforge.plugins.comfy_render.transport import Limits, Timeouts, auth_headers
from reelforge.plugins.comfy_render.workflow import Template, load_template
from reelforge.protocols import ShotJob
from reelforge.records import Shot


class ComfyBackend:
    """The work behind ComfyRenderer (kind 'video') and ComfyImageGenerator (kind 'image')."""

    def __init__(self, options: Any, *, kind: str):
        self.kind = kind
        self.options = options
        check_urls(options.urls)
        self.template: Template = load_template(options.template, kind=self.kind,
                                                mapping=options.mapping)
        mib = 1024 * 1024
        self.urls = tuple(dict.fromkeys(normalise_url(u) for u in options.urls))
        self.pool: ServerPool = shared_pool(self.urls, down_for=options.down_for_s,
                                            grace=options.server_grace_s)
        self.pool.open()
        self._open = True
        self.timeouts = Timeouts(request=options.request_timeout_s, download=options.download_timeout_s)
        self.limits = Limits(answer=options.max_answer_mib * mib, download=options.max_download_mib * mib)
        self.headers = auth_headers()
        self._clients: dict[str, ComfyClient] = {}
        self._clients_lock = threading.Lock()
        self.concurrency = max(1, options.per_server) * len(self.urls)
        self.key = f"{kind}:{self.template.name}"
        "Whose running average of execution time this backend's prompts feed."
        self.prompts = ShotPrompts(self.template, options, kind=kind)
        "The values, fingerprint and prompt id of each shot's prompt."
        self.nodes = NodeCheck(self.template, enabled=options.check_nodes)
        "Whether each server has the template's node classes, asked once per server."
        self.references = ReferenceUploads()
        "Which reference images each server has (each uploaded once per server)."

    def client(self, url: str) -> ComfyClient:
        url = normalise_url(url)
        with self._clients_lock:
            if url not in self._clients:
                self._clients[url] = ComfyClient(url, timeouts=self.timeouts, limits=self.limits,
                                                 headers=self.headers,
                                                 facts=lambda url=url: self.pool.facts(url))
            return self._clients[url]

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
            was_open, self._open = self._open, False
        for c in clients:
            c.close()
        if was_open:
            self.pool.close()

    def preflight(self) -> None:
        """Before a run: see preflight.preflight."""
        preflight(self.urls, self.client, self.nodes, self.pool, kind=self.kind,
                  grace=self.options.server_grace_s)

    def fingerprint(self, shot: Shot, job: ShotJob, image: Path | None) -> str:
        return self.prompts.fingerprint(shot, job, image)

    def prompt_id_for(self, job: ShotJob, hop: int = 0) -> str:
        return self.prompts.prompt_id_for(job, hop)

    def _units(self, shot: Shot) -> float:
        return self.prompts.units(shot)

    def expected(self, shot: Shot, job: ShotJob, units: float) -> float:
        """Seconds the shot is expected to take on a server: its own from an earlier attempt,
        else the pool's running average for this template and size."""
        seconds = (job.checkpoint or {}).get("server_seconds")
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 < seconds < 1e7:
            return float(seconds)  # this shot's own, from an earlier attempt
        return self.pool.estimate(self.key, units, len(self.template.workflow))

    _expected = expected

    def run(self, shot: Shot, job: ShotJob, image: Path | None) -> Path:
        if job.cancelled.is_set():
            raise StageError(f"shot {shot.id}: cancelled before it was submitted")
        return ShotRun(self, shot, job, image, time.monotonic()).run()


__all__ = ["ComfyBackend", "check_urls"]  # check_urls: the name the tests import from here
