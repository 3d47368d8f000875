"""`reelforge comfyui check`: is each server up, how busy, and can it run the templates?"""

from __future__ import annotations

import click


def add_commands(cli: click.Group) -> None:
    @cli.group("comfyui")
    def comfyui() -> None:
        """ComfyUI servers and workflow templates (see docs/comfyui.md)."""

    @comfyui.command("check")
    @click.option("--comfy-url", "urls", multiple=True, metavar="URL",
                  help="A server to check (repeatable); default $REELFORGE_COMFY_URL or http://127.0.0.1:8188.")
    @click.option("--image-template", default="image-basic", show_default=True,
                  help="Image template to check (built-in name or path).")
    @click.option("--video-template", default="video-basic", show_default=True,
                  help="Video template to check (built-in name or path).")
    def check(urls: tuple[str, ...], image_template: str, video_template: str) -> None:
        """Check templates, then each server: reachable, queue depth, node classes present.
        Exits 1 if any server cannot run the templates."""
        from reelforge.errors import RetryableServiceError, ServiceError
        from reelforge.plugins.comfy_render.client import ComfyClient
        from reelforge.plugins.comfy_render.options import default_urls
        from reelforge.plugins.comfy_render.preflight import check_urls
        from reelforge.plugins.comfy_render.transport import auth_headers
        from reelforge.plugins.comfy_render.workflow import load_template

        templates = [load_template(image_template, kind="image"),
                     load_template(video_template, kind="video")]
        for t in templates:
            click.echo(f"template {t.name} ({t.kind}): {len(t.workflow)} nodes, injects "
                       f"{', '.join(sorted(t.targets))}")
        bad = 0
        urls = urls or default_urls()
        check_urls(urls)
        headers = auth_headers()
        for url in urls:
            client = ComfyClient(url, headers=headers)
            try:
                system = client.probe()
                depth = client.queue_remaining()
                problems = [f"{t.name} needs missing node class(es) {', '.join(m)}"
                            for t in templates if (m := client.missing_node_classes(t.class_types()))]
            except RetryableServiceError as exc:
                click.echo(f"{url}: DOWN ({exc})")
                bad += 1
                continue
            except ServiceError as exc:  # answers, but not as a ComfyUI that we can use
                click.echo(f"{url}: NOT USABLE ({exc})")
                bad += 1
                continue
            finally:
                client.close()
            state = "OK" if not problems else "CANNOT RUN: " + "; ".join(problems)
            version = str(system.get("comfyui_version") or "unknown version")[:40]
            click.echo(f"{url}: up, {depth} prompt(s) queued, {state} (ComfyUI {version}; job API: "
                       f"{'yes' if client.jobs_api else 'no'})")
            bad += bool(problems)
        if bad:
            raise SystemExit(1)
