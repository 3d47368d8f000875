"""The engine seam: engines register through a hook, are chosen by name, and a toy engine
makes the same session files and film as the built-in ``local`` one."""

from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner

import reelforge
from reelforge.engine.base import Engine, ShotWork
from reelforge.engine.plugins import engines
from reelforge.errors import ConfigError
from reelforge.store.sessions import SessionStore
from reelforge.testing import registered, run_session


class SerialEngine(Engine):
    """Strictly one unit at a time, in the order they become ready: a toy engine."""

    name = "serial"
    runs: list[list[tuple[str, int]]] = []
    most_at_once = 0

    def run_shots(self, work: ShotWork) -> None:
        order: list[tuple[str, int]] = []
        type(self).runs.append(order)
        busy = threading.Semaphore(1)
        while ready := work.take_ready():
            for unit in ready:
                task = work.begin(unit)
                if task is None:
                    continue
                assert busy.acquire(blocking=False), "two units ran at once"
                order.append((unit.stage, unit.shot_id))
                try:
                    result = task()
                except Exception as exc:
                    work.finish(unit, error=exc)
                else:
                    work.finish(unit, result=result)
                finally:
                    busy.release()


class SerialPlugin:
    @reelforge.hookimpl
    def register_engines(self, register):
        register(SerialEngine)


OFFLINE = {"story": "offline", "image": "storyboard", "video": "kenburns", "narration": "espeak"}


def test_a_toy_engine_makes_the_same_session_files_and_film_as_local(tmp_path, fakes):
    # The offline planner, storyboard and Ken Burns are deterministic; eSpeak is not
    # bit-exact from run to run, so the voices come from the (deterministic) fake narrator.
    backends = {**OFFLINE, "narration": fakes.narration.name}
    SerialEngine.runs.clear()
    with registered(SerialPlugin()):
        serial = run_session(tmp_path / "serial", "A glassblower's last commission", backends=backends,
                             options={"shots": 3}, engine="serial")
    local = run_session(tmp_path / "local", "A glassblower's last commission", backends=backends,
                        options={"shots": 3}, engine="local")
    assert serial.ok and local.ok
    # Every unit ran under the toy engine, one at a time, a clip only after its image and voice.
    order = SerialEngine.runs[0]
    assert sorted(order) == sorted((stage, i) for stage in ("images", "narration", "videos") for i in (1, 2, 3))
    for i in (1, 2, 3):
        assert order.index(("videos", i)) > max(order.index(("images", i)), order.index(("narration", i)))

    def made(out, sid):
        session = SessionStore(out).load(sid)
        shots = {s.id: (s.image.sha256, s.narration.sha256, s.video.sha256) for s in session.meta.shots}
        files = sorted(p.relative_to(session.path).as_posix().replace(sid, "ID")
                       for p in session.path.rglob("*") if p.is_file() and p.name != ".lock")
        steps = {name: (session.path / name).read_bytes() for name in ("story.json", "shots.json")}
        return shots, files, steps, session.meta.film.sha256

    s_shots, s_files, s_steps, s_film = made(tmp_path / "serial", serial.session_id)
    l_shots, l_files, l_steps, l_film = made(tmp_path / "local", local.session_id)
    assert s_files == l_files
    assert s_steps == l_steps
    assert s_shots == l_shots and all(all(d) for d in s_shots.values())
    assert s_film == l_film and (serial.film.read_bytes() == local.film.read_bytes())


def test_a_resume_under_another_engine_does_only_what_remains(tmp_path, fakes):
    fakes.video.fail(2, reelforge.StageError("model exploded"))
    first = run_session(tmp_path, "idea", backends=fakes.backends)
    assert not first.ok
    SerialEngine.runs.clear()
    with registered(SerialPlugin()):
        again = run_session(tmp_path, "", backends=fakes.backends, resume=first.session_id, engine="serial")
    assert again.ok
    assert SerialEngine.runs == [[("videos", 2)]]


def test_engines_are_registered_and_chosen_by_name(tmp_path, monkeypatch):
    assert "local" in engines()
    with pytest.raises(ConfigError, match=r"unknown engine 'warp'; installed: dbos, local"):
        reelforge.Runner(tmp_path, engine="warp")
    monkeypatch.setenv("REELFORGE_ENGINE", "warp")
    with pytest.raises(ConfigError, match="unknown engine 'warp'"):
        reelforge.Runner(tmp_path)
    monkeypatch.setenv("REELFORGE_ENGINE", "serial")
    with registered(SerialPlugin()):
        assert reelforge.Runner(tmp_path).engine_class is SerialEngine
        assert reelforge.Runner(tmp_path, engine="local").engine_class.name == "local"


def test_the_cli_and_reelforge_toml_choose_the_engine(tmp_path, monkeypatch):
    from reelforge.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REELFORGE_ENGINE", raising=False)
    SerialEngine.runs.clear()
    with registered(SerialPlugin()):
        r = CliRunner().invoke(cli, ["run", "A storm", "--new", "--engine", "serial", "-o", "shots=2",
                                     "--narrator", "none", "--output-dir", "o1"])
        assert r.exit_code == 0, r.output
        assert len(SerialEngine.runs) == 1
        (tmp_path / "reelforge.toml").write_text('engine = "serial"\n')
        r = CliRunner().invoke(cli, ["run", "A storm", "--new", "-o", "shots=2", "--narrator", "none",
                                     "--output-dir", "o2"])
        assert r.exit_code == 0, r.output
        assert len(SerialEngine.runs) == 2
    r = CliRunner().invoke(cli, ["run", "A storm", "--new", "--engine", "warp", "--output-dir", "o3"])
    assert r.exit_code != 0 and "unknown engine 'warp'; installed: dbos, local" in r.output
    (tmp_path / "reelforge.toml").write_text("engine = 3\n")
    r = CliRunner().invoke(cli, ["run", "A storm", "--new", "--output-dir", "o4"])
    assert r.exit_code != 0 and "engine must be a string" in r.output
    assert not any((tmp_path / "o3").rglob("meta.json"))  # refused before any session exists
