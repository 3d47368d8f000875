"""Crash torture (issue 8): SIGKILL real `reelforge run` processes at random moments in
every stage, check the session after each kill, resume until the film is made.

Run: python bench/crash_torture.py --kills 100 --seed 1
Prints kills per stage and the result of every check; exits 1 if a check failed and keeps
the evidence folder of each failed round (its path is printed, with a command that replays
the round's choices; the timing of a kill cannot be replayed, so to hit one narrow window
again use --aim, e.g. ``--kills 5 --aim shots:file:shots.json``). The checks are
importable (tests/test_crash_torture.py uses them).

Each round makes one film on the offline backends (template planner, storyboard frames,
Ken Burns clips, small and cheap) in its own folder: ``output/`` (which also holds a
finished neighbour session and a note), ``sentinel/`` next to it, and ``cwd/``, the runner's
working folder. The first run is ``reelforge run IDEA --new``; after every kill the round
goes on with ``reelforge run --resume`` or ``reelforge resume ID``. A round plans 2 to 6
kills (seeded), each aimed at a random moment after the start, or at a stage: wait for
the runner's ``→ Story`` ... ``→ Film`` line, then a random delay within that stage's usual
length (measured by a calibration run), or, for the narrow windows issue 8 names, spin
until the file that opens the window appears (the new session folder, its first meta,
shots.json, the film's partial file), then a delay of up to 1 ms. Where a kill landed is
read from the session after it.

After every kill:
  1. the session loads (SessionStore.load) and `sessions list` / `sessions view ID` exit 0
     without showing it UNREADABLE (a folder with no meta is accepted only if it holds
     nothing but its lock and temp files, and `sessions list` does not call it UNREADABLE);
  2. every artifact the meta marks done exists and matches its recorded sha256 and size;
  3. nothing done was redone: each done artifact's (path, sha256, inode, mtime_ns) is kept
     across kills; a changed digest, a new inode or mtime, or a reset counts as redone
     (nothing in this harness changes a shot's inputs, so every redo is a failure);
  4. no file or folder outside the round's session changed (snapshots of the round folder);
  5. no ffmpeg of the killed runner lives on: its live ffmpeg children are SIGSTOPped just
     before the kill and SIGCONTed after it, and the harness is a child subreaper, so
     they become its children: one that then dies of a signal died with its runner, one
     that exits on its own (while writing a file) kept working without it, and one still
     running after the grace is a survivor;
  6. nothing appeared under the runners' $TMPDIR (a folder the harness owns and hands every
     reelforge it starts): all scratch belongs in the session's .work/ (issue 15);
  7. the journal, read by the harness itself (not through the session's replay): each done
     record in it, including those not yet folded into the meta, names a file (or the
     scratch file of a rename the kill cut short) that matches its sha256 and size, and the
     loaded session agrees with it;
  and the backends and options recorded in the meta are the ones the round asked for.
At the end of a round the session must be COMPLETE, its film must match its digest and
decode with ``ffmpeg -v error -i film.mp4 -f null -`` without a word, and `sessions list`
and `sessions view` (real subprocesses) must exit 0.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IDEA = "A city of traders"
#: Where a kill can land, in pipeline order ("startup": the runner had not begun a step;
#: "finished": the work was done, the process was exiting).
STAGES = ("startup", "create", "story", "scene_graph", "shots", "images", "narration", "videos", "assemble",
          "finished")
#: What a kill can be aimed at.
TARGETS = ("create", "story", "scene_graph", "shots", "images", "narration", "videos", "assemble")
#: The runner's progress line that starts each stage (reelforge/progress.py).
MARKERS = {"story": "→ Story", "scene_graph": "→ Scenes", "shots": "→ Shots",
           "images": "→ Images", "narration": "→ Voice", "videos": "→ Videos", "assemble": "→ Film"}
#: Checks, in the order the table prints them.
CHECKS = {
    "unloadable": "session loads; sessions list/view exit 0, not UNREADABLE",
    "digest": "done artifacts missing or not matching sha256/size",
    "redone": "redone artifacts (done work reset or rewritten)",
    "outside": "files outside the session changed",
    "ffmpeg": "ffmpeg of a killed runner lived on (ran on / still running)",
    "options": "backends/options not kept as requested",
    "tmpdir": "files left under the runners' $TMPDIR",
    "journal": "journalled done records not matching their file",
    "resume": "runs that failed on their own (not killed)",
    "final": "rounds not ending COMPLETE with a decodable film",
}
#: How a kill at each stage may be triggered: the stage's progress line ("marker"), the new
#: session folder ("folder"), or a file appearing in the session ("file:REL", REL may be a glob).
TRIGGERS = {
    "create": ("folder", "file:{id}_meta.json"),       # inside create / before backends are recorded
    "story": ("marker",), "scene_graph": ("marker",),
    "shots": ("marker", "file:shots.json"),             # right after shots.json is written
    "images": ("marker", "file:images"), "narration": ("marker", "file:narration"),
    "videos": ("marker", "file:videos"),
    "assemble": ("marker", "file:.work/film*.partial.mp4"),  # while ffmpeg writes the film
}
GRACE_S = 1.5
PR_SET_CHILD_SUBREAPER = 36


def runner_env(tmpdir: Path | None = None) -> dict[str, str]:
    """The environment of every reelforge the harness starts: the checkout's code, only the
    built-in plugins, no retry waits; with ``tmpdir``, $TMPDIR (and TMP, TEMP) point there,
    so anything a run writes outside its session is seen (check 6)."""
    env = dict(os.environ)
    if tmpdir is not None:
        env.update(TMPDIR=str(tmpdir), TMP=str(tmpdir), TEMP=str(tmpdir))
    for key in ("REELFORGE_OUTPUT_DIR", "REELFORGE_PLUGINS", "REELFORGE_DISABLE_PLUGINS"):
        env.pop(key, None)
    env.update(REELFORGE_LOAD_PLUGINS="", REELFORGE_RETRY_BACKOFF="0",
               PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p))
    return env


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# -- files --------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    from reelforge.store.safefs import sha256_file as digest  # never through a link

    return digest(path)


def snapshot_tree(root: Path, exclude: Iterable[Path] = ()) -> dict[str, tuple]:
    """Every folder, file and link under ``root`` except the ``exclude`` folders:
    relative path -> ("dir",) | ("file", size, inode, mtime_ns, sha256) | ("link", target)."""
    root = Path(root)
    skip = {Path(p).resolve() for p in exclude}
    snap: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        keep = []
        for d in dirnames:
            p = here / d
            if p.resolve() in skip:
                continue
            if p.is_symlink():
                snap[p.relative_to(root).as_posix()] = ("link", os.readlink(p))
                continue
            snap[p.relative_to(root).as_posix()] = ("dir",)
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            p = here / f
            rel = p.relative_to(root).as_posix()
            try:
                if p.is_symlink():
                    snap[rel] = ("link", os.readlink(p))
                    continue
                st = p.stat()
                snap[rel] = ("file", st.st_size, st.st_ino, st.st_mtime_ns, sha256_file(p))
            except FileNotFoundError:
                continue
    return snap


def diff_snapshots(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """What changed between two snapshots, one line each."""
    out = []
    for rel in sorted(before.keys() | after.keys()):
        a, b = before.get(rel), after.get(rel)
        if a == b:
            continue
        if a is None:
            out.append(f"added {rel}")
        elif b is None:
            out.append(f"removed {rel}")
        elif a[0] != b[0]:
            out.append(f"{rel}: {a[0]} became {b[0]}")
        elif a[0] == "file":
            what = [name for name, i in (("size", 1), ("inode", 2), ("mtime", 3), ("content", 4)) if a[i] != b[i]]
            out.append(f"changed {rel} ({', '.join(what)})")
        else:
            out.append(f"changed {rel}")
    return out


# -- check 1: the session loads and the CLI shows it ---------------------------------------

def _cli(args: list[str]) -> tuple[int, str]:
    """Run a reelforge command in this process (click's test runner): (exit code, output)."""
    from click.testing import CliRunner

    from reelforge.cli.core import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    text = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f"\n{type(result.exception).__name__}: {result.exception}"
    return result.exit_code, text


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def check_session(out: Path, sid: str, cli: Callable[[list[str]], tuple[int, str]] = _cli) -> tuple[list[str], Any]:
    """Check 1. Returns (problems, the loaded Session or None)."""
    from reelforge.store.holder import HOLDER_NAME  # the lock holder's note beside .lock
    from reelforge.store.sessions import SessionStore

    store = SessionStore(out)
    path = store.path_for(sid)
    problems: list[str] = []
    code, text = cli(["sessions", "list", "--output-dir", str(out)])
    if code != 0:
        problems.append(f"`sessions list` exited {code}: {_tail(text)}")
    code, text = cli(["sessions", "list", "--json", "--output-dir", str(out)])
    row = None
    if code != 0:
        problems.append(f"`sessions list --json` exited {code}: {_tail(text)}")
    else:
        try:
            row = next((r for r in json.loads(text) if r.get("id") == sid), None)
        except (ValueError, AttributeError) as exc:
            problems.append(f"`sessions list --json` printed no JSON list ({exc})")
    unreadable = row is not None and row.get("status") == "UNREADABLE"
    if not path.is_dir():
        if row is not None:
            problems.append(f"`sessions list` shows {sid} ({row.get('status')}) but its folder is gone")
        return problems, None  # cleaned up: acceptable
    meta_path = path / f"{sid}_meta.json"
    if not meta_path.exists():
        extra = sorted(p.name for p in path.iterdir()
                       if p.name not in (".lock", HOLDER_NAME) and not (p.name.startswith(".") and p.name.endswith(".tmp")))
        if extra:
            problems.append(f"{sid} has no meta but holds {', '.join(extra)}")
        if unreadable:
            problems.append(f"{sid} has no meta (killed inside create) and `sessions list` shows it "
                            f"UNREADABLE: {row.get('error')}")
        return problems, None
    session = None
    try:
        session = store.load(sid)
    except Exception as exc:
        problems.append(f"SessionStore.load({sid}) failed: {type(exc).__name__}: {exc}")
    if unreadable:
        problems.append(f"`sessions list` shows {sid} UNREADABLE: {row.get('error')}")
    elif row is None and code == 0:
        problems.append(f"`sessions list` does not show {sid}")
    code, text = cli(["sessions", "view", sid, "--output-dir", str(out)])
    if code != 0:
        problems.append(f"`sessions view {sid}` exited {code}: {_tail(text)}")
    return problems, session


# -- check 2: done artifacts match their digests ---------------------------------------------

def done_artifacts(session) -> dict[str, Any]:
    """'shot 3 image' / 'shot 3 video' / 'film' -> ArtifactState, for those marked done."""
    from reelforge.store.meta import DONE

    found = {}
    for shot in session.meta.shots:
        for kind in ("image", "video"):
            art = getattr(shot, kind)
            if art.state == DONE:
                found[f"shot {shot.id} {kind}"] = art
    if session.meta.film.state == DONE:
        found["film"] = session.meta.film
    return found


def _artifact_file(session, art) -> Path | None:
    if not art.path:
        return None
    path = (session.path / art.path).resolve()
    return path if path.is_relative_to(session.path.resolve()) else None


def _pending_file(session, art) -> Path | None:
    """The scratch file of a commit a kill cut short: the done record is journalled before
    the rename (reelforge/session.py), and the next run finishes the rename."""
    pending = getattr(art, "pending", None)
    if not pending:
        return None
    path = (session.path / pending).resolve()
    return path if path.is_relative_to((session.path / ".work").resolve()) else None


def _current_file(session, art) -> Path | None:
    """Where a done artifact's bytes are now: its path, or its pending scratch file."""
    path = _artifact_file(session, art)
    if path is not None and not os.path.lexists(path):
        pending = _pending_file(session, art)
        if pending is not None and pending.is_file():
            return pending
    return path


def check_artifacts(session) -> list[str]:
    """Check 2: each done artifact exists inside the session and matches sha256 and size
    (a commit cut short counts if its scratch file is the recorded one)."""
    problems = []
    for key, art in done_artifacts(session).items():
        if _artifact_file(session, art) is None:
            problems.append(f"{key}: done but its path {art.path!r} is not inside the session")
            continue
        path = _current_file(session, art)
        name = art.path if path == _artifact_file(session, art) else f"{art.pending} (rename pending)"
        if not path.is_file():
            problems.append(f"{key}: done but {art.path} is missing")
        elif path.stat().st_size != art.size:
            problems.append(f"{key}: {name} is {path.stat().st_size} bytes, recorded {art.size}")
        elif sha256_file(path) != art.sha256:
            problems.append(f"{key}: {name} does not match its recorded sha256")
    return problems


# -- check 6: nothing under $TMPDIR ------------------------------------------------------------

def check_tmpdir(folder: Path, evidence: Path | None = None) -> list[str]:
    """Check 6: the runners' $TMPDIR holds nothing. What is there is reported, and moved into
    ``evidence`` (or removed) so that each leak counts once."""
    problems = []
    for name in _listdir(folder):
        path = folder / name
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else \
            os.lstat(path).st_size
        problems.append(f"$TMPDIR holds {name} ({size:,} bytes)")
        if evidence is not None:
            evidence.mkdir(parents=True, exist_ok=True)
            os.replace(path, evidence / name)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    return problems


# -- check 7: the journal's done records, read by the harness ------------------------------------

def journal_done_records(folder: Path) -> tuple[dict[tuple[int, str], dict], int]:
    """The done records journal.jsonl leaves standing ((shot, stage) -> the record's fields and
    its ``seq``), replayed here in order from the raw lines, and the meta's ``journal_seq``
    (records with a higher seq are in the journal only). A torn last line never counted."""
    meta_path = next(folder.glob("*_meta.json"), None)
    try:
        folded = int(json.loads(meta_path.read_text()).get("journal_seq") or 0) if meta_path else 0
    except (OSError, ValueError, AttributeError):
        folded = 0
    try:
        raw = (folder / "journal.jsonl").read_bytes()
    except FileNotFoundError:
        return {}, folded
    records: dict[tuple[int, str], dict] = {}
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # torn by the kill: the session ignores it too
        try:
            event = json.loads(line)
        except ValueError:
            break
        if not isinstance(event, dict) or event.get("op") != "shot" or not isinstance(event.get("set"), dict):
            continue
        key, fields = (event.get("shot"), event.get("stage")), event["set"]
        if "state" in fields:
            if fields["state"] == "done":
                records[key] = {**fields, "seq": event.get("seq")}
            else:
                records.pop(key, None)
        elif key in records:
            records[key].update(fields)
    return records, folded


def check_journal(folder: Path, session=None) -> tuple[list[str], int]:
    """Check 7: each done record the journal leaves standing names a file inside the session
    (its path, or the scratch file of a rename cut short) with the recorded size and sha256,
    and the loaded ``session`` (if any) has that record. Returns (problems, how many records
    were checked that are in the journal only, not yet folded into the meta)."""
    records, folded = journal_done_records(folder)
    problems, journal_only = [], 0
    root = folder.resolve()
    for (shot, stage), rec in sorted(records.items(), key=lambda kv: str(kv[0])):
        only = isinstance(rec.get("seq"), int) and rec["seq"] > folded
        journal_only += only
        key = f"journal seq {rec.get('seq')} (shot {shot} {stage}{', not yet in the meta' if only else ''})"
        path = (folder / str(rec.get("path"))).resolve()
        if not os.path.lexists(path) and rec.get("pending"):
            path = (folder / str(rec["pending"])).resolve()
        if not path.is_relative_to(root):
            problems.append(f"{key}: its file {path} is outside the session")
        elif not path.is_file():
            problems.append(f"{key}: {rec.get('path')} is missing")
        elif path.stat().st_size != rec.get("size"):
            problems.append(f"{key}: {rec.get('path')} is {path.stat().st_size} bytes, journalled {rec.get('size')}")
        elif sha256_file(path) != rec.get("sha256"):
            problems.append(f"{key}: {rec.get('path')} does not match its journalled sha256")
        if session is not None:
            try:
                art = session.shot_state(shot).artifact(stage)
            except (KeyError, TypeError):
                art = None
            if art is None or art.state != "done" or art.sha256 != rec.get("sha256"):
                problems.append(f"{key}: the loaded session does not have this done record")
    return problems, journal_only


# -- check 3: nothing done is redone -----------------------------------------------------------

@attrs.frozen
class LedgerEntry:
    path: str
    sha256: str | None
    inode: int | None
    mtime_ns: int | None


class Ledger:
    """Every artifact seen done, with its file's identity, kept across kills (check 3)."""

    def __init__(self):
        self.entries: dict[str, LedgerEntry] = {}

    def check(self, session) -> list[str]:
        """Problems for artifacts redone since the last check; then record what is done now."""
        problems = []
        current = done_artifacts(session)
        for key, old in list(self.entries.items()):
            art = current.get(key)
            if art is None:
                problems.append(f"{key}: was done ({old.path}, {str(old.sha256)[:12]}) and is now reset "
                                f"to be made again")
                del self.entries[key]
                continue
            new = self._entry(session, art)
            if (art.path, art.sha256) != (old.path, old.sha256):
                problems.append(f"{key}: re-made: {old.path} {str(old.sha256)[:12]} -> {art.path} "
                                f"{str(art.sha256)[:12]}")
            elif None not in (new.inode, old.inode) and (new.inode, new.mtime_ns) != (old.inode, old.mtime_ns):
                problems.append(f"{key}: {art.path} was rewritten (inode/mtime changed, same recorded digest)")
            self.entries[key] = new if new.inode is not None else old  # missing: check 2 says so
        for key, art in current.items():
            if key not in self.entries:
                self.entries[key] = self._entry(session, art)
        return problems

    @staticmethod
    def _entry(session, art) -> LedgerEntry:
        path = _current_file(session, art)  # a rename keeps the inode and mtime
        try:
            st = path.stat() if path is not None else None
        except OSError:
            st = None
        return LedgerEntry(art.path, art.sha256, st.st_ino if st else None, st.st_mtime_ns if st else None)


# -- the kept backends and options -------------------------------------------------------------

def check_options(session, requested: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    """The meta's backends and options are the requested ones (once any are recorded)."""
    backends = session.meta.backends
    if not backends:
        return []
    problems = []
    for kind, (name, options) in requested.items():
        got = backends.get(kind)
        if got is None:
            problems.append(f"no {kind} backend recorded (asked for {name})")
            continue
        if got.name != name:
            problems.append(f"{kind} backend is {got.name!r}, asked for {name!r}")
            continue
        for key, value in options.items():
            if str(got.options.get(key)) != str(value):
                problems.append(f"{kind} option {key} is {got.options.get(key)!r}, asked for {value!r}")
    if "story" in requested and "shots" in requested["story"][1] and session.meta.shots:
        want = int(requested["story"][1]["shots"])
        if len(session.meta.shots) != want:
            problems.append(f"the session has {len(session.meta.shots)} shots, asked for {want}")
    return problems


# -- the film decodes ------------------------------------------------------------------------

def film_problems(path: Path) -> str | None:
    """None if ``path`` decodes to the end with no error output, else what went wrong."""
    if not Path(path).is_file():
        return f"{path} is missing"
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=120)
    if proc.returncode != 0 or proc.stderr.strip():
        return f"ffmpeg -v error exited {proc.returncode}: {_tail(proc.stderr) or 'no message'}"
    return None


# -- where a kill landed ---------------------------------------------------------------------

def stage_at(out: Path, sid: str | None) -> str:
    """The step a killed runner was working on, from the session it left."""
    from reelforge.store.meta import COMPLETE, DONE
    from reelforge.store.sessions import SessionStore

    if sid is None:
        return "startup"
    path = Path(out) / "sessions" / sid
    if not path.is_dir():
        return "startup"
    if not (path / f"{sid}_meta.json").exists():
        return "create"
    try:
        meta = SessionStore(out).load(sid).meta
    except Exception:
        return "unloadable"
    if not meta.backends:
        return "create"
    for step in ("story", "scene_graph", "shots"):
        if meta.steps.get(step) != DONE:
            return step
    if not meta.shots or meta.counts("images")[0] < len(meta.shots):
        return "images"
    narrated = meta.backends.get("narration") is not None and meta.backends["narration"].name != "none"
    if narrated and meta.counts("narration")[0] < len(meta.shots):
        return "narration"
    if meta.counts("videos")[0] < len(meta.shots):
        return "videos"
    if meta.film.state != DONE or meta.status != COMPLETE:
        return "assemble"
    return "finished"


# -- check 5: ffmpeg of a killed runner -------------------------------------------------------

def _stat(pid: int) -> tuple[str, str, int, int] | None:
    """(comm, state, ppid, starttime) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    comm = data[data.index("(") + 1:data.rindex(")")]
    fields = data[data.rindex(")") + 2:].split()
    return comm, fields[0], int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def _is_ffmpeg(comm: str, cmd: list[str]) -> bool:
    return comm.startswith("ffmpeg") or bool(cmd and Path(cmd[0]).name.startswith("ffmpeg"))


def ffmpeg_processes(*, ppid: int | None = None, mentioning: str | None = None) -> dict[int, dict]:
    """Live ffmpeg processes (not zombies) whose parent is ``ppid`` or whose command line
    mentions ``mentioning``: pid -> {"start", "cmd"}."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        st = _stat(pid)
        if st is None or st[1] in ("Z", "X"):
            continue
        if ppid is not None and st[2] != ppid:
            continue
        cmd = _cmdline(pid)
        if not _is_ffmpeg(st[0], cmd):
            continue
        if mentioning is not None and not any(mentioning in a for a in cmd):
            continue
        found[pid] = {"start": st[3], "cmd": cmd}
    return found


def set_child_subreaper(on: bool = True) -> bool:
    """Make this process adopt its orphaned descendants (Linux), so their exit status tells
    whether they died with their runner. Returns whether it worked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@attrs.define
class Watched:
    pid: int
    start: int
    cmd: list[str]
    killed_at: float
    label: str
    kill: int | None = None
    resolved: bool = False


class FfmpegWatch:
    """ffmpeg processes of killed runners (check 5).

    The runner's live ffmpeg children are stopped just before the kill and let go right
    after it. With ``subreaper`` (this process adopts orphans) each is followed to its end:
    killed by a signal means it died with the runner; an exit of its own means it kept
    working without it. Either way, one still running ``grace`` seconds after the kill is a
    survivor (and is then stopped). Without a subreaper only the survivor rule applies."""

    def __init__(self, grace: float = GRACE_S, subreaper: bool = False):
        self.grace = grace
        self.subreaper = subreaper
        self.pending: list[Watched] = []
        self._pre: dict[int, dict] = {}
        self.reaped: dict[int, int] = {}
        #: Non-writing ffmpeg (probes) that exited on their own just after their runner died.
        self.harmless: list[str] = []
        #: ffmpeg alive when their runner was killed, and how many of them died of a signal.
        self.watched = 0
        self.died_with_runner = 0

    def before_kill(self, runner_pid: int) -> None:
        """Stop (SIGSTOP) the runner's live ffmpeg children just before it is killed: a
        stopped process cannot exit on its own, so how each one ends afterwards tells
        cleanly whether it died with its runner (a signal) or ran on (its own exit)."""
        self._pre = {}
        for pid, info in ffmpeg_processes(ppid=runner_pid).items():
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                continue
            deadline = time.monotonic() + 0.05
            while True:
                st = _stat(pid)
                if st is None or st[3] != info["start"] or st[1] in ("Z", "X"):
                    break  # it had already ended: not ours to judge
                if st[1] in ("T", "t"):
                    self._pre[pid] = info
                    break
                if time.monotonic() > deadline:
                    self._pre[pid] = info  # not stopped yet: judged by how it ends anyway
                    break

    def after_kill(self, runner_pid: int, label: str, mentioning: str | None = None,
                   kill: int | None = None) -> None:
        """Start following the ffmpeg of a runner that was just killed (and let the ones
        stopped by before_kill go on, if they are still alive)."""
        now = time.monotonic()
        for pid, info in self._pre.items():
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        found = {}
        if self.subreaper:
            found.update(ffmpeg_processes(ppid=os.getpid()))
        if mentioning:
            found.update(ffmpeg_processes(mentioning=mentioning))
        known = {w.pid for w in self.pending if not w.resolved}
        for pid, info in found.items():
            if pid not in known and pid not in self._pre and self._alive(pid, info["start"]):
                self.pending.append(Watched(pid, info["start"], info["cmd"], now, label, kill))
                self.watched += 1
        for pid, info in self._pre.items():  # alive at the kill, whatever they are now
            if pid not in known:
                self.pending.append(Watched(pid, info["start"], info["cmd"], now, label, kill))
                self.watched += 1
        self._pre = {}

    @staticmethod
    def _alive(pid: int, start: int) -> bool:
        st = _stat(pid)
        return st is not None and st[3] == start and st[1] not in ("Z", "X")

    def _reap(self) -> None:
        """Collect the exit status of watched ffmpeg we adopted (only those: reaping any
        child would steal the status of someone else's subprocess)."""
        if not self.subreaper:
            return
        for w in self.pending:
            if w.resolved or w.pid in self.reaped:
                continue
            try:
                pid, status = os.waitpid(w.pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if pid:
                self.reaped[pid] = status

    @staticmethod
    def reap_orphans() -> None:
        """Collect every adopted orphan that has ended; call only when no subprocess of ours
        is running (the harness does, between rounds)."""
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def poll(self, *, wait: bool = False) -> list[tuple[int | None, str]]:
        """Problems, as (kill number, text), with watched ffmpeg that have come to an end or
        outlived the grace. ``wait``: block until every watched one is resolved."""
        problems: list[tuple[int | None, str]] = []
        while True:
            self._reap()
            now = time.monotonic()
            for w in self.pending:
                if w.resolved:
                    continue
                what = _describe(w.cmd)
                if w.pid in self.reaped:
                    status = self.reaped.pop(w.pid)
                    w.resolved = True
                    if os.WIFSIGNALED(status):
                        self.died_with_runner += 1
                    if os.WIFEXITED(status):
                        text = (f"ffmpeg {w.pid} ({what}) was not killed with its runner ({w.label}): "
                                f"it ran on and exited with code {os.WEXITSTATUS(status)}")
                        if _writes(w.cmd):
                            problems.append((w.kill, text))
                        else:  # a probe or `-version` finishing a moment later harms nothing
                            self.harmless.append(text)
                    continue
                if not self._alive(w.pid, w.start):
                    st = _stat(w.pid)
                    if self.subreaper and st is not None and st[3] == w.start:
                        try:  # it turned zombie just now: its status is a moment away
                            self.reaped[w.pid] = os.waitpid(w.pid, 0)[1]
                            continue
                        except ChildProcessError:
                            pass
                    w.resolved = True
                    continue
                if now - w.killed_at > self.grace:
                    w.resolved = True
                    problems.append((w.kill, f"ffmpeg {w.pid} ({what}) still running {now - w.killed_at:.1f} s "
                                             f"after its runner was killed ({w.label})"))
                    try:
                        os.kill(w.pid, signal.SIGKILL)  # a descendant of ours: stop it
                        if self.subreaper:
                            os.waitpid(w.pid, 0)
                    except OSError:
                        pass
            if not wait or all(w.resolved for w in self.pending):
                break
            time.sleep(0.01)
        self.pending = [w for w in self.pending if not w.resolved]
        return problems


def _writes(cmd: list[str]) -> bool:
    """Whether an ffmpeg command line writes a file (reelforge's always pass -y)."""
    return "-y" in cmd


def _describe(cmd: list[str]) -> str:
    if not cmd:
        return "exiting, command line gone"
    if _writes(cmd):
        return f"writing {Path(cmd[-1]).name}"
    inputs = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "-i"]
    return f"reading {Path(inputs[0]).name}" if inputs else " ".join(cmd[1:4])


# -- running reelforge -----------------------------------------------------------------------

class _Output:
    """The runner's combined stdout/stderr, read without blocking, with arrival times."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.eof = False

    def _read(self, timeout: float) -> None:
        if self.eof:
            time.sleep(min(timeout, 0.005))
            return
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if ready:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if chunk:
                self.buf += chunk
            else:
                self.eof = True

    @property
    def text(self) -> str:
        return self.buf.decode("utf-8", "replace")

    def wait_for(self, marker: str, timeout: float) -> bool:
        """Read until a line starting with ``marker`` arrives (True) or the output ends."""
        needle = marker.encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.lstrip().startswith(needle) for line in self.buf.split(b"\n")[:-1]):
                return True
            if self.eof:
                return False
            self._read(deadline - time.monotonic())
        return False

    def drain(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())


@attrs.frozen
class Aim:
    target: str
    "The stage the kill is aimed at, or 'random'."
    trigger: str
    "What the delay counts from: start, marker (the stage's line), folder, file:REL."
    delay: float
    "Seconds after the trigger."


@attrs.define
class Attempt:
    args: list[str]
    aim: Aim | None
    killed: bool
    returncode: int | None
    output: str
    new_ids: list[str]
    seconds: float


@attrs.define
class Kill:
    round: int
    number: int
    command: str
    target: str
    trigger: str
    delay_ms: float
    stage: str


@attrs.define
class Failure:
    check: str
    round: int
    kill: int | None
    detail: str


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _matches(folder: Path, pattern: str) -> set[tuple[str, int, int]]:
    """(name, inode, mtime_ns) of what ``pattern`` (a path or a glob) matches in ``folder``."""
    paths = folder.glob(pattern) if any(c in pattern for c in "*?[") else [folder / pattern]
    found = set()
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        found.add((p.name, st.st_ino, st.st_mtime_ns))
    return found


def _busy_wait(proc: subprocess.Popen, found: Callable[[], Any], timeout: float = 120) -> Any:
    """Spin until ``found()`` returns something (returned) or the process ends (None): the
    windows aimed at are a millisecond or less, too short for sleeps."""
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        value = found()
        if value is not None:
            return value
        n += 1
        if n % 100 == 0 and (proc.poll() is not None or time.monotonic() > deadline):
            return None


def _session_ids(out: Path) -> set[str]:
    root = Path(out) / "sessions"
    try:
        return {p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("session_")}
    except FileNotFoundError:
        return set()


class Torture:
    """N seeded kills of real runs (see the module docstring)."""

    def __init__(self, kills: int, seed: int, workdir: Path, *, grace: float = GRACE_S,
                 only_round: int | None = None, tamper: bool = False, keep: bool = False,
                 aim: str | None = None,
                 log: Callable[[str], None] = print):
        self.kills_wanted = kills
        self.seed = seed
        self.work = Path(workdir)
        self.only_round = only_round
        self.tamper = tamper
        self.forced_aim = parse_aim(aim) if aim else None
        self.keep = keep
        self.log = log
        self.tmpdir = self.work / "tmpdir"  # the runners' $TMPDIR: must stay empty (check 6)
        self.env = runner_env(self.tmpdir)
        self.journal_only_checked = 0
        self.subreaper = set_child_subreaper(True)
        self.watch = FfmpegWatch(grace, subreaper=self.subreaper)
        self.kills: list[Kill] = []
        self.runner_s = 0.0  # wall time inside reelforge runs (the rest is the harness's own)
        self.calibration_s = 0.0
        self.failures: list[Failure] = []
        self.rounds: list[dict[str, Any]] = []
        self.evidence: list[str] = []
        self.windows: dict[str, float] = {}
        self.total_s: float = 1.0
        self.neighbour: Path | None = None
        self.tampered = False

    # -- setup
    @staticmethod
    def round_options(rng: random.Random) -> tuple[list[str], dict[str, tuple[str, dict[str, Any]]], bool]:
        shots = rng.choice((3, 4))
        opts = {"story": ("offline", {"shots": shots}),
                "image": ("storyboard", {"width": 320, "height": 180}),
                "video": ("kenburns", {"width": 320, "height": 180, "fps": 12, "preset": "ultrafast"})}
        pairs = []
        for kind, (name, values) in opts.items():
            pairs += [a for k, v in values.items() for a in ("-o", f"{name}.{k}={v}")]
        return pairs, opts, rng.random() < 0.5

    def _cmd(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "reelforge", *args]

    def calibrate(self) -> None:
        """One uninterrupted run per transition: how long each stage takes on this machine,
        and a finished session to put next to every round's (it must stay untouched)."""
        cal = self.work / "calibration"
        cal.mkdir(parents=True, exist_ok=True)
        pairs, _opts, _ = self.round_options(random.Random(0))
        gaps: dict[str, list[float]] = {}
        totals = []
        for transition in ("cut", "crossfade"):
            out = cal / f"output_{transition}"
            t0 = time.monotonic()
            proc = subprocess.Popen(self._cmd(["run", IDEA, "--new", "--output-dir", str(out), *pairs,
                                               "--transition", transition]),
                                    cwd=cal, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            seen: dict[str, float] = {}
            last_img = None
            text = []
            for raw in proc.stdout:
                line, t = raw.decode("utf-8", "replace").strip(), time.monotonic() - t0
                text.append(line)
                for stage, marker in MARKERS.items():
                    if line.startswith(marker):
                        seen[stage] = t
                if line.startswith("[IMG]"):
                    last_img = t
                if line.endswith("COMPLETE"):
                    seen["end"] = t
            proc.wait()
            totals.append(time.monotonic() - t0)
            if proc.returncode != 0 or "end" not in seen:
                raise SystemExit(f"calibration run failed (exit {proc.returncode}):\n" + "\n".join(text[-10:]))
            following = {"story": "scene_graph", "scene_graph": "shots", "shots": "images",
                         "videos": "assemble", "assemble": "end"}
            for stage, nxt in following.items():
                gaps.setdefault(stage, []).append(seen[nxt] - seen[stage])
            gaps.setdefault("images", []).append((last_img or seen["videos"]) - seen["images"])
            if "narration" in seen:  # voices are made beside the images: until the clips start
                gaps.setdefault("narration", []).append(max(0.002, seen["videos"] - seen["narration"]))
            if transition == "cut":
                self.neighbour = next((out / "sessions").iterdir())
        self.windows = {stage: max(0.002, max(values)) for stage, values in gaps.items()}
        self.windows["create"] = 0.004
        self.total_s = max(totals)
        self.log("calibration: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.windows.items())
                 + f", whole run {self.total_s:.2f} s")

    def _round_dir(self, r: int) -> tuple[Path, Path, Path]:
        rdir = self.work / f"round_{r:03d}"
        out, sentinel, cwd = rdir / "output", rdir / "sentinel", rdir / "cwd"
        for d in (out / "sessions", sentinel / "nested", cwd, rdir / "logs"):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.neighbour, out / "sessions" / self.neighbour.name, symlinks=True)
        (out / "NOTES.txt").write_text("not reelforge's: must stay as it is\n")
        (sentinel / "keep.bin").write_bytes(os.urandom(4096))
        (sentinel / "nested" / "keep.txt").write_text("sentinel\n")
        (cwd / "keep.txt").write_text("the runner's working folder\n")
        return rdir, out, cwd

    # -- one run, killed or not
    def attempt(self, args: list[str], out: Path, cwd: Path, aim: Aim | None, sid: str | None,
                label: str, kill_number: int | None = None) -> Attempt:
        """Run reelforge; with an ``aim``, wait for its trigger, then its delay, then SIGKILL."""
        before = _session_ids(out)
        t0 = time.monotonic()
        proc = subprocess.Popen(self._cmd(args), cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = _Output(proc)
        killed = False
        try:
            if aim is not None:
                reached, mark = self._trigger(aim, proc, reader, out, sid, before, t0)
                if reached:
                    pause = mark + aim.delay - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                if proc.poll() is None:
                    self.watch.before_kill(proc.pid)
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    killed = True
                    self.watch.after_kill(proc.pid, label, mentioning=str(out.parent), kill=kill_number)
            reader.drain()
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        new = sorted(_session_ids(out) - before)
        return Attempt(args, aim, killed, proc.returncode, reader.text, new, time.monotonic() - t0)

    def _trigger(self, aim: Aim, proc, reader: _Output, out: Path, sid: str | None, before: set[str],
                 t0: float) -> tuple[bool, float]:
        """Wait for the moment ``aim`` counts its delay from: (reached, when)."""
        if aim.trigger == "start":
            return True, t0
        if aim.trigger == "marker":
            ok = reader.wait_for(MARKERS[aim.target], timeout=120)
            return ok, time.monotonic()
        # A file trigger: the new session folder, or a file inside the session.
        root = out / "sessions"
        folder = root / sid if sid else None
        if folder is None:
            folder = _busy_wait(proc, lambda: next((root / n for n in _listdir(root) if n not in before), None))
            if folder is None:
                return False, time.monotonic()
        if aim.trigger == "folder":
            return True, time.monotonic()
        pattern = aim.trigger.split(":", 1)[1].replace("{id}", folder.name)
        old = _matches(folder, pattern)  # files left by an earlier run do not count: wait for a new one

        def appeared():
            return (_matches(folder, pattern) - old) or None

        ok = _busy_wait(proc, appeared) is not None
        return ok, time.monotonic()

    def plan(self, rng: random.Random) -> list[Aim]:
        """A round's kills: 2 to 6 distinct targets (stages in pipeline order, and maybe one
        random moment), each with its trigger and random delay."""
        picks = rng.sample((*TARGETS, "random"), rng.randint(2, 6))
        staged = sorted((p for p in picks if p != "random"), key=TARGETS.index)
        if "random" in picks:
            staged.insert(rng.randint(0, len(staged)), "random")
        return [self.aim(rng, t) for t in staged]

    def aim(self, rng: random.Random, target: str, trigger: str | None = None) -> Aim:
        """How to hit ``target``: the runner's stage line plus up to the stage's usual length,
        or, for the narrow windows the issue names, the file that opens them plus a little."""
        if target == "random":
            return Aim(target, "start", rng.uniform(0.0, self.total_s))
        trigger = trigger or rng.choice(TRIGGERS[target])
        if trigger == "marker":
            return Aim(target, trigger, rng.uniform(0.0, self.windows[target]))
        if trigger == "folder" and rng.random() < 0.5:
            return Aim(target, trigger, 0.0)
        return Aim(target, trigger, rng.uniform(0.0, 0.001))

    @staticmethod
    def reachable(target: str, current: str, fresh: bool) -> bool:
        """Whether a run that starts at ``current`` still passes through ``target``."""
        if target == "random" or fresh:
            return True
        return target != "create" and (current not in TARGETS or TARGETS.index(target) >= TARGETS.index(current))

    # -- rounds
    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(exist_ok=True)
        self.calibrate()
        self._fail("tmpdir", -1, None, check_tmpdir(self.tmpdir, self.work / "calibration" / "tmpdir-leak"))
        self.calibration_s = time.monotonic() - t0
        r = 0 if self.only_round is None else self.only_round
        while True:
            self.play_round(r)
            if self.only_round is not None or len(self.kills) >= self.kills_wanted:
                break
            r += 1
        self._ffmpeg(-1, self.watch.poll(wait=True))
        wall = time.monotonic() - t0
        return self.report(wall)

    def _fail(self, check: str, r: int, kill: int | None, details: Iterable[str]) -> int:
        n = 0
        for d in details:
            self.failures.append(Failure(check, r, kill, d))
            n += 1
        return n

    def _ffmpeg(self, r: int, found: list[tuple[int | None, str]]) -> None:
        for kill, text in found:
            self.failures.append(Failure("ffmpeg", r, kill, text))

    def play_round(self, r: int) -> None:
        rng = random.Random(f"{self.seed}:{r}")
        rdir, out, cwd = self._round_dir(r)
        pairs, requested, crossfade = self.round_options(rng)
        transition = ["--transition", "crossfade"] if crossfade else []
        plan = self.plan(rng)
        if self.forced_aim:  # --aim: every round kills once, there
            plan = [self.aim(rng, *self.forced_aim)]
        if self.tamper:  # a kill once the first image is done, so there is something to damage
            plan = [Aim("videos", "marker", 0.0)]
        own: set[str] = set()   # this round's session folders
        sid: str | None = None
        ledger = Ledger()
        baseline = snapshot_tree(rdir, exclude=[rdir / "logs"])
        failures_before = len(self.failures)
        kills_here = failed_runs = 0
        info: dict[str, Any] = {"round": r, "crossfade": crossfade, "kills": 0, "complete": False}
        stuck: str | None = None
        forced = False
        attempt_no = 0
        while True:
            attempt_no += 1
            fresh = sid is None
            if fresh:
                args = ["run", IDEA, "--new", "--output-dir", str(out), *pairs, *transition]
                current = "create"
            else:
                current = stage_at(out, sid)
                if current == "finished":
                    break
                args = (["run", "--resume"] if rng.random() < 0.5 else ["resume", sid]) + \
                       ["--output-dir", str(out), *transition]
            # Once a run has failed on its own, stop killing: see whether the session recovers.
            aim = None
            if len(self.kills) < self.kills_wanted and not failed_runs:
                if current == "create" and not fresh and not forced:
                    # No backends recorded: kill early to see what the resume records.
                    forced = True
                    aim = Aim("story", "marker", rng.uniform(0.0, self.windows["story"]))
                while plan and aim is None:
                    candidate = plan.pop(0)
                    if self.reachable(candidate.target, current, fresh) and (fresh or candidate.trigger != "folder"):
                        aim = candidate
            number = len(self.kills) + 1
            label = f"round {r}, kill {number}"
            att = self.attempt(args, out, cwd, aim, sid, label, number)
            self.runner_s += att.seconds
            (rdir / "logs" / f"attempt_{attempt_no:02d}.txt").write_text(
                f"$ reelforge {' '.join(args)}\naim={aim} killed={att.killed} exit={att.returncode}\n\n{att.output}")
            if fresh:
                own.update(att.new_ids)
                if len(att.new_ids) > 1:
                    self._fail("outside", r, None, [f"one `run --new` made {len(att.new_ids)} sessions: {att.new_ids}"])
                sid = att.new_ids[-1] if att.new_ids else None
            elif att.new_ids:
                own.update(att.new_ids)
                self._fail("outside", r, None, [f"`reelforge {' '.join(args[:2])}` made new session(s) {att.new_ids}"])
            kill_ref = None
            if att.killed:
                stage = stage_at(out, sid)
                if stage not in ("create", "unloadable") and not fresh and "Session " not in att.output:
                    stage = "startup"  # the runner had not opened the session yet
                command = "run --new" if fresh else " ".join(args[:2])
                self.kills.append(Kill(r, number, command, aim.target, aim.trigger, round(aim.delay * 1000, 3), stage))
                kills_here += 1
                kill_ref = number
            elif att.returncode != 0:
                failed_runs += 1
                self._fail("resume", r, None, [f"`reelforge {' '.join(args[:2])}` exited {att.returncode} on its "
                                               f"own: {_tail(att.output, 2)}"])
            if not fresh and args[:2] == ["run", "--resume"] and sid and "Session " in att.output \
                    and f"Session {sid}" not in att.output:
                self._fail("resume", r, kill_ref, [f"`run --resume` did not pick {sid}: {_tail(att.output, 2)}"])
            if self.tamper and not self.tampered and sid is not None and att.killed:
                self._tamper(out, sid)
            session = self.check_now(r, kill_ref, out, sid, rdir, own, ledger, baseline, requested)
            baseline = snapshot_tree(rdir, exclude=[rdir / "logs", *(out / "sessions" / s for s in own)])
            if sid is not None and session is None and not (out / "sessions" / sid / f"{sid}_meta.json").exists():
                sid = None  # killed inside create: nothing to resume, start a new session
                continue
            if session is not None and check_options(session, requested):
                stuck = "the resume ran on other backends/options than asked (see options)"
                break
            if not att.killed:
                if att.returncode == 0:
                    break
                if failed_runs >= 2:
                    stuck = "two runs in a row failed on their own (see resume)"
                    break
        info["kills"] = kills_here
        self.final_round_checks(r, out, sid, rdir, own, ledger, baseline, requested, stuck, info)
        if self.subreaper:
            self.watch.reap_orphans()
        self.rounds.append(info)
        if len(self.failures) > failures_before or self.keep:
            self.evidence.append(str(rdir))
        else:
            shutil.rmtree(rdir, ignore_errors=True)

    def check_now(self, r: int, kill: int | None, out: Path, sid: str | None, rdir: Path, own: set[str],
                  ledger: Ledger, baseline: dict, requested: dict) -> Any:
        """Checks 1-5 and the options, right after a run ended (killed or not)."""
        session = None
        if sid is not None:
            problems, session = check_session(out, sid)
            self._fail("unloadable", r, kill, problems)
        if session is not None:
            self._fail("digest", r, kill, check_artifacts(session))
            self._fail("redone", r, kill, ledger.check(session))
            lost = check_options(session, requested)
            self._fail("options", r, kill, ["; ".join(lost)] if lost else [])
            self._check_journal(r, kill, session)
        now = snapshot_tree(rdir, exclude=[rdir / "logs", *(out / "sessions" / s for s in own)])
        self._fail("outside", r, kill, diff_snapshots(baseline, now))
        self._fail("tmpdir", r, kill, check_tmpdir(self.tmpdir, rdir / "logs" / f"tmpdir-leak-{kill or 'end'}"))
        self._ffmpeg(r, self.watch.poll())
        return session

    def _check_journal(self, r: int, kill: int | None, session) -> None:
        problems, journal_only = check_journal(session.path, session)
        self.journal_only_checked += journal_only
        self._fail("journal", r, kill, problems)

    def final_round_checks(self, r, out, sid, rdir, own, ledger, baseline, requested, stuck, info) -> None:
        self._ffmpeg(r, self.watch.poll(wait=True))
        if sid is None:
            self._fail("final", r, None, ["the round ended with no session"])
            return
        problems, session = check_session(out, sid)
        self._fail("unloadable", r, None, problems)
        why = []
        if session is None:
            why.append("the session does not load")
        else:
            self._fail("digest", r, None, check_artifacts(session))
            self._fail("redone", r, None, ledger.check(session))
            self._check_journal(r, None, session)
            if session.meta.status != "COMPLETE":
                why.append(f"status {session.meta.status}" + (f"; the harness gave up: {stuck}" if stuck else ""))
            else:
                bad = film_problems(session.film_path)
                if bad:
                    why.append(f"film.mp4 does not decode: {bad}")
        # The real commands once per round, side by side (the per-kill checks run them in-process).
        procs = [(args, subprocess.Popen(self._cmd([*args, "--output-dir", str(out)]), cwd=rdir / "cwd",
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True))
                 for args in (["sessions", "list"], ["sessions", "view", sid])]
        for args, proc in procs:
            text, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                self._fail("unloadable", r, None, [f"`reelforge {' '.join(args)}` exited {proc.returncode}: "
                                                   f"{_tail(text)}"])
        now = snapshot_tree(rdir, exclude=[rdir / "logs", *(out / "sessions" / s for s in own)])
        self._fail("outside", r, None, diff_snapshots(baseline, now))
        self._fail("tmpdir", r, None, check_tmpdir(self.tmpdir, rdir / "logs" / "tmpdir-leak-end"))
        self._fail("final", r, None, why)
        info["complete"] = not why

    def _tamper(self, out: Path, sid: str) -> None:
        """Test hook (--tamper): damage one done artifact in place, keeping its size, so the
        checks must report it."""
        from reelforge.store.sessions import SessionStore

        try:
            session = SessionStore(out).load(sid)
        except Exception:
            return
        for art in done_artifacts(session).values():
            path = session.path / art.path
            with open(path, "r+b") as fh:
                fh.seek(art.size // 2)
                byte = fh.read(1)
                fh.seek(art.size // 2)
                fh.write(bytes([byte[0] ^ 0xFF]))
            self.tampered = True
            self.log(f"tampered with {path}")
            return

    # -- the report
    def report(self, wall: float) -> dict[str, Any]:
        stages = {s: 0 for s in STAGES}
        for k in self.kills:
            stages[k.stage] = stages.get(k.stage, 0) + 1
        counts = {c: 0 for c in CHECKS}
        for f in self.failures:
            counts[f.check] = counts.get(f.check, 0) + 1
        counts["final"] = sum(not i["complete"] for i in self.rounds)
        return {
            "seed": self.seed, "kills": len(self.kills), "rounds": len(self.rounds),
            "crossfade_rounds": sum(i["crossfade"] for i in self.rounds),
            "complete_rounds": sum(i["complete"] for i in self.rounds),
            "wall_s": round(wall, 2), "s_per_kill": round(wall / max(1, len(self.kills)), 3),
            "calibration_s": round(self.calibration_s, 2), "runner_s": round(self.runner_s, 2),
            "harness_s_per_kill": round((wall - self.calibration_s - self.runner_s) / max(1, len(self.kills)), 3),
            "harmless_ffmpeg": self.watch.harmless, "ffmpeg_watched": self.watch.watched,
            "ffmpeg_died_with_runner": self.watch.died_with_runner,
            "subreaper": self.subreaper, "journal_only_done_records_checked": self.journal_only_checked,
            "stages": stages, "targets": _count(k.target for k in self.kills),
            "checks": counts, "failures": [attrs.asdict(f) for f in self.failures],
            "kill_log": [attrs.asdict(k) for k in self.kills], "evidence": self.evidence,
            "ok": not self.failures and all(i["complete"] for i in self.rounds),
        }


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def format_report(rep: dict[str, Any], max_lines: int = 8) -> str:
    lines = [f"crash torture: {rep['kills']} kills, seed {rep['seed']}, {rep['rounds']} rounds "
             f"({rep['crossfade_rounds']} with crossfade)",
             f"wall {rep['wall_s']:.1f} s = {rep['s_per_kill']:.2f} s per kill (reelforge runs {rep['runner_s']:.1f} s, "
             f"calibration {rep['calibration_s']:.1f} s, the harness's own checks "
             f"{rep['harness_s_per_kill']:.2f} s per kill)", "", f"{'stage':<12} {'kills':>5}"]
    for stage, n in rep["stages"].items():
        lines.append(f"{stage:<12} {n:>5}")
    lines += [f"{'total':<12} {rep['kills']:>5}", "", f"{'check':<62} {'failures':>8}"]
    for check, text in CHECKS.items():
        n = rep["checks"].get(check, 0)
        if check == "final":
            text = f"{text} ({rep['complete_rounds']}/{rep['rounds']} ok)"
        lines.append(f"{text:<62} {n:>8}")
    lines.append(f"(not failing) ffmpeg alive at a kill: {rep['ffmpeg_watched']}, of which died with their "
                 f"runner: {rep['ffmpeg_died_with_runner']}; probes/-version that ended just after it: "
                 f"{len(rep['harmless_ffmpeg'])}")
    lines.append(f"(not failing) done records checked while still in the journal only (not yet in the meta): "
                 f"{rep['journal_only_done_records_checked']}")
    lines.append("")
    lines.append("RESULT: " + ("PASS" if rep["ok"] else "FAIL"))
    by_check: dict[str, list[dict]] = {}
    for f in rep["failures"]:
        by_check.setdefault(f["check"], []).append(f)
    for check, items in by_check.items():
        lines.append(f"\n{check}: {len(items)}")
        shown = set()
        for f in items[:max_lines]:
            where = f"round {f['round']}" + (f", kill {f['kill']}" if f["kill"] else "")
            lines.append(f"  [{where}] {f['detail']}")
            if f["round"] >= 0 and f["round"] not in shown:
                shown.add(f["round"])
                lines.append(f"      reproduce: python bench/crash_torture.py --seed {rep['seed']} --round {f['round']}")
        if len(items) > max_lines:
            lines.append(f"  ... and {len(items) - max_lines} more (see --json)")
    if rep["evidence"]:
        lines.append("\nevidence kept (failed rounds): ")
        lines += [f"  {p}" for p in rep["evidence"]]
    return "\n".join(lines)


def parse_aim(text: str) -> tuple[str, str | None]:
    """``TARGET`` or ``TARGET:TRIGGER`` (e.g. ``shots:file:shots.json``), checked."""
    target, _, trigger = text.partition(":")
    if target not in TARGETS:
        raise SystemExit(f"--aim: unknown target {target!r} (use one of {', '.join(TARGETS)})")
    if trigger and trigger not in TRIGGERS[target]:
        raise SystemExit(f"--aim: {target} has no trigger {trigger!r} (use one of {', '.join(TRIGGERS[target])})")
    return target, trigger or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100, help="how many SIGKILLs (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    parser.add_argument("--round", type=int, default=None,
                        help="replay only this round's choices (the timing of a kill is not replayed)")
    parser.add_argument("--aim", default=None, metavar="TARGET[:TRIGGER]",
                        help="kill every round once, at this target (e.g. shots:file:shots.json, "
                             "create:folder, assemble:file:.work/film*.partial.mp4)")
    parser.add_argument("--workdir", type=Path, default=None, help="where rounds run (default: a temp folder)")
    parser.add_argument("--grace", type=float, default=GRACE_S, help="seconds an orphaned ffmpeg may take to die")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report here")
    parser.add_argument("--keep", action="store_true", help="keep every round's folder, not only failed ones")
    parser.add_argument("--tamper", action="store_true", help=argparse.SUPPRESS)  # proves the checks fire
    args = parser.parse_args(argv)
    os.environ.update(REELFORGE_LOAD_PLUGINS="", REELFORGE_RETRY_BACKOFF="0")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="reelforge-torture-"))
    torture = Torture(args.kills, args.seed, work, grace=args.grace, only_round=args.round,
                      tamper=args.tamper, keep=args.keep, aim=args.aim, log=lambda s: print(s, flush=True))
    rep = torture.run()
    if args.json:
        args.json.write_text(json.dumps(rep, indent=2))
    print(format_report(rep))
    if rep["ok"] and not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    elif rep["evidence"] or args.keep:
        print(f"work folder: {work}")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
