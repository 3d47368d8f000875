"""Issue 15 items 1, 2 and 6: the music bed stays inside its session, a key echoed in a normal
LLM answer reaches no file, page, export or terminal, and the small ones (a key in a base
URL's query, formula cells in CSV, Unicode digits in the web form, a bad complete last
journal line)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reelforge.media import film
from reelforge.cli.core import cli
from reelforge.errors import SessionCorruptError
from reelforge.media.ffmpeg import ffmpeg_exe
from reelforge.records import Shot, ShotPlan
from reelforge.redact import forget_secrets
from reelforge.store.safefs import sha256_file
from reelforge.store.sessions import SessionStore
from reelforge.testing import run_session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "story_llm"))  # the LLM fakes are imported as `fake_llm`

import fake_llm  # noqa: E402
from fake_llm import chat_completion, film_content  # noqa: E402

KEY = "sk-echoed-7f3a9c2e5b1d4f60aa"

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def invoke(out, *args):
    return CliRunner().invoke(cli, [*args, "--output-dir", str(out)], catch_exceptions=False)


def files_holding(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` whose bytes hold ``needle`` (links are not followed)."""
    return [str(p) for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and needle.encode() in p.read_bytes()]


def edit_meta(session_path: Path, change) -> Path:
    [meta] = session_path.glob("*_meta.json")
    data = json.loads(meta.read_text())
    change(data)
    meta.write_text(json.dumps(data, indent=2))
    return meta


# -- item 1: the music bed is music.<ext> at the session root, nothing else ---------------

@pytest.fixture
def with_music(out, fakes, tmp_path):
    """A finished narrated session with a music bed copied in."""
    bed = tmp_path / "bed.wav"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=220:d=2", "-y", str(bed)],
                   check=True)
    result = run_session(out, "A lighthouse", backends=fakes.narrated, music=bed)
    assert result.ok, result.failed
    assert SessionStore(out).load(result.session_id).meta.film_settings["music"] == "music.wav"
    return result


@pytest.mark.parametrize("where", ["../../private.wav", "absolute", "narration/music.wav", "private.wav",
                                   "music.wav/../../../private.wav", ".work/music.wav"])
def test_a_meta_whose_music_is_not_the_sessions_own_is_refused_naming_the_meta(out, with_music, where, tmp_path):
    private = out / "private.wav"  # what ../../private.wav reaches from out/sessions/<id>/
    shutil.copy(with_music.path / "music.wav", private)
    (with_music.path / "narration" / "music.wav").write_bytes(private.read_bytes())
    name = str(private) if where == "absolute" else where
    meta = edit_meta(with_music.path, lambda d: d["film_settings"].update(music=name))
    film_sha = sha256_file(with_music.film)
    r = invoke(out, "resume", with_music.session_id)
    assert r.exit_code != 0, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1, r.output  # one clear line, naming the meta and the setting
    assert str(meta) in lines[0] and "film_settings.music" in lines[0]
    assert sha256_file(with_music.film) == film_sha  # film.mp4 was not made from it
    assert not (with_music.path / ".replaced").exists() or not list((with_music.path / ".replaced").glob("film*"))
    # export --timeline records no outside path either: the session is refused as a whole
    target = tmp_path / "t.otio"
    r = invoke(out, "export", with_music.session_id, "--timeline", str(target))
    assert r.exit_code != 0 and "film_settings.music" in r.output
    assert not target.exists()


def test_a_symlinked_music_file_is_refused_and_never_followed(out, with_music, fakes, tmp_path):
    outside = tmp_path / "private.wav"
    shutil.copy(with_music.path / "music.wav", outside)
    (with_music.path / "music.wav").unlink()
    (with_music.path / "music.wav").symlink_to(outside)
    edit_meta(with_music.path, lambda d: d["film_settings"].update(music_under_lu=24.0))  # the film must be remade
    film_sha = sha256_file(with_music.film)
    r = invoke(out, "resume", with_music.session_id)
    assert r.exit_code != 0, r.output
    assert "music.wav" in r.output and "symbolic link" in r.output
    assert sha256_file(with_music.film) == film_sha
    # a link swapped in after the check is not followed either: ffmpeg only reads the copy
    with pytest.raises(SessionCorruptError, match="symbolic link"):
        film.copy_music(with_music.path / "music.wav", tmp_path / "copy.wav", "0" * 64)
    assert not (tmp_path / "copy.wav").exists()


