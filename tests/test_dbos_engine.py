"""The dbos engine on a real Postgres, with real `reelforge worker` processes: a film handed
over by `reelforge run --engine dbos` is made by the workers with the same session files as
the local engine; a worker SIGKILLed mid-render has its film finished by another with no
prompt run twice; a worker stopped past its lease writes nothing when it wakes."""

from __future__ import annotations

import collections
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from postgres import Postgres
from support import wait_until

from reelforge.store.meta import COMPLETE
from reelforge.store.sessions import SessionStore

pytest.importorskip("dbos")

IDEA = "A glassblower's last commission"
OFFLINE = ["--story-llm", "offline", "--image-gen", "storyboard", "--renderer", "kenburns",
           "--narrator", "none", "-o", "shots=3"]


@pytest.fixture(scope="module")
def postgres():
    pg = Postgres()
    yield pg
    pg.remove()


@pytest.fixture
def db(postgres) -> str:
    return postgres.database()


def _env() -> dict[str, str]:
    return {**os.environ, "REELFORGE_RETRY_BACKOFF": "0", "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}


class Worker:
    """A `reelforge worker --engine dbos` subprocess; its stderr is collected in a thread."""

    def __init__(self, db: str, out: Path, worker_id: str, *, lease: float = 3.0, slots: int = 4,
                 env: dict[str, str] | None = None):
        self.id = worker_id
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reelforge", "worker", "--engine", "dbos", "--db", db, "--id", worker_id,
             "--lease", str(lease), "--slots", str(slots), "--output-dir", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env or _env())
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(120):
            self.stop()
            raise AssertionError(f"worker {worker_id} did not start: {''.join(self.lines)}")

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if " ready:" in line:
                self.ready.set()

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(60)


@pytest.fixture
def workers():
    started: list[Worker] = []

    def start(*args, **kw) -> Worker:
        w = Worker(*args, **kw)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def reelforge(*args: str, db: str, timeout: float = 300, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reelforge", *args, "--db", db], capture_output=True,
                          text=True, env=env or _env(), timeout=timeout)


def made(out: Path, sid: str):
    """What a session is made of: its files (by name), step files, artifacts' digests, film."""
    session = SessionStore(out).load(sid)
    shots = {s.id: (s.image.sha256, s.video.sha256) for s in session.meta.shots}
    files = sorted(p.relative_to(session.path).as_posix().replace(sid, "ID") for p in session.path.rglob("*")
                   if p.is_file() and p.name != ".lock")
    steps = {name: (session.path / name).read_bytes() for name in ("story.json", "shots.json")}
    return shots, files, steps, session.meta.film.sha256, session.meta.status


def only_session(out: Path) -> str:
    [sid] = SessionStore(out).ids()
    return sid


def status_of(out: Path, sid: str) -> str | None:
    try:
        return SessionStore(out).load(sid).meta.status
    except Exception:
        return None  # being written this instant


def test_the_dbos_internals_used_are_those_of_the_pinned_dbos():
    """internals.py is the one place that reaches into DBOS: if an upgrade moves it, this fails."""
    from dbos import DBOS

    from reelforge.plugins.dbos_engine import internals

    method = getattr(DBOS, "_recover_pending_workflows", None)
    assert method is not None, "DBOS._recover_pending_workflows is gone: rework plugins/dbos_engine/internals.py"
    assert list(inspect.signature(method).parameters) == ["executor_ids"]
    assert "DBOS._recover_pending_workflows([executor_id])" in inspect.getsource(internals)


def test_a_film_made_by_the_workers_has_the_same_files_as_one_made_locally(tmp_path, db, workers):
    local = subprocess.run([sys.executable, "-m", "reelforge", "run", IDEA, "--new", *OFFLINE,
                            "--output-dir", str(tmp_path / "local")], capture_output=True, text=True, env=_env())
    assert local.returncode == 0, local.stderr
    workers(db, tmp_path / "dbos", "w1")
    r = reelforge("run", IDEA, "--new", *OFFLINE, "--engine", "dbos", "--output-dir", str(tmp_path / "dbos"),
                  db=db)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "COMPLETE" in r.stdout and "handed to the workers" in r.stderr
    # followed as a local run is shown: the same stage headers and one line per shot made
    assert _shown(r.stderr) == _shown(local.stderr) and len(_shown(r.stderr)[1]) == 6, r.stderr
    sid = only_session(tmp_path / "dbos")
    assert [steps for _, steps in _film_steps(db, sid)] == [FILM_STEPS]  # the film's steps, recorded by DBOS
    theirs, ours = made(tmp_path / "dbos", sid), made(tmp_path / "local", only_session(tmp_path / "local"))
    assert theirs[4] == COMPLETE
    assert theirs == ours  # files, story and shots, every artifact's digest and the film, byte for byte
    # sessions made by the workers are ordinary sessions: the local commands read them
    r = subprocess.run([sys.executable, "-m", "reelforge", "sessions", "list", "--output-dir",
                        str(tmp_path / "dbos")], capture_output=True, text=True, env=_env())
    assert r.returncode == 0 and sid in r.stdout and "COMPLETE" in r.stdout


