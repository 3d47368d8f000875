"""Options of the ComfyUI backends (kept free of heavy imports: the CLI reads them at start)."""

from __future__ import annotations

import os

import attrs

from reelforge.limits import MAX_FPS, MAX_SIDE, between, check_frame_size

DEFAULT_URL = "http://127.0.0.1:8188"
URL_ENV = "REELFORGE_COMFY_URL"
#: Credentials for servers behind an authenticating proxy: "user:password" (HTTP Basic) or
#: a token (sent as "Authorization: Bearer TOKEN"). Never in a URL: URLs are saved.
AUTH_ENV = "REELFORGE_COMFY_AUTH"


def default_urls() -> tuple[str, ...]:
    """$REELFORGE_COMFY_URL (a comma list) or the local default."""
    env = os.environ.get(URL_ENV, "")
    urls = tuple(u.strip() for u in env.split(",") if u.strip())
    return urls or (DEFAULT_URL,)


#: Fields that change how shots are run, not what they look like: a resume with other values
#: does not redo finished shots.
_RUNTIME = {"fingerprint": False}


def _options_class(kind: str, default_template: str) -> type:
    download_mib = 256 if kind == "image" else 1024

    @attrs.frozen
    class Options:
        urls: tuple[str, ...] = attrs.field(factory=default_urls,
                                            metadata={"cli": "--comfy-url", "fingerprint": False})
        "ComfyUI servers (repeat --comfy-url, or a comma list); default $REELFORGE_COMFY_URL or http://127.0.0.1:8188."
        template: str = default_template
        "A built-in template (image-basic, video-basic, wan22-i2v, ltxv-i2v) or the path of a template or API-format workflow JSON."
        mapping: str = ""
        "Optional JSON file of injection points for a bare API-format workflow."
        width: int = attrs.field(default=0, validator=between(16, MAX_SIDE, zero=True))
        "Frame width (16 to 8192); 0 keeps the template's."
        height: int = attrs.field(default=0, validator=between(16, MAX_SIDE, zero=True))
        "Frame height (16 to 8192); 0 keeps the template's. Width x height is at most 35.6 megapixels."
        fps: float = attrs.field(default=0.0, validator=between(1, MAX_FPS, zero=True))
        "Frames per second (video, 1 to 120); 0 keeps the template's."
        max_frames: int = attrs.field(default=2000, validator=between(1, 100_000), metadata=_RUNTIME)
        "A clip needing more frames than this (duration x fps) fails instead of being submitted."
        per_server: int = attrs.field(default=2, validator=between(1, 64), metadata=_RUNTIME)
        "Shots in flight per server: 2 keeps a GPU busy while the next prompt waits in its queue."
        timeout_s: float = attrs.field(default=3600.0, validator=between(0.01, 7 * 86400), metadata=_RUNTIME)
        "Stop waiting for one prompt after this long (a retry looks the prompt up; it does not resubmit)."
        poll_interval_s: float = attrs.field(default=1.0, validator=between(0.01, 3600), metadata=_RUNTIME)
        "How often /history is polled while the event socket is down."
        server_grace_s: float = attrs.field(default=180.0, validator=between(0, 86400), metadata=_RUNTIME)
        "How long a shot waits for a server that stopped answering (a restart: ComfyUI on a GPU takes a minute or more to load) before it moves to another server or fails."
        down_for_s: float = attrs.field(default=60.0, validator=between(0, 86400), metadata=_RUNTIME)
        "How long a server marked down is skipped (unless every server is down)."
        request_timeout_s: float = attrs.field(default=60.0, validator=between(0.1, 3600), metadata=_RUNTIME)
        "Overall deadline of one API call (/prompt, /queue, /history, an upload), however slowly the server trickles its answer."
        download_timeout_s: float = attrs.field(default=600.0, validator=between(0.1, 86400), metadata=_RUNTIME)
        "Overall deadline of one output download (/view)."
        max_download_mib: int = attrs.field(default=download_mib, validator=between(1, 65536), metadata=_RUNTIME)
        "Largest output file downloaded, in MiB (default 256 for images, 1024 for clips); a larger one fails the shot as soon as the limit is passed."
        max_answer_mib: int = attrs.field(default=16, validator=between(1, 1024), metadata=_RUNTIME)
        "Largest JSON answer read from the server (/history, /queue, ...), in MiB."
        check_nodes: bool = attrs.field(default=True, metadata=_RUNTIME)
        "Check against /object_info that the template's node classes exist before the first submit."
        on_interrupt: str = attrs.field(default="pending", metadata=_RUNTIME,
                                        validator=attrs.validators.in_(("pending", "all", "none")))
        "On Ctrl-C: 'pending' deletes queued prompts but lets running renders finish (resume adopts them); 'all' also interrupts running ones; 'none' leaves the server alone."

        def __attrs_post_init__(self) -> None:
            check_frame_size(self.width, self.height, what=f"comfyui {kind} size")

    Options.__name__ = Options.__qualname__ = f"Comfy{kind.title()}Options"
    return Options


VideoOptions = _options_class("video", "video-basic")
ImageOptions = _options_class("image", "image-basic")