def test_the_music_is_copied_in_under_its_one_name_and_bundled(out, with_music, tmp_path):
    assert sorted(p.name for p in with_music.path.glob("music*")) == ["music.wav"]
    bundle = tmp_path / "bundle"
    assert invoke(out, "export", with_music.session_id, "--bundle", str(bundle)).exit_code == 0
    assert (bundle / "music.wav").read_bytes() == (with_music.path / "music.wav").read_bytes()
    # odd suffixes become plain ASCII ones
    assert film.adopt_music(tmp_path, _touch(tmp_path / "x.WÄV")) == "music.wv"
    assert film.adopt_music(tmp_path, _touch(tmp_path / "noext")) == "music.audio"


def _touch(path: Path) -> Path:
    path.write_bytes(b"RIFF")
    return path


# -- item 2: a key echoed in a 200 answer reaches nothing ----------------------------------

def _echoing(seen):
    """A chat server that answers well, but puts the caller's key into the story's title and
    logline and into every shot's prompts and narration."""
    key = seen.headers.get("authorization", "").removeprefix("Bearer ")
    content = json.loads(json.dumps(film_content(seen)))
    if "title" in content:
        content["title"] = f"The {key} Keeper"
        content["logline"] = f"A keeper whose key is {key} relights the lamp."
    for shot in content.get("shots", []):
        shot["image_prompt"] = f"{key} lighthouse at night"
        shot["narration"] = f"The key {key} opens the lamp room."
    return chat_completion(content)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": KEY, "REELFORGE_RETRY_BACKOFF": "0", "REELFORGE_LOAD_PLUGINS": "",
            "REELFORGE_PLUGINS": "crash_plugin", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), **extra}


def _reelforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "reelforge", *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=300, stdin=subprocess.DEVNULL)
    return proc


@pytest.fixture(scope="module")
def echoed(tmp_path_factory):
    """`reelforge run` as a user runs it (a subprocess), against a chat server on 127.0.0.1
    that echoes the key inside a normal 200 answer."""
    tmp = tmp_path_factory.mktemp("echoed")
    out = tmp / "output"
    with fake_llm.serving() as server:
        server.responder = _echoing
        proc = _reelforge("run", "A lighthouse keeper", "--new", "--story-llm", "openai",
                          "-o", f"openai.base_url={server.url}/v1", "-o", "openai.model=fake-1",
                          "-o", "openai.shots=3", "--image-gen", "crashtest", "--renderer", "crashtest",
                          "--narrator", "crashtest", "--output-dir", str(out), cwd=tmp)
        asked = list(server.requests)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert asked and all(r.headers["authorization"] == f"Bearer {KEY}" for r in asked)
    [path] = (out / "sessions").iterdir()
    return tmp, out, path, proc.stdout + proc.stderr


def test_a_key_echoed_in_a_200_answer_is_in_no_session_file_and_no_terminal(echoed):
    tmp, out, path, terminal = echoed
    story = json.loads((path / "story.json").read_text())
    assert story["title"] == "The *** Keeper"  # the answer was used, the key masked before it was saved
    shots = json.loads((path / "shots.json").read_text())["shots"]
    assert all(s["image_prompt"].startswith("*** lighthouse at night") for s in shots)
    assert "The key *** opens the lamp room." in (path / "film.srt").read_text()
    assert not files_holding(out, KEY) and not files_holding(out, KEY[3:])
    assert KEY not in terminal and KEY[3:] not in terminal


def test_report_and_every_export_publish_no_key(echoed):
    tmp, out, path, _ = echoed
    outputs = []
    for args in (["report", "latest"],
                 *(["export", "latest", "--prompts", "--format", fmt, "-o", str(tmp / f"p.{fmt}")]
                   for fmt in ("json", "csv", "txt")),
                 ["export", "latest", "--prompts", "--format", "txt"],
                 ["export", "latest", "--bundle", str(tmp / "bundle")],
                 ["export", "latest", "--timeline", str(tmp / "t.otio")]):
        proc = _reelforge(*args, "--output-dir", str(out), cwd=tmp)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    assert "*** lighthouse at night" in (tmp / "p.csv").read_text()
    assert not files_holding(tmp, KEY) and not files_holding(tmp, KEY[3:])
    assert not [o for o in outputs if KEY in o]