def _shown(stderr: str) -> tuple[set[str], list[tuple[str, str]]]:
    import re

    headers = set(re.findall(r"^→ (\w+)", stderr, re.M))
    lines = sorted(re.findall(r"^\s+\[(IMG|DONE)\]\s+Shot\s+(\d+)", stderr, re.M))
    return headers, lines


def test_detach_returns_at_once_and_the_workers_finish_the_film(tmp_path, db, workers):
    workers(db, tmp_path, "w1")
    r = reelforge("run", IDEA, "--new", *OFFLINE, "--engine", "dbos", "--detach", "--output-dir", str(tmp_path),
                  db=db)
    assert r.returncode == 0, r.stderr
    sid = only_session(tmp_path)
    assert sid in r.stdout + r.stderr
    wait_until(lambda: status_of(tmp_path, sid) == COMPLETE, what="the detached film")
    # the creator's loop through the workers: redo a shot's image with a new seed
    image = SessionStore(tmp_path).load(sid).meta.shot(2).image.sha256
    r = reelforge("redo", sid, "--shot", "2", "--new-seed", "--engine", "dbos", "--output-dir", str(tmp_path),
                  db=db)
    assert r.returncode == 0 and "COMPLETE" in r.stdout, r.stdout + r.stderr
    shot = SessionStore(tmp_path).load(sid).meta.shot(2)
    assert shot.image.sha256 != image and [t["sha256"] for t in shot.image.takes] == [image]


