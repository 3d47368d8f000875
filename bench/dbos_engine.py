"""What the dbos engine costs around the renders (issue 17 item 7): 4 films x 24 shots handed
to `reelforge worker --engine dbos` processes (1, 2 and 4 of them) on a real Postgres, with
4 fake ComfyUI servers on 127.0.0.1 that run one prompt at a time, each clip taking
``--render-s`` seconds of server time (the fake's CreateVideo node latency).

Per row (a fresh database, fresh fakes, fresh workers w1..wN with ``--slots 4``), the 4 films
(offline story, storyboard stills, ComfyUI clips, ``-o comfyui.per_server=1``) are handed over
at once with ``reelforge run --engine dbos --detach``; the bench polls each session's meta
until all are COMPLETE. Printed:

- makespan: from the first hand-off (the first film workflow's creation in Postgres) to the
  last film seen COMPLETE (meta polled every 0.05 s);
- ideal: the servers' own time for every clip (the fake's start/end stamps) / 4 servers;
- 1st clip: from the first hand-off to the first clip starting on a server (story, stills,
  DBOS hops): not in the ideal (each film's own hand-off -> first clip is in the notes; it
  includes waiting behind the other films' clips); tail: last clip ended -> last COMPLETE
  (the film's assembly);
- gap/render: the mean idle time on a server between one prompt ending and its next one
  starting while some render was waiting (a render workflow enqueued and not yet started on
  any server): the engine's dispatch overhead per render; the breakdown says where it went
  (prompt end -> next render dequeued by DBOS -> submitted to the fake -> started);
- overhead: makespan - ideal, as a share of the makespan; dispatch: the servers' summed
  waiting gaps / 4, as a share of the makespan;
- twice: prompts (or shots) that succeeded more than once, across all servers (want 0);
  depth: the most prompts a server ever held at once, queued and running (want 1:
  one at a time, as per_server=1 asks).

    python bench/dbos_engine.py [--render-s 10] [--workers 1,2,4] [--films 4] [--shots 24]

Needs Postgres binaries (Debian's ``postgresql``) and the ``dbos`` extra; about
4 min a row at --render-s 10. Target (issue 17): with 10 s renders the engine's overhead is
at most 3% of the makespan.

Measured on 2 CPUs, --render-s 10. Before the per-server Postgres slots (80cab2d; stills on
the render queue, queues polled every 0.2 s):

    workers makespan s  ideal s 1st clip s tail s mk/ideal gap/render ms max gap ms overhead dispatch twice depth
          1      256.6    240.2       3.84   0.90    1.068           459       1003    6.4%     4.1%     0     1
          2      266.9    240.1       4.76   0.71    1.111           758      11646   10.0%     6.5%     0     2
          4      267.4    240.2       5.18   0.63    1.113           800      10831   10.2%     6.9%     0     2

After (each render holds a slot of its server; only ComfyUI calls on the render queue; queues
polled every 50 ms):

    workers makespan s  ideal s 1st clip s tail s mk/ideal gap/render ms max gap ms overhead dispatch twice depth
          1      249.5    240.2       3.94   0.77    1.039           180        367    3.7%     1.7%     0     1
          2      248.3    240.1       3.06   0.74    1.034           160        305    3.3%     1.5%     0     1
          4      254.8    240.3       5.70   0.91    1.060           315        861    5.7%     2.8%     0     1

With pooled Postgres connections for the render checkpoints and slots (613c0b1), machine
otherwise idle; the local row is the same films made by four `reelforge run --engine local`
processes at once (each server's own queue keeps it busy: depth 4):

    workers makespan s  ideal s 1st clip s tail s mk/ideal gap/render ms max gap ms overhead dispatch twice depth
      local               240.1       2.75   0.46                           from launch: 244.0 s, 1.6% over the ideal
          1      248.6    240.1       4.06   1.48    1.035           117        282    3.4%     1.1%     0     1
                 from launch: 251.8 s; the dbos engine's cost over the local engine: 3.1% of the makespan
          2      246.8    240.1       3.18   0.67    1.028           116        299    2.7%     1.1%     0     1
                 from launch: 250.8 s; the dbos engine's cost over the local engine: 2.7% of the makespan
          4      248.7    240.1       4.33   1.02    1.036           117        437    3.5%     1.1%     0     1
                 from launch: 252.8 s; the dbos engine's cost over the local engine: 3.5% of the makespan

A server's gap between prompts was then 29-32 ms (render done) + 12-26 ms (next dequeued) +
58-75 ms (submitted) + 1 ms; what was left over 3% was the films' lead (hand-off command,
story and stills before the first clip) and the tail, with 1 or 4 workers on 2 CPUs.

With the films' steps recorded by DBOS, the worker no longer re-checking the servers the
hand-off checked, workers warmed up before they say ready, a pick asking the servers at
once, and each worker making its local pieces one per CPU at once (the bench's workers,
standing for hosts of their own, split this host's 2 CPUs: --cpus 2, 1, 1), machine
otherwise idle (7b8074f):

    workers makespan s  ideal s 1st clip s tail s mk/ideal gap/render ms max gap ms overhead dispatch twice depth
      local               240.1       2.28   0.38                           from launch: 243.1 s, 1.2% over the ideal
          1      245.7    240.1       1.70   1.08    1.023           117        258    2.3%     1.1%     0     1
                 from launch: 248.5 s; the dbos engine's cost over the local engine: 2.2% of the makespan
          2      245.6    240.1       2.38   0.60    1.023            91        189    2.2%     0.9%     0     1
                 from launch: 249.6 s; the dbos engine's cost over the local engine: 2.6% of the makespan
          4      247.2    240.1       2.53   1.40    1.029           123        603    2.9%     1.1%     0     1
                 from launch: 251.3 s; the dbos engine's cost over the local engine: 3.3% of the makespan

The gap is 24-31 ms (render done) + 14-34 ms (next dequeued) + 48-77 ms (submitted) + 1 ms.
Measured from the commands' launch, the 4-worker row is still 3.3% over the local engine:
its four hand-off commands (each imports DBOS) and four worker processes share 2 CPUs.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SERVERS = 4
SESSION_RE = re.compile(r"session_[0-9]{8}_[0-9]{6}(?:_[0-9]{1,4})?")


def _env() -> dict[str, str]:
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1"}


class Worker:
    """One `reelforge worker --engine dbos` subprocess; its stderr goes to a file."""

    def __init__(self, db: str, out: Path, worker_id: str, log: Path, *, slots: int, lease: float, cpus: int):
        self.id, self.log = worker_id, log
        self._file = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reelforge", "worker", "--engine", "dbos", "--db", db, "--id", worker_id,
             "--slots", str(slots), "--lease", str(lease), "--cpus", str(cpus), "--output-dir", str(out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._file, env=_env())

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while " ready:" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"worker {self.id} did not start:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (the worker lets its lease lapse and exits), then SIGKILL: by its pid only."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._file.close()


def _hand_over(i: int, args, urls: list[str], out: Path, db: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "reelforge", "run", f"Bench film {i + 1}: a lighthouse keeper befriends a storm",
           "--new", "--story-llm", "offline", "--image-gen", "storyboard", "--renderer", "comfyui"]
    for url in urls:
        cmd += ["--comfy-url", url]
    cmd += ["--narrator", "none", "-o", f"shots={args.shots}", "-o", "comfyui.per_server=1",
            "-o", "comfyui.poll_interval_s=0.05", "--engine", "dbos", "--detach", "--output-dir", str(out),
            "--db", db]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())


def _status(store, sid: str) -> str | None:
    try:
        return store.load(sid).meta.status
    except Exception:
        return None  # being written this instant


def _workflows(db: str) -> list[dict]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(db, row_factory=dict_row) as conn:
        return conn.execute("select workflow_uuid as id, name, status, executor_id, created_at, "
                            "started_at_epoch_ms as started, updated_at from dbos.workflow_status").fetchall()


def _intervals(fake) -> list[dict]:
    """Each prompt the fake ran: id, its filename prefixes, queued/start/end times, status."""
    queued: dict[str, float] = {}
    runs: list[dict] = []
    prefixes = {pid: p for pid, p, _ in fake.executions}
    for pid, what, at in fake.timeline:
        if what == "queued":
            queued.setdefault(pid, at)
        elif what == "started":
            runs.append({"pid": pid, "prefix": prefixes.get(pid, ""), "queued": queued.get(pid, at),
                         "start": at, "end": None, "status": None})
        else:
            run = next(r for r in reversed(runs) if r["pid"] == pid and r["end"] is None)
            run["end"], run["status"] = at, what
    return runs


def _shot_of_prefix(prefix: str) -> tuple[str, int] | None:
    m = re.search(r"reelforge/(session_[0-9_]+)/videos_shot([0-9]+)", prefix)
    return (m.group(1), int(m.group(2))) if m else None


def _shot_of_render(workflow_id: str) -> tuple[str, int] | None:
    m = re.match(r"render/(session_[0-9_]+)/videos/([0-9]+)/", workflow_id)
    return (m.group(1), int(m.group(2))) if m else None


def run_local_row(args, FakeComfy) -> dict:
    """The same films on the same fakes, made by the local engine: one `reelforge run` per
    film, all at once, each with its own pool of the 4 servers (per_server=1 within each
    process, so a server may queue prompts of several films: its own queue never lets it
    idle). What running on DBOS costs is measured against this."""
    from reelforge.store.meta import COMPLETE
    from reelforge.store.sessions import SessionStore

    root = Path(tempfile.mkdtemp(prefix="bench-dbos-local-"))
    out = root / "out"
    out.mkdir()
    fakes = []
    try:
        for i in range(SERVERS):
            fake = FakeComfy(root / f"server{i}")
            fake.noise = False
            fake.class_latency = {"CreateVideo": args.render_s}
            fakes.append(fake.start())
        urls = [f.url for f in fakes]
        launched = time.time()
        procs = []
        for i in range(args.films):
            cmd = [sys.executable, "-m", "reelforge", "run",
                   f"Bench film {i + 1}: a lighthouse keeper befriends a storm", "--new", "--story-llm", "offline",
                   "--image-gen", "storyboard", "--renderer", "comfyui"]
            for url in urls:
                cmd += ["--comfy-url", url]
            cmd += ["--narrator", "none", "-o", f"shots={args.shots}", "-o", "comfyui.per_server=1",
                    "-o", "comfyui.poll_interval_s=0.05", "--engine", "local", "--output-dir", str(out)]
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True, env=_env()))
        ended = []
        for p in procs:
            _, stderr = p.communicate(timeout=args.deadline_factor * args.shots * args.films * args.render_s + 600)
            ended.append(time.time())
            if p.returncode:
                raise SystemExit(f"local run failed ({p.returncode}):\n{stderr[-3000:]}")
        store = SessionStore(out)
        sids = store.ids()
        assert all(_status(store, sid) == COMPLETE for sid in sids), "a local film is not COMPLETE"
    finally:
        for f in fakes:
            f.stop()
    runs = [r for f in fakes for r in _intervals(f)]
    ok = [r for r in runs if r["status"] == "success"]
    by_pid = collections.Counter(r["pid"] for r in ok)
    shutil.rmtree(root, ignore_errors=True) if not args.keep else None
    return {"workers": "local", "from_launch": max(ended) - launched,
            "ideal": sum(r["end"] - r["start"] for r in ok) / SERVERS,
            "first_clip": min(r["start"] for r in runs) - launched, "tail": max(ended) - max(r["end"] for r in runs),
            "twice": sum(1 for n in by_pid.values() if n > 1), "depth": max(f.max_depth for f in fakes)}


def run_row(n_workers: int, args, pg, FakeComfy) -> dict:
    from reelforge.store.meta import COMPLETE, FAILED
    from reelforge.store.sessions import SessionStore

    db = pg.database()
    root = Path(tempfile.mkdtemp(prefix=f"bench-dbos-{n_workers}w-"))
    out = root / "out"
    out.mkdir()
    fakes, workers = [], []
    try:
        for i in range(SERVERS):
            fake = FakeComfy(root / f"server{i}")
            fake.noise = False
            fake.class_latency = {"CreateVideo": args.render_s}  # the clip's time, as a sampler's
            fakes.append(fake.start())
        urls = [f.url for f in fakes]
        for i in range(n_workers):
            # the workers stand for hosts of their own: this host's CPUs are split between them
            workers.append(Worker(db, out, f"w{i + 1}", root / f"w{i + 1}.log", slots=args.slots,
                                  lease=args.lease, cpus=max(1, (os.cpu_count() or 1) // n_workers)))
        for w in workers:
            w.wait_ready()
        launched = time.time()
        procs = [_hand_over(i, args, urls, out, db) for i in range(args.films)]
        sids = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=300)
            found = SESSION_RE.findall(stdout + stderr)
            if p.returncode or not found:
                raise SystemExit(f"hand-off failed ({p.returncode}):\n{stdout}{stderr}")
            sids.append(found[0])
        handed = time.time()
        store = SessionStore(out)
        done: dict[str, float] = {}
        deadline = time.monotonic() + args.deadline_factor * args.shots * args.films * args.render_s / SERVERS + 300
        while len(done) < len(sids):
            for sid in sids:
                if sid in done:
                    continue
                status = _status(store, sid)
                if status == COMPLETE:
                    done[sid] = time.time()
                elif status == FAILED:
                    meta = store.load(sid).meta
                    raise SystemExit(f"{sid} FAILED: {meta.last_error}\n" +
                                     "\n".join(w.text()[-2000:] for w in workers))
            if time.monotonic() > deadline:
                raise SystemExit(f"deadline passed: {len(done)}/{len(sids)} COMPLETE\n" +
                                 "\n".join(w.text()[-2000:] for w in workers))
            time.sleep(0.05)
        flows = _workflows(db)
        logs = {w.id: w.text() for w in workers}
    finally:
        for w in workers:
            w.stop()
        for f in fakes:
            f.stop()
    try:
        return _analyse(n_workers, args, fakes, flows, sids, done, launched, handed, logs)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def _analyse(n_workers, args, fakes, flows, sids, done, launched, handed, logs) -> dict:
    from reelforge.plugins.dbos_engine.workflows_names import FILM_WORKFLOW, RENDER_WORKFLOW

    films = [f for f in flows if f["name"] == FILM_WORKFLOW]
    renders = [f for f in flows if f["name"] == RENDER_WORKFLOW]
    film_created = {}
    for f in films:
        sid = SESSION_RE.search(f["id"]).group(0)
        film_created[sid] = min(film_created.get(sid, float("inf")), f["created_at"] / 1000)
    first_handoff = min(film_created.values())
    makespan = max(done.values()) - first_handoff

    per_server = [_intervals(f) for f in fakes]
    runs = [r for rs in per_server for r in rs]
    ok = [r for r in runs if r["status"] == "success"]
    server_time = sum(r["end"] - r["start"] for r in ok)
    ideal = server_time / SERVERS
    by_pid = collections.Counter(r["pid"] for r in ok)
    by_shot = collections.Counter(_shot_of_prefix(r["prefix"]) for r in ok)
    twice = sum(1 for n in by_pid.values() if n > 1) + sum(1 for n in by_shot.values() if n > 1)
    depth = max(f.max_depth for f in fakes)
    overlap = any(b["start"] < a["end"] for rs in per_server
                  for a, b in zip(sorted(rs, key=lambda r: r["start"]), sorted(rs, key=lambda r: r["start"])[1:]))

    # lead: each film's hand-off -> its first clip starting on a server
    first_start: dict[str, float] = {}
    for r in runs:
        shot = _shot_of_prefix(r["prefix"])
        if shot:
            first_start[shot[0]] = min(first_start.get(shot[0], float("inf")), r["start"])
    leads = [first_start[sid] - film_created[sid] for sid in sids if sid in first_start]
    tail = max(done.values()) - max(r["end"] for r in runs)
    first_clip = min(r["start"] for r in runs) - first_handoff

    # waiting(t): clip render workflows enqueued by t > clips started by t
    clips = [f for f in renders if _shot_of_render(f["id"])]
    stills = [f for f in renders if not _shot_of_render(f["id"])]
    created = sorted(f["created_at"] / 1000 for f in clips)
    starts = sorted(r["start"] for r in runs)

    def waiting(t: float) -> bool:
        import bisect

        return bisect.bisect_right(created, t) > bisect.bisect_right(starts, t)

    dequeued, finished = {}, {}
    for f in clips:
        shot = _shot_of_render(f["id"])
        if f["started"]:
            dequeued[shot] = max(dequeued.get(shot, 0), f["started"] / 1000)
        if f["status"] == "SUCCESS":
            finished[shot] = f["updated_at"] / 1000
    gaps, idle, parts = [], [], []
    for rs in per_server:
        rs = sorted(rs, key=lambda r: r["start"])
        for a, b in zip(rs, rs[1:]):
            gap = b["start"] - a["end"]
            if waiting(a["end"]):
                gaps.append(gap)
                deq = dequeued.get(_shot_of_prefix(b["prefix"]))
                fin = finished.get(_shot_of_prefix(a["prefix"]))
                if deq is not None and fin is not None:
                    parts.append((fin - a["end"], deq - fin, b["queued"] - deq, b["start"] - b["queued"]))
            else:
                idle.append(gap)
    spread = [sum(1 for r in rs if r["status"] == "success") for rs in per_server]
    by_worker = collections.Counter(f["executor_id"] for f in renders)
    films_by_worker = collections.Counter(f["executor_id"] for f in films)
    dispatch = sum(gaps) / SERVERS
    return {
        "workers": n_workers, "makespan": makespan, "ideal": ideal, "ratio": makespan / ideal,
        "first_clip": first_clip, "lead": statistics.mean(leads) if leads else float("nan"), "lead_max": max(leads, default=float("nan")),
        "tail": tail, "gap": statistics.mean(gaps) if gaps else 0.0,
        "gap_max": max(gaps, default=0.0), "gap_n": len(gaps), "idle": sum(idle), "idle_n": len(idle),
        "parts": tuple(statistics.mean(p[i] for p in parts) for i in range(4)) if parts else (0, 0, 0, 0),
        "busy": [sum(r["end"] - r["start"] for r in rs) / (max(r["end"] for r in runs) - min(starts))
                 for rs in per_server],
        "stills": len(stills),
        "still_held": statistics.mean((f["updated_at"] - f["started"]) / 1000 for f in stills if f["started"])
        if stills else 0.0,
        "still_slot_s": sum((f["updated_at"] - f["started"]) / 1000 for f in stills if f["started"]),
        "clip_held": statistics.mean((f["updated_at"] - f["started"]) / 1000 for f in clips if f["started"]),
        "overhead": (makespan - ideal) / makespan, "dispatch": dispatch / makespan,
        "twice": twice, "depth": depth, "overlap": overlap, "renders": len(ok), "executions": len(runs),
        "spread": spread, "by_worker": dict(sorted(by_worker.items())),
        "films_by_worker": dict(sorted(films_by_worker.items())),
        "from_launch": max(done.values()) - launched, "handoff_s": handed - launched, "handoff_spread": max(film_created.values()) - first_handoff, "recovered": sum(log.count("recovered the work") for log in logs.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render-s", type=float, default=10.0, help="server seconds per clip (default 10)")
    ap.add_argument("--workers", default="1,2,4", help="worker processes per row (default 1,2,4)")
    ap.add_argument("--films", type=int, default=4)
    ap.add_argument("--shots", type=int, default=24)
    ap.add_argument("--slots", type=int, default=4, help="--slots of each worker (default 4: 4 servers x 1)")
    ap.add_argument("--lease", type=float, default=15.0, help="--lease of each worker (default 15)")
    ap.add_argument("--deadline-factor", type=float, default=3.0,
                    help="give up on a row after this many ideals + 300 s (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep each row's folder (sessions, logs)")
    ap.add_argument("--no-local", action="store_true", help="skip the local engine's row (the baseline)")
    args = ap.parse_args()

    from comfy.fake_comfy import FakeComfy
    from postgres import Postgres

    rows = []
    pg = Postgres()
    try:
        print(f"{args.films} films x {args.shots} shots, {SERVERS} fake ComfyUI servers (one prompt at a time), "
              f"{args.render_s:g} s per clip, --slots {args.slots}", flush=True)
        head = (f"{'workers':>7} {'makespan s':>10} {'ideal s':>8} {'1st clip s':>10} {'tail s':>6} {'mk/ideal':>8} "
                f"{'gap/render ms':>13} {'max gap ms':>10} {'overhead':>8} {'dispatch':>8} "
                f"{'twice':>5} {'depth':>5}  renders per server")
        print(head, flush=True)
        local = None
        if not args.no_local:
            local = run_local_row(args, FakeComfy)
            print(f"{'local':>7} {'':>10} {local['ideal']:>8.1f} {local['first_clip']:>10.2f} {local['tail']:>6.2f}"
                  f"{'':>9} {'':>13} {'':>10} {'':>8} {'':>8} {local['twice']:>5} {local['depth']:>5}  "
                  f"from launch: {local['from_launch']:.1f} s, {(local['from_launch'] - local['ideal']) / local['from_launch']:.1%} "
                  f"over the ideal", flush=True)
        for n in (int(x) for x in args.workers.split(",")):
            r = run_row(n, args, pg, FakeComfy)
            rows.append(r)
            print(f"{r['workers']:>7} {r['makespan']:>10.1f} {r['ideal']:>8.1f} {r['first_clip']:>10.2f} "
                  f"{r['tail']:>6.2f} {r['ratio']:>8.3f} {r['gap'] * 1000:>13.0f} {r['gap_max'] * 1000:>10.0f} "
                  f"{r['overhead']:>7.1%} {r['dispatch']:>8.1%} {r['twice']:>5} {r['depth']:>5}  "
                  f"{'/'.join(map(str, r['spread']))}", flush=True)
            if local is not None:
                cost = (r["from_launch"] - local["from_launch"]) / r["from_launch"]
                print(f"{'':>7} from launch: {r['from_launch']:.1f} s; the dbos engine's cost over the local "
                      f"engine: {cost:.1%} of the makespan", flush=True)
    finally:
        pg.stop()
    print()
    print("1st clip: first hand-off -> first clip started on a server (story, stills, DBOS hops: not in "
          "the ideal); tail: last clip -> last "
          "COMPLETE; gap/render: a server's idle time between prompts while renders waited; overhead = "
          "(makespan - ideal) / makespan; dispatch = summed waiting gaps / 4 / makespan; twice: prompts or "
          "shots that succeeded more than once; depth: most prompts queued + running on one server.")
    for r in rows:
        fin, deq, sub, start = r["parts"]
        print(f"  {r['workers']} worker(s): gap = prompt end -> its render workflow done {fin * 1000:.0f} ms + "
              f"-> next clip's render dequeued {deq * 1000:.0f} ms + -> submitted {sub * 1000:.0f} ms + "
              f"-> started {start * 1000:.0f} ms "
              f"(n={r['gap_n']}); idle with nothing waiting {r['idle']:.2f} s over {r['idle_n']} gaps; "
              f"a film's hand-off -> its own first clip {r['lead']:.2f} s "
              f"mean, {r['lead_max']:.2f} s max (queueing behind the other films' clips included); {r['executions']} executions for {r['renders']} clips; "
              f"overlap on a server: {'YES' if r['overlap'] else 'no'}; renders by worker {r['by_worker']}, "
              f"films by worker {r['films_by_worker']}; recoveries {r['recovered']}; "
              f"hand-off commands took {r['handoff_s']:.1f} s (last film handed over "
              f"{r['handoff_spread']:.1f} s after the first); servers busy "
              f"{'/'.join(f'{b:.0%}' for b in r['busy'])} from first clip to last; {r['stills']} still renders "
              f"on the render queue too, holding a slot {r['still_held'] * 1000:.0f} ms each "
              f"({r['still_slot_s']:.1f} slot-s in all); a clip render holds one {r['clip_held']:.2f} s")
    bad = [r for r in rows if r["twice"] or r["depth"] > 1 or r["overlap"]]
    if bad:
        print(f"CHECK FAILED in the rows with {[r['workers'] for r in bad]} worker(s): a prompt ran twice or a "
              f"server held two prompts at once")


if __name__ == "__main__":
    main()
