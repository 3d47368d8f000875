"""Before a run: are the URLs fit to be saved with the session, is each server there, is it
ComfyUI, and has it the template's node classes? A wrong URL or missing nodes stop the run;
a server that does not answer is marked down, and the run starts if one answers.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
import threading
from typing import TYPE_CHECKING, Callable

from reelforge.errors import ConfigError, RetryableServiceError, ServiceError
from reelforge.plugins.comfy_render.errors import ComfyError, ServerDown
from reelforge.plugins.comfy_render.references import NODE_PACKS
from reelforge.plugins.comfy_render.workflow import Template
from reelforge.redact import redact

if TYPE_CHECKING:
    from reelforge.plugins.comfy_render.client import ComfyClient
    from reelforge.plugins.comfy_render.pool import ServerPool

#: Seconds one pre-flight request may take (a server that slow is not fit to start a run on).
PREFLIGHT_TIMEOUT = 5.0


def check_urls(urls: tuple[str, ...]) -> None:
    """Refuse a URL that is not http(s), or that carries credentials: the URLs are saved in
    the session's meta (a resume reuses them), so a password there would be written to disk."""
    from reelforge.plugins.comfy_render.options import AUTH_ENV
    from reelforge.redact import mask_url_credentials, url_credentials

    if not urls:
        raise ConfigError("comfyui: no server URL given; pass --comfy-url http://HOST:8188")
    for url in urls:
        carried = url_credentials(url)
        if carried:
            raise ConfigError(
                f"comfyui: the URL {redact(mask_url_credentials(url))} carries {carried}; "
                f"URLs are saved with the session, so pass it without them and set "
                f"{AUTH_ENV}=user:password (or a token) in the environment instead")
        if not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(f"comfyui: {redact(url)[:200]!r} is not an http(s) URL "
                              f"(expected e.g. http://127.0.0.1:8188)")



def install_advice(template: Template, missing: list[str]) -> str:
    """What to install for the missing classes: each node pack (the template's
    ``custom_nodes``, else the known packs) with the classes it provides."""
    packs: dict[str, list[str]] = {}
    for cls in missing:
        packs.setdefault(template.custom_nodes.get(cls) or NODE_PACKS.get(cls) or "", []).append(cls)
    return "; ".join(f"install {pack} for {', '.join(classes)}" if pack else
                     f"install the custom nodes that provide {', '.join(classes)}"
                     for pack, classes in packs.items())


class NodeCheck:
    """Whether a server has the template's node classes: asked once per server (when the
    check_nodes option is on), a missing class raising ComfyError."""

    def __init__(self, template: Template, *, enabled: bool):
        self.template = template
        self.enabled = enabled
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def check(self, client: ComfyClient) -> None:
        if not self.enabled or client.base_url in self._checked:
            return
        with self._lock:
            if client.base_url in self._checked:
                return
            missing = client.missing_node_classes(self.template.class_types())
            if missing:
                raise ComfyError(
                    f"ComfyUI at {client.base_url} has no node class {', '.join(missing)} needed by "
                    f"template {self.template.name}: {install_advice(self.template, missing)}, or pick "
                    f"another template (-o comfyui.template=...)", url=client.base_url)
            self._checked.add(client.base_url)


def preflight(urls: tuple[str, ...], client: Callable[[str], ComfyClient], nodes: NodeCheck, pool: ServerPool,
              *, kind: str, grace: float) -> None:
    """Is each server there, is it ComfyUI, can it run the template? What `reelforge
    comfyui check` does, in a fraction of a second: a server that is not ComfyUI (404,
    HTML, JSON of another shape) or lacks the template's nodes stops the run; one that
    does not answer is marked down (said once), and the run is refused only when none
    answers. Each server is asked once a run: what it said is kept for the run's other
    backend (ServerPool.facts)."""
    def look(url: str) -> tuple[str, Exception | None]:
        api = client(url)
        try:
            api.checked(timeout=PREFLIGHT_TIMEOUT)
            nodes.check(api)
        except Exception as exc:  # sorted out below
            return url, exc
        return url, None

    if len(urls) == 1:
        results = [look(urls[0])]
    else:
        with cf.ThreadPoolExecutor(min(8, len(urls)), thread_name_prefix="comfy-preflight") as ex:
            results = list(ex.map(look, urls))
    wrong, down, up = [], [], []
    for url, exc in results:
        if exc is None:
            pool.mark_up(url)
            up.append(url)
        elif isinstance(exc, RetryableServiceError):
            down.append((url, exc))
        elif isinstance(exc, ServiceError):
            wrong.append(str(exc))
        else:
            raise exc
    what = "image generator" if kind == "image" else "renderer"
    if wrong:
        raise ServiceError(f"comfyui {what}: " + "; ".join(wrong))
    if not up:
        detail = "; ".join(str(exc) for _, exc in down)
        advice = next((exc.advice for _, exc in down if isinstance(exc, ServerDown)),
                      "Start ComfyUI there (or pass the right --comfy-url)")
        raise ServiceError(f"comfyui {what}: {detail}. {advice} (`reelforge comfyui check` "
                           f"tests servers)")
    for url, exc in down:
        pool.mark_down(url, exc.reason if isinstance(exc, ServerDown) else str(exc), grace=grace)