def test_without_a_database_the_engine_says_what_it_needs(tmp_path):
    env = {k: v for k, v in _env().items() if k != "REELFORGE_DB"}
    r = subprocess.run([sys.executable, "-m", "reelforge", "worker", "--engine", "dbos", "--output-dir",
                        str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "needs its Postgres database: --db postgresql://" in r.stderr
    r = subprocess.run([sys.executable, "-m", "reelforge", "worker", "--output-dir", str(tmp_path)],
                       capture_output=True, text=True, env={**env, "REELFORGE_ENGINE": "local"})
    assert r.returncode != 0 and "has no workers" in r.stderr
    r = subprocess.run([sys.executable, "-m", "reelforge", "run", IDEA, "--new", *OFFLINE, "--engine", "dbos",
                        "--output-dir", str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "needs its Postgres database" in r.stderr
    assert not SessionStore(tmp_path).ids()  # refused before a session was made


def _comfy_run(comfy_url: str, out: Path, db: str) -> subprocess.CompletedProcess:
    return reelforge("run", IDEA, "--new", "--story-llm", "offline", "--image-gen", "storyboard",
                     "--renderer", "comfyui", "--comfy-url", comfy_url, "--narrator", "none",
                     "-o", "shots=3", "-o", "comfyui.poll_interval_s=0.05", "-o", "comfyui.server_grace_s=120",
                     "--engine", "dbos", "--detach", "--output-dir", str(out), db=db)


def _successes(comfy) -> collections.Counter:
    return collections.Counter(pid for pid, _, state in comfy.executions if state == "success")


@pytest.fixture
def comfy(tmp_path_factory):
    from comfy.fake_comfy import FakeComfy

    server = FakeComfy(tmp_path_factory.mktemp("comfyui")).start()
    yield server
    server.stop()


def test_the_servers_are_checked_once_by_the_command_not_again_by_the_worker(tmp_path, db, workers, comfy):
    """The hand-off command checks the ComfyUI servers (a missing one refuses the film before
    it is handed over); the worker that runs the film does not check them again."""
    workers(db, tmp_path, "w1")
    r = _comfy_run(comfy.url, tmp_path, db)
    assert r.returncode == 0, r.stderr
    sid = only_session(tmp_path)
    checks = [p for m, p, _ in comfy.requests if m == "GET" and p == "/system_stats"]
    assert len(checks) == 1, comfy.requests  # the command's own check, before the hand-off
    wait_until(lambda: status_of(tmp_path, sid) == COMPLETE, timeout=180, what="the film to complete")
    assert [p for m, p, _ in comfy.requests if m == "GET" and p == "/system_stats"] == checks


def _film_held_on_the_server(comfy, tmp_path: Path, db: str, workers, *, lease: float):
    """Worker ``wa`` runs a 3-shot film whose clips wait on the fake ComfyUI: returns the
    gate that lets them go, the worker and the session id, once a clip is on the server."""
    gate = comfy.hold("RepeatImageBatch")  # every clip waits on the server until the test lets it go
    a = workers(db, tmp_path, "wa", lease=lease)
    r = _comfy_run(comfy.url, tmp_path, db)
    assert r.returncode == 0, r.stderr
    sid = only_session(tmp_path)
    wait_until(lambda: comfy.held(), what="a clip rendering on the server")
    return gate, a, sid


def test_a_worker_killed_mid_render_has_its_film_finished_by_another(tmp_path, db, workers, comfy):
    gate, a, sid = _film_held_on_the_server(comfy, tmp_path, db, workers, lease=3)
    cut = comfy.running.prompt_id
    a.proc.send_signal(signal.SIGKILL)  # the worker running the film and its renders dies
    a.proc.wait(60)
    b = workers(db, tmp_path, "wb", lease=3)
    wait_until(lambda: b.said("recovered the work of wa"), what="worker wb to recover wa's work")
    gate.set()
    comfy.release()
    wait_until(lambda: status_of(tmp_path, sid) == COMPLETE, timeout=180, what="the film to complete")
    successes = _successes(comfy)
    assert len(successes) == 3 and set(successes.values()) == {1}, comfy.executions  # each clip made once
    assert len(comfy.posts(cut)) == 1  # the render in flight was waited on again, never resubmitted
    session = SessionStore(tmp_path).load(sid)
    assert all(s.video.checkpoint.get("rendered_by") == comfy.url for s in session.meta.shots)
    # one film workflow, recovered (not started again): the steps it ended before the kill were
    # replayed from its record, the film step recorded after; each step is recorded once
    [(_, steps)] = _film_steps(db, sid)
    assert steps == FILM_STEPS


def _film_steps(db: str, sid: str) -> list[tuple[str, list[str]]]:
    """Each film workflow of session ``sid``: its id and the names of its recorded steps, in order."""
    from dbos import DBOSClient

    from reelforge.plugins.dbos_engine.workflows_names import FILM_WORKFLOW

    client = DBOSClient(system_database_url=db)
    try:
        flows = [w for w in client.list_workflows(name=FILM_WORKFLOW) if w.workflow_id.startswith(f"film/{sid}/")]
        return [(w.workflow_id, [step["function_name"] for step in client.list_workflow_steps(w.workflow_id)])
                for w in flows]
    finally:
        client.destroy()


FILM_STEPS = ["reelforge_story", "reelforge_scene_graph", "reelforge_shots", "reelforge_cast", "reelforge_film"]


def _records(session_path: Path) -> dict[str, tuple[int, int]]:
    """The session's records and artifacts (scratch aside): name -> (size, mtime)."""
    found = {}
    for p in session_path.rglob("*"):
        rel = p.relative_to(session_path).as_posix()
        if p.is_file() and not rel.startswith(".work/") and p.name != ".lock":
            st = p.stat()
            found[rel] = (st.st_size, st.st_mtime_ns)
    return found


def test_a_worker_stopped_past_its_lease_exits_without_writing_when_it_wakes(tmp_path, db, workers, comfy):
    import psycopg

    gate, a, sid = _film_held_on_the_server(comfy, tmp_path, db, workers, lease=2)
    a.proc.send_signal(signal.SIGSTOP)

    def lapsed() -> bool:
        with psycopg.connect(db) as conn:
            return bool(conn.execute("select lease_until < now() from reelforge_workers where id = 'wa'")
                        .fetchone()[0])

    wait_until(lapsed, what="wa's lease to lapse")
    gate.set()
    comfy.release()  # the clip finishes while wa sleeps: waking, it would have a clip to commit
    wait_until(lambda: len(_successes(comfy)) >= 1, what="the held clip to finish on the server")
    before = _records(SessionStore(tmp_path).path_for(sid))
    a.proc.send_signal(signal.SIGCONT)
    assert a.proc.wait(60) == 75  # LEASE_LOST
    assert _records(SessionStore(tmp_path).path_for(sid)) == before  # no record written after waking
    assert "exiting without writing" in "".join(a.lines)
    workers(db, tmp_path, "wb", lease=2)
    wait_until(lambda: status_of(tmp_path, sid) == COMPLETE, timeout=180, what="wb to finish the film")
    assert set(_successes(comfy).values()) == {1}, comfy.executions


def test_a_write_past_the_lease_is_refused_before_it_is_made(tmp_path, db):
    """The fence itself, in process: whichever thread of a woken worker moves first, a session
    write checks the lease's local deadline (monotonic: it counts while a process is stopped)."""
    from reelforge.plugins.dbos_engine.leases import WorkerLease, ensure_schema
    from reelforge.store import safefs

    class LeaseLost(Exception):
        pass

    def lost(message: str) -> None:
        raise LeaseLost(message)

    ensure_schema(db)
    lease = WorkerLease(db, "w1", 60, on_lost=lost)
    lease.acquire()
    with pytest.raises(RuntimeError, match="held by a live worker"):
        WorkerLease(db, "w1", 60).acquire()  # one live worker per id
    session = SessionStore(tmp_path).create("A storm")
    safefs.WRITE_GUARDS.append(lease.check)
    try:
        session.set_status("IN_PROGRESS", "going")  # within the lease: written
        files = {p.name: p.read_bytes() for p in session.path.iterdir() if p.is_file()}
        lease.valid_until = time.monotonic() - 0.001  # as after a SIGSTOP longer than the lease
        with pytest.raises(LeaseLost, match="lease expired"):
            session.set_status("FAILED", "should not be written")
        with pytest.raises(LeaseLost):
            safefs.atomic_write_text(session.path / "story.json", "{}")
        assert {p.name: p.read_bytes() for p in session.path.iterdir() if p.is_file()} == files
    finally:
        safefs.WRITE_GUARDS.remove(lease.check)
        lease._stop.set()
        session.close()


def test_two_workers_over_ten_films_never_run_a_prompt_twice_nor_two_on_one_server(tmp_path, db, workers,
                                                                                    tmp_path_factory):
    """Two servers of one slot each, two workers with four films each at once: every render
    holds its server's slot in Postgres, so no server is ever given a second prompt."""
    from comfy.fake_comfy import FakeComfy

    servers = [FakeComfy(tmp_path_factory.mktemp("comfyui")).start() for _ in range(2)]
    try:
        for s in servers:
            s.node_latency = 0.02
        workers(db, tmp_path, "w1", slots=2)
        workers(db, tmp_path, "w2", slots=2)
        urls = [a for s in servers for a in ("--comfy-url", s.url)]
        for n in range(10):
            r = reelforge("run", f"{IDEA}, take {n}", "--new", "--story-llm", "offline", "--image-gen",
                          "storyboard", "--renderer", "comfyui", *urls, "--narrator", "none", "-o", "shots=3",
                          "-o", "comfyui.poll_interval_s=0.05", "-o", "comfyui.per_server=1",
                          "--engine", "dbos", "--detach", "--output-dir", str(tmp_path), db=db)
            assert r.returncode == 0, r.stderr
        sids = SessionStore(tmp_path).ids()
        assert len(sids) == 10
        wait_until(lambda: all(status_of(tmp_path, sid) == COMPLETE for sid in sids), timeout=600,
                 what="ten films")
        successes = collections.Counter()
        for s in servers:
            successes.update(_successes(s))
            assert s.max_depth == 1, f"{s.url} had {s.max_depth} prompts at once"
        assert len(successes) == 30 and set(successes.values()) == {1}  # 10 films x 3 clips, each once
        assert all(_successes(s) for s in servers)  # both servers worked
    finally:
        for s in servers:
            s.stop()


def _torture_module():
    import importlib.util

    bench = Path(__file__).resolve().parent.parent / "bench" / "crash_torture.py"
    spec = importlib.util.spec_from_file_location("crash_torture", bench)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("crash_torture", module)
    spec.loader.exec_module(module)
    return sys.modules["crash_torture"]


def _calls(log: Path) -> collections.Counter:
    """Backend calls per (stage kind, shot), from the fakes' log (every process appends)."""
    counted: collections.Counter = collections.Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("image", "video", "narration"):
                counted[(parts[0], int(parts[1]))] += 1
    return counted


def test_workers_killed_while_commits_are_being_made_redo_nothing_that_was_done(tmp_path, db, workers):
    """Three SIGKILLs of the worker making a film, each the moment its journal shows more
    commits (shots are committed every few tenths of a second here, so kills land in and
    around commits); a new worker takes over each time. Nothing recorded done before a kill
    is made again, every record names a file that matches it, and the film completes."""
    ct = _torture_module()
    root = Path(__file__).resolve().parent.parent
    log = tmp_path / "calls.log"
    env = {**_env(), "REELFORGE_PLUGINS": "crash_plugin", "REELFORGE_FAKE_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(root / "tests"), str(root), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    worker = workers(db, out, "k0", lease=2, env=env)
    r = reelforge("run", IDEA, "--new", "--story-llm", "crashtest", "--image-gen", "crashtest", "--renderer",
                  "crashtest", "--narrator", "crashtest", "-o", "crashtest.delay=0.3", "--engine", "dbos",
                  "--detach", "--output-dir", str(out), db=db, env=env)
    assert r.returncode == 0, r.stderr
    sid = only_session(out)
    folder = SessionStore(out).path_for(sid)
    kind = {"images": "image", "videos": "video", "narration": "narration"}
    snapshots = []
    for k, threshold in enumerate((3, 7, 11)):
        wait_until(lambda: len(ct.journal_done_records(folder)[0]) >= threshold
                 or status_of(out, sid) == COMPLETE, what=f"{threshold} commits")
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(60)
        if status_of(out, sid) == COMPLETE:
            break
        done = {(kind[stage], shot) for shot, stage in ct.journal_done_records(folder)[0]}
        snapshots.append((done, _calls(log)))
        worker = workers(db, out, f"k{k + 1}", lease=2, env=env)
    assert len(snapshots) >= 2, "the film finished before the kills: slow the fakes down"
    wait_until(lambda: status_of(out, sid) == COMPLETE, timeout=180, what="the film after the kills")
    final = _calls(log)
    for done, calls in snapshots:
        redone = {unit: (calls[unit], final[unit]) for unit in done if final[unit] != calls[unit]}
        assert not redone, f"made again after it was recorded done: {redone}"
    session = SessionStore(out).load(sid)
    problems, _ = ct.check_journal(folder, session)
    assert not problems, problems
    assert not ct.check_artifacts(session)
    assert all(final[(k, s.id)] >= 1 for s in session.meta.shots for k in ("image", "video", "narration"))


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_worker_killed_inside_a_clips_commit_has_it_committed_by_another_never_rendered_again(
        tmp_path, db, workers, comfy, where):
    """The worker making a film is SIGKILLed inside the commit of its second clip, rendered on
    the fake ComfyUI by a render workflow: ``before`` the done record is journalled (the clip
    is only in scratch, the render workflow has succeeded) or ``after`` it (recorded, not yet
    renamed into place). Another worker finishes the film: the cut clip is committed from
    what its render made, no prompt is posted or run again, and every record matches its
    file."""
    root = Path(__file__).resolve().parent.parent
    mark = tmp_path / "held-commit"
    env = {**_env(), "REELFORGE_PLUGINS": "crash_plugin", "REELFORGE_CRASH_COMMIT": f"videos:2:{where}",
           "REELFORGE_CRASH_MARK": str(mark),
           "PYTHONPATH": os.pathsep.join([str(root / "tests"), str(root), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    a = workers(db, out, "ca", lease=3, env=env)
    r = _comfy_run(comfy.url, out, db)
    assert r.returncode == 0, r.stderr
    sid = only_session(out)
    wait_until(mark.exists, what="the worker to stop inside the second clip's commit")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(60)
    cut = int(mark.read_text().split()[1])
    posted = {pid: len(comfy.posts(pid)) for pid, _, _ in comfy.executions}
    assert len(_successes(comfy)) >= 2  # the cut clip's render had finished on the server
    workers(db, out, "cb", lease=3)
    wait_until(lambda: status_of(out, sid) == COMPLETE, timeout=180, what="the film after the kill")
    successes = _successes(comfy)
    assert len(successes) == 3 and set(successes.values()) == {1}, comfy.executions  # each clip made once
    assert all(len(comfy.posts(pid)) == n for pid, n in posted.items())  # nothing finished was resubmitted
    session = SessionStore(out).load(sid)
    assert session.verify_files().ok, session.verify_files().lines()
    journal = (session.path / "journal.jsonl").read_text() if (session.path / "journal.jsonl").exists() else ""
    assert session.shot_state(cut).artifact("videos").state == "done"
    assert all(s.video.checkpoint.get("rendered_by") == comfy.url for s in session.meta.shots), journal


def _quiet_on_a_held_clip(out: Path, sid: str) -> bool:
    """Every image is done and the clip on the server is recorded as handed to a render: the
    film's worker writes nothing more until that render comes back (one clip at a time:
    one server of one slot)."""
    try:
        meta = SessionStore(out).load(sid).meta
    except Exception:
        return False
    done, total = meta.counts("images")
    return total > 0 and done == total and any(s.video.checkpoint.get("dbos_render") for s in meta.shots)


def test_a_worker_that_loses_its_database_stops_at_once_without_writing(tmp_path, workers, comfy):
    own = Postgres()  # this test stops its database: not the one the other tests share
    try:
        db = own.database()
        gate, a, sid = _film_held_on_the_server(comfy, tmp_path, db, workers, lease=3)
        wait_until(lambda: _quiet_on_a_held_clip(tmp_path, sid), what="the film's worker to wait on the held clip")
        before = _records(SessionStore(tmp_path).path_for(sid))
        own.stop()
        assert a.proc.wait(60) == 75  # LEASE_LOST: stopped at once
        assert _records(SessionStore(tmp_path).path_for(sid)) == before  # nothing written (no failed shot)
        assert "lost its database" in "".join(a.lines)
        gate.set()
    finally:
        own.remove()


def test_a_worker_makes_its_films_local_pieces_one_per_cpu_at_once(monkeypatch):
    """Stills, Ken Burns clips and local voices of all the films a worker runs are made at
    most one per CPU at once (a worker's renders must not wait behind many films' CPU work);
    the others wait their turn, and a cancelled run stops waiting."""
    from types import SimpleNamespace

    from reelforge.engine.base import Attempt
    from reelforge.plugins.dbos_engine import engine as dbos_engine

    class Turns:  # the worker's semaphore, with who asked for a turn
        def __init__(self, n):
            self.inner, self.asked = threading.BoundedSemaphore(n), []

        def acquire(self, timeout=None):
            self.asked.append(threading.get_ident())
            return self.inner.acquire(timeout=timeout)

        def release(self):
            self.inner.release()

    turns = Turns(2)
    monkeypatch.setattr(dbos_engine, "IN_WORKER", True)
    monkeypatch.setattr(dbos_engine, "_LOCAL_WORK", turns)
    engine = dbos_engine.DBOSEngine(db="postgresql://nobody@127.0.0.1/none")
    lock, go, running, most, made = threading.Lock(), threading.Event(), [0], [0], []

    def here() -> Path:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        go.wait(60)
        with lock:
            running[0] -= 1
        made.append(1)
        return Path("still.png")

    jobs = [SimpleNamespace(cancelled=threading.Event()) for _ in range(5)]
    threads = [threading.Thread(target=engine.perform, args=(Attempt(describe=None, job=job, here=here),))
               for job in jobs]
    for t in threads:
        t.start()
    wait_until(lambda: len(set(turns.asked)) == 5 and running[0] == 2, what="two made, three waiting their turn")
    assert running[0] == 2
    jobs[4].cancelled.set()  # a stopped run gives up its wait (and makes nothing)
    go.set()
    for t in threads:
        t.join(60)
    assert most[0] == 2 and len(made) in (4, 5)


def test_a_workers_cpus_must_be_a_positive_number(tmp_path):
    r = subprocess.run([sys.executable, "-m", "reelforge", "worker", "--engine", "dbos", "--db",
                        "postgresql://nobody@127.0.0.1:1/none", "--cpus", "0", "--output-dir", str(tmp_path)],
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 2 and "--cpus" in r.stderr