@pytest.fixture
def older(echoed, tmp_path):
    """A copy of the echoed session as an older reelforge left it: the key saved in its
    story, its shot plan and its subtitles."""
    _, _, path, _ = echoed
    out = tmp_path / "output"
    shutil.copytree(path, out / "sessions" / path.name, symlinks=True)
    copy = out / "sessions" / path.name
    for name in ("story.json", "shots.json", "film.vtt", "film.srt"):
        (copy / name).write_text((copy / name).read_text().replace("***", KEY))
    shots = json.loads((copy / "shots.json").read_text())
    shots["shots"][0]["description"] = f"shot 1 with {KEY}"  # shown by `sessions view`
    (copy / "shots.json").write_text(json.dumps(shots))
    for f in copy.glob("index.html"):
        f.unlink()
    assert files_holding(copy, KEY)
    return out, copy


def test_a_key_an_older_version_saved_is_not_published_by_report_or_export(older, tmp_path):
    out, copy = older
    proc = _reelforge("report", "latest", "--output-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = (copy / "index.html").read_text()
    assert "The *** Keeper" in page and KEY not in page
    exports = tmp_path / "exports"
    exports.mkdir()
    for args in (["--prompts", "--format", "csv", "-o", str(exports / "p.csv")],
                 ["--bundle", str(exports / "bundle")], ["--timeline", str(exports / "t.otio")]):
        proc = _reelforge("export", "latest", *args, "--output-dir", str(out), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert KEY not in proc.stdout + proc.stderr
    assert not files_holding(exports, KEY)
    assert json.loads((exports / "bundle" / "story.json").read_text())["title"] == "The *** Keeper"
    proc = _reelforge("sessions", "view", "latest", "--output-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0 and KEY not in proc.stdout + proc.stderr, proc.stderr


def test_the_served_pages_and_state_show_no_key_an_older_version_saved(older, monkeypatch):
    from starlette.testclient import TestClient

    from reelforge.web.app import create_app

    out, copy = older
    forget_secrets()  # this process learns the key only as `reelforge serve` would: from the environment
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    c = TestClient(create_app(out, csrf_token="t"), base_url="http://127.0.0.1:8765")
    sid = copy.name
    bodies = [c.get(url) for url in ("/", f"/s/{sid}", f"/s/{sid}/state.json", f"/s/{sid}/fragment/shots",
                                     f"/s/{sid}/fragment/summary", f"/s/{sid}/media/film.vtt",
                                     f"/s/{sid}/media/film.srt")]
    assert all(r.status_code == 200 for r in bodies), [r.status_code for r in bodies]
    assert c.get(f"/s/{sid}/state.json").json()["story"]["title"] == "The *** Keeper"
    assert "***" in bodies[5].text
    assert not [r.request.url for r in bodies if KEY in r.text]


# -- item 6: the small ones ------------------------------------------------------------------

@pytest.mark.parametrize("backend, url, env_hint", [
    ("openai", "http://127.0.0.1:9/v1?api_key=sk-inquery-5d1e2f3a4b", "OPENAI_API_KEY"),
    ("openai", "http://127.0.0.1:9/v1?model=x&key=sk-inquery-5d1e2f3a4b", "OPENAI_API_KEY"),
    ("openai", "http://127.0.0.1:9/v1?APIKEY=sk-inquery-5d1e2f3a4b", "OPENAI_API_KEY"),
    ("openai", "http://127.0.0.1:9/v1?access_token=sk-inquery-5d1e2f3a4b", "OPENAI_API_KEY"),
    ("ollama", "http://127.0.0.1:9/?token=sk-inquery-5d1e2f3a4b", "api_key_env"),
])
def test_a_key_in_a_base_urls_query_is_refused_naming_the_env_var(out, backend, url, env_hint):
    r = CliRunner().invoke(cli, ["run", "x", "--new", "--story-llm", backend, "-o", f"{backend}.base_url={url}",
                                 "--output-dir", str(out)])
    assert r.exit_code == 2, r.output
    assert "carries a key in its query" in r.output and "=***" in r.output and env_hint in r.output
    assert "sk-inquery-5d1e2f3a4b" not in r.output
    assert not (out / "sessions").exists()


def test_csv_cells_a_spreadsheet_would_run_are_quoted(out):
    store = SessionStore(out)
    s = store.create("idea")
    s.save_step_output("shots", ShotPlan((
        Shot(id=1, scene_id="s1", description='=HYPERLINK("http://evil.example","x")', image_prompt="+cmd|' /C calc'!A0",
             motion_prompt="-2+3", negative_prompt="@SUM(A1)", narration="plain words"),
        Shot(id=2, scene_id="s1", description="\tpadded", image_prompt="\rreturn", narration="a - b = c"),
    )))
    s.close()
    target = out.parent / "p.csv"
    assert invoke(out, "export", s.id, "--prompts", "--format", "csv", "-o", str(target)).exit_code == 0
    with open(target, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["description"] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows[0]["image_prompt"] == "'+cmd|' /C calc'!A0"
    assert rows[0]["motion_prompt"] == "'-2+3" and rows[0]["negative_prompt"] == "'@SUM(A1)"
    assert rows[1]["description"] == "'\tpadded" and rows[1]["image_prompt"] == "'\rreturn"
    assert rows[0]["narration"] == "plain words" and rows[1]["narration"] == "a - b = c"  # only a leading sign
    # the other formats keep the text exactly
    data = json.loads(CliRunner().invoke(cli, ["export", s.id, "--prompts", "--output-dir", str(out)]).output)
    assert data["shots"][0]["motion_prompt"] == "-2+3"


@pytest.mark.parametrize("shot", ["٣", "３", "³", "3\u0663"])
def test_the_web_form_takes_only_ascii_digits_for_a_shot(out, fakes, shot):
    from starlette.testclient import TestClient

    from reelforge.web.app import create_app

    result = run_session(out, "A harbour", backends=fakes.backends)
    started = []
    c = TestClient(create_app(out, csrf_token="t", runner_factory=lambda: started.append(1)),
                   base_url="http://127.0.0.1:8765")
    r = c.post(f"/s/{result.session_id}/redo", data={"csrf": "t", "shot": shot, "stage": "image"},
               headers={"Accept": "application/json"})
    assert r.status_code == 400 and "shot must be a whole number (digits 0-9)" in r.json()["message"]
    assert c.get(f"/s/{result.session_id}/fragment/shot-\u0663").status_code == 404
    assert started == []


def test_a_complete_last_journal_line_that_fails_validation_is_warned_about(out, tmp_path):
    store = SessionStore(out)
    s = store.create("idea")
    s.save_step_output("shots", ShotPlan(tuple(Shot(id=i, scene_id="s1", description=f"d{i}", image_prompt="p")
                                               for i in (1, 2))))
    s.mark_shot_started("images", 1)
    s._journal.close(); s._journal = None
    s._lock_file.release(); s._lock_file = None  # as after a crash: no compaction
    with open(s.journal_path, "ab") as fh:
        fh.write(b'{"seq": 99, "op": "shot", "shot": 2, "stage": "images", "set": {"state": "finished"}}\n')
    with pytest.warns(RuntimeWarning) as caught:
        loaded = store.load(s.id)
    [warning] = [w for w in caught if "journal" in str(w.message)]
    text = str(warning.message)
    assert str(s.journal_path) in text and "line 2" in text and "state 'finished'" in text
    assert loaded.meta.shot(1).image.attempts == 1 and loaded.meta.shot(2).image.state == "todo"
    # a torn line (no newline: a crash mid-append) is still left out quietly
    s.journal_path.write_bytes(s.journal_path.read_bytes().rsplit(b"\n", 2)[0] + b"\n" + b'{"seq": 99, "op"')
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.load(s.id)


def test_a_query_key_in_any_text_is_masked_and_redacted_json_stays_json():
    from reelforge.redact import redact

    text = json.dumps({"a": 'GET http://h/v1?api_key=sk-q-123456&m=1 said "no"', "b": 'x?token=abc"def',
                       "c": "y?access_token=t0k\\nz"})
    masked = json.loads(redact(text))
    assert masked == {"a": 'GET http://h/v1?api_key=***&m=1 said "no"', "b": 'x?token=***"def',
                      "c": "y?access_token=***\\nz"}
