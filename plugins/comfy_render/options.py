"""Options of the ComfyUI backends (kept free of heavy imports: the CLI reads them at start)."""

from __future__ import annotations

import os

import attrs

DEFAULT_URL = "http://127.0.0.1:8188"
URL_ENV = "REELFORGE_COMFY_URL"


def default_urls() -> tuple[str, ...]:
    """$REELFORGE_COMFY_URL (a comma list) or the local default."""
    env = os.environ.get(URL_ENV, "")
    urls = tuple(u.strip() for u in env.split(",") if u.strip())
    return urls or (DEFAULT_URL,)


#: Fields that change how shots are run, not what they look like: a resume with other values
#: does not redo finished shots.
_RUNTIME = {"fingerprint": False}


def _options_class(kind: str, default_template: str) -> type:
    @attrs.frozen
    class Options:
        urls: tuple[str, ...] = attrs.field(factory=default_urls,
                                            metadata={"cli": "--comfy-url", "fingerprint": False})
        "ComfyUI servers (repeat --comfy-url, or a comma list); default $REELFORGE_COMFY_URL or http://127.0.0.1:8188."
        template: str = default_template
        "A built-in template (image-basic, video-basic, wan22-i2v, ltxv-i2v) or the path of a template or API-format workflow JSON."
        mapping: str = ""
        "Optional JSON file of injection points for a bare API-format workflow."
        width: int = 0
        "Frame width; 0 keeps the template's."
        height: int = 0
        "Frame height; 0 keeps the template's."
        fps: float = 0.0
        "Frames per second (video); 0 keeps the template's."
        per_server: int = attrs.field(default=2, metadata=_RUNTIME)
        "Shots in flight per server: 2 keeps a GPU busy while the next prompt waits in its queue."
        timeout_s: float = attrs.field(default=3600.0, metadata=_RUNTIME)
        "Stop waiting for one prompt after this long (a retry looks the prompt up; it does not resubmit)."
        poll_interval_s: float = attrs.field(default=1.0, metadata=_RUNTIME)
        "How often /history is polled while the event socket is down."
        server_grace_s: float = attrs.field(default=30.0, metadata=_RUNTIME)
        "A server that does not answer for this long is marked down and its shots move elsewhere."
        down_for_s: float = attrs.field(default=60.0, metadata=_RUNTIME)
        "How long a server marked down is skipped (unless every server is down)."
        check_nodes: bool = attrs.field(default=True, metadata=_RUNTIME)
        "Check against /object_info that the template's node classes exist before the first submit."
        on_interrupt: str = attrs.field(default="pending", metadata=_RUNTIME,
                                        validator=attrs.validators.in_(("pending", "all", "none")))
        "On Ctrl-C: 'pending' deletes queued prompts but lets running renders finish (resume adopts them); 'all' also interrupts running ones; 'none' leaves the server alone."

    Options.__name__ = Options.__qualname__ = f"Comfy{kind.title()}Options"
    return Options


VideoOptions = _options_class("video", "video-basic")
ImageOptions = _options_class("image", "image-basic")
