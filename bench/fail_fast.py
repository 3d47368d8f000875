"""How fast, and how quietly, `reelforge run` gives up on a ComfyUI server that is not there
(issue 9 item 1): the wall time and the number of output lines of

    reelforge run "x" --new --image-gen comfyui --comfy-url http://127.0.0.1:<closed port>
    reelforge run "x" --new --image-gen comfyui --comfy-url http://127.0.0.1:<port answering 404>

each in a fresh process with an empty output folder. The 404 server is a tiny http.server
on 127.0.0.1 that answers 404 to everything (a path prefix, not a ComfyUI).

    python bench/fail_fast.py [--timeout 900] [--baseline DIR]

A run still going after --timeout seconds is stopped and reported as such. ``--baseline
DIR`` measures another reelforge tree too, side by side (e.g. the code before issue 9:
``mkdir /tmp/before && git archive 07d1050 | tar -x -C /tmp/before``; each of its runs took
over six minutes).
"""

from __future__ import annotations

import argparse
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class _NotFound(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b"<html><body><h1>404 Not Found</h1></body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def measure(url: str, timeout: float, tree: Path = ROOT) -> tuple[float, int, int | None, str]:
    """(seconds, output lines, exit code or None on timeout, last line)."""
    cmd = [sys.executable, "-m", "reelforge", "run", "x", "--new", "--image-gen", "comfyui",
           "--comfy-url", url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFORGE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(tree), os.environ.get("PYTHONPATH", "")] if p)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["COLUMNS"] = "100"
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([*cmd, "--output-dir", out], env=env, cwd=out, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
            code, text = proc.returncode, proc.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired as exc:
            code, text = None, (exc.stdout or b"").decode(errors="replace")
        elapsed = time.perf_counter() - t0
    lines = [line for line in text.splitlines() if line.strip()]
    return elapsed, len(lines), code, (lines[-1] if lines else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--show", action="store_true", help="print the last output line of each run")
    ap.add_argument("--baseline", type=Path, help="another reelforge tree, measured side by side")
    args = ap.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cases = [("closed port", f"http://127.0.0.1:{closed_port()}"),
             ("answers 404", f"http://127.0.0.1:{server.server_address[1]}")]
    try:
        trees = [("", ROOT)] + ([("baseline: ", args.baseline.resolve())] if args.baseline else [])
        for label, url in cases:
            for name, tree in trees:
                seconds, lines, code, last = measure(url, args.timeout, tree)
                status = "timed out" if code is None else f"exit {code}"
                print(f"{name + label:22s} {seconds:8.2f} s  {lines:5d} output lines  ({status})", flush=True)
                if args.show:
                    print(f"{'':22s} last line: {last[:300]}")
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
