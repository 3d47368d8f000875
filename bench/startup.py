"""Start-up cost of the command line against a bare interpreter, measured side by side:
`python -c pass`, `reelforge --help`, `reelforge plugins`, `reelforge sessions list` (on an
empty folder) and `reelforge run --help`, each in a fresh process, rounds interleaved so
machine noise hits all of them alike.

Run: python bench/startup.py [ROUNDS]   (default 15; prints medians and ratios to `pass`)
Target (issue 12): `reelforge --help` <= 2.5x `python -c pass`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    # The console script does exactly `from reelforge.cli.core import main; main()`; running it
    # through `python -c` avoids depending on where the script was installed.
    reelforge = [sys.executable, "-c", "import sys; from reelforge.cli.core import main; sys.argv[0] = 'reelforge'; main()"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFORGE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    with tempfile.TemporaryDirectory() as empty:
        env["REELFORGE_OUTPUT_DIR"] = empty
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "reelforge --help": [*reelforge, "--help"],
            "reelforge plugins": [*reelforge, "plugins"],
            "reelforge sessions list": [*reelforge, "sessions", "list"],
            "reelforge run --help": [*reelforge, "run", "--help"],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for name, cmd in cases.items():  # warm the page cache and .pyc files
            _time(cmd, env, empty)
        for _ in range(rounds):
            for name, cmd in cases.items():
                times[name].append(_time(cmd, env, empty))
    base = statistics.median(times["python -c pass"])
    print(f"{rounds} rounds, {os.cpu_count()} cores, {sys.executable}")
    print(f"{'command':26} {'median ms':>10} {'x pass':>7}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:26} {med * 1000:10.1f} {med / base:7.2f}")
    ratio = statistics.median(times["reelforge --help"]) / base
    print(f"reelforge --help / python -c pass = {ratio:.2f}x (target <= 2.5x)")


if __name__ == "__main__":
    main()
