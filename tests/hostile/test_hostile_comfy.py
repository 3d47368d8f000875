"""A hostile or broken ComfyUI (the fake, really listening on 127.0.0.1): floods, trickles,
absurd nesting, wrong shapes, giant websocket frames, escaping file names, echoed
credentials. Each must end in a clear error within a bound, never a hang, a traceback, a
file outside the work folder, or a secret on disk."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from comfy.test_comfy_backends import renderer
from comfy.test_comfy_cli import comfy_args, only_session
from reelforge.cli.core import cli
from reelforge.errors import ConfigError, RetryableServiceError, ServiceError, StageError
from reelforge.store.sessions import SessionStore
from reelforge.plugins.comfy_render.client import ComfyClient, ComfyError, EventStream, Limits, Timeouts

from .conftest import files_holding

MIB = 1024 * 1024
VIEW_ITEM = {"filename": "a.png", "subfolder": "", "type": "output"}


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


# -- item 10: bounded downloads and answers ------------------------------------------

def test_a_chunked_300_mb_view_is_refused_at_the_default_cap(comfy, tmp_path):
    comfy.hostile["view"] = "flood"  # 300 MB of chunked junk with no Content-Length
    with pytest.raises(ComfyError, match=r"refusing output 'a.png': the answer passed the 256.0 MiB limit"):
        ComfyClient(comfy.url).download(VIEW_ITEM, tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists() and not leftovers(tmp_path)
    assert comfy.sent["view"] < 300 * 1000 * 1000  # it stopped reading; the server noticed


def test_an_endless_view_is_refused_while_streaming_not_after_buffering(comfy, tmp_path):
    comfy.hostile["view"] = "flood"
    comfy.flood_bytes = 1 << 40  # a terabyte: only a reader that stops at the cap returns
    client = ComfyClient(comfy.url, limits=Limits(download=1 * MIB))
    with pytest.raises(ComfyError, match="passed the 1.0 MiB limit") as info:
        client.download(VIEW_ITEM, tmp_path / "a.png")
    assert not isinstance(info.value, RetryableServiceError)  # the same answer again will not help
    assert comfy.sent["view"] < 64 * MIB
    assert not leftovers(tmp_path)


def test_an_announced_huge_view_is_refused_before_reading(comfy, tmp_path):
    comfy.hostile["view"] = "announce"  # Content-Length: 300 MB, then one byte a second
    started = time.monotonic()
    with pytest.raises(ComfyError, match=r"announced 300.0 MiB, over the 256.0 MiB limit"):
        ComfyClient(comfy.url).download(VIEW_ITEM, tmp_path / "a.png")
    assert time.monotonic() - started < 30  # not 300 million seconds
    assert comfy.sent["view"] <= 2


def test_a_one_byte_a_second_view_fails_at_its_deadline(comfy, tmp_path):
    comfy.hostile["view"] = "announce"
    comfy.flood_bytes = 1000  # under the cap, so only the deadline can stop it
    client = ComfyClient(comfy.url, timeouts=Timeouts(download=1.5))
    started = time.monotonic()
    with pytest.raises(RetryableServiceError, match=r"did not finish within the 1.5s deadline"):
        client.download(VIEW_ITEM, tmp_path / "a.png")
    assert time.monotonic() - started < 30  # each byte comes well inside the read timeout
    assert 0 < comfy.sent["view"] < 1000 and not leftovers(tmp_path)


def test_a_one_byte_a_second_history_fails_at_its_deadline(comfy):
    comfy.hostile["history"] = "announce"  # headers at once, then one byte a second
    comfy.flood_bytes = 1000
    client = ComfyClient(comfy.url, timeouts=Timeouts(request=1.0))
    started = time.monotonic()
    with pytest.raises(RetryableServiceError, match=r"timed out on GET /history/p1 within the 1s deadline"):
        client.history("p1")
    assert time.monotonic() - started < 30


def test_a_slow_history_while_waiting_fails_the_shot_at_its_deadline(comfy, jobs, shot, still):
    """The wait polls /history: a server trickling it costs each poll request_timeout_s and
    the shot server_grace_s in all (with another server up, the shot would move there), never
    a wait for ever; what the backend raises then is final."""
    comfy.hostile["history"] = "announce"
    comfy.flood_bytes = 10_000
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"timed out on GET /history/\S+ within the 0.3s deadline; "
                                           r"gave up on shot 1") as info:
        renderer(comfy.url, request_timeout_s=0.3, server_grace_s=1.0).render(shot, still, jobs(shot))
    assert not isinstance(info.value, RetryableServiceError)
    assert time.monotonic() - started < 30


def test_a_deeply_nested_history_is_a_clear_error_not_a_recursion_error(comfy, jobs, shot, still):
    comfy.hostile["history"] = "deep"
    with pytest.raises(ComfyError, match="answered GET /history with JSON nested too deeply"):
        ComfyClient(comfy.url).history("p1")
    with pytest.raises(ServiceError, match="nested too deeply"):
        renderer(comfy.url).render(shot, still, jobs(shot))


@pytest.mark.parametrize("where, mode, call, words", [
    ("history", "not_object", lambda c: c.history("p1"), "a JSON list, not an object"),
    ("queue", "bad_shape", lambda c: c.queue(), None),
    ("prompt", "bad_shape", lambda c: c.queue_remaining(), "queue_remaining 'lots', not a count"),
])
def test_answers_of_the_wrong_shape_are_refused_or_ignored(comfy, where, mode, call, words):
    comfy.hostile[where] = mode
    client = ComfyClient(comfy.url)
    if words is None:  # /queue with junk lists: nothing is taken for a prompt id
        q = call(client)
        assert q.running == [] and q.pending == []
    else:
        with pytest.raises(ComfyError, match=words):
            call(client)


def test_history_with_outputs_of_the_wrong_type_fails_the_shot_clearly(comfy, jobs, shot, still):
    comfy.hostile["history"] = "bad_shape"
    with pytest.raises(ServiceError) as info:
        renderer(comfy.url, server_grace_s=0.5).render(shot, still, jobs(shot))
    assert not isinstance(info.value, (AttributeError, TypeError))


def test_a_too_long_answer_from_prompt_is_refused(comfy, tmp_path):
    comfy.hostile["prompt"] = "flood"
    client = ComfyClient(comfy.url, limits=Limits(answer=1 * MIB))
    with pytest.raises(ComfyError, match="refusing the answer to GET /prompt: the answer passed the 1.0 MiB"):
        client.queue_remaining()


def test_a_giant_websocket_frame_drops_the_socket_and_the_render_goes_on(comfy, jobs, shot, still):
    comfy.hostile["ws"] = "ws_giant"
    comfy.flood_bytes = 20 * MIB  # over the 16 MiB frame cap
    stream = EventStream(comfy.url, "c1")
    assert stream.connect()
    with pytest.raises(ConnectionError, match="event socket dropped"):
        for _ in range(5):
            stream.next(timeout=60)
    assert not stream.alive
    # a render falls back to polling /history and still finishes
    path = renderer(comfy.url).render(shot, still, jobs(shot))
    assert path.suffix == ".mp4" and comfy.sent["ws"] >= 1


def test_a_flood_of_websocket_frames_is_not_buffered_without_bound(comfy):
    """While the client is busy elsewhere, frames wait in a bounded queue: the server is
    held back (TCP) instead of the client's memory growing."""
    stream = EventStream(comfy.url, "c2")
    assert stream.connect()
    frame = b"\0" * MIB

    async def flood():
        ws = comfy.sockets["c2"]
        sent = 0
        try:
            for _ in range(2000):  # 2 GB if nothing pushed back
                await ws.send_bytes(frame)
                sent += 1
        except Exception:
            pass
        return sent

    import asyncio

    comfy.wait_until(lambda: "c2" in comfy.sockets)
    future = asyncio.run_coroutine_threadsafe(flood(), comfy.loop)
    time.sleep(2.0)  # the client reads nothing meanwhile
    assert not future.done(), "the server could push 2 GB: the client buffered it all"
    started = time.monotonic()
    stream.close()  # and a full queue does not make close() wait
    assert time.monotonic() - started < 30  # ample; a close waiting on a full queue never ends
    assert future.result(60) < 2000


def test_junk_events_on_the_socket_do_not_break_a_render(comfy, jobs, shot, still):
    comfy.hostile["ws"] = "ws_junk"
    path = renderer(comfy.url).render(shot, still, jobs(shot))
    assert path.suffix == ".mp4"


def test_a_prompt_id_that_is_a_path_is_refused_not_recorded(comfy, jobs, shot, still):
    comfy.hostile["POST prompt"] = "bad_id"
    job = jobs(shot)
    with pytest.raises(ComfyError, match="queued the prompt under an unusable id"):
        renderer(comfy.url).render(shot, still, job)
    assert all("../" not in str(v) for v in jobs.journal[("videos", 1)].values())


def test_a_nonsense_retry_after_is_ignored(comfy):
    comfy.hostile["prompt"] = "nan_retry"
    with pytest.raises(RetryableServiceError) as info:
        ComfyClient(comfy.url).queue_remaining()
    assert info.value.retry_after is None


# -- server-supplied file names --------------------------------------------------------

HOSTILE_NAMES = [
    {"filename": "../../../escaped.mp4", "subfolder": "", "type": "output"},
    {"filename": "fine.mp4", "subfolder": "../../..", "type": "output"},
    {"filename": "fine.mp4", "subfolder": "/etc", "type": "output"},
    {"filename": "fine.mp4", "subfolder": "a/../../b", "type": "output"},
    {"filename": "fine.mp4", "subfolder": "..\\..\\win", "type": "output"},
    {"filename": "/etc/passwd", "subfolder": "", "type": "output"},
    {"filename": "..\\..\\escaped.mp4", "subfolder": "", "type": "output"},
    {"filename": "..", "subfolder": "", "type": "output"},
    {"filename": "c:evil.mp4", "subfolder": "", "type": "output"},
    {"filename": "a\nb\x1b[31m.mp4", "subfolder": "", "type": "output"},
    {"filename": "x" * 5000 + ".mp4", "subfolder": "", "type": "output"},
    {"filename": ["list.mp4"], "subfolder": "", "type": "output"},
    {"filename": "nul\x00.mp4", "subfolder": "", "type": "output"},
]


def test_server_file_names_never_escape_the_work_folder(comfy, jobs, shot, still, tmp_path):
    comfy.hostile_outputs = HOSTILE_NAMES
    job = jobs(shot)
    outside_before = {p for p in tmp_path.parent.rglob("*")}
    path = renderer(comfy.url).render(shot, still, job)
    assert path.parent == job.work_dir / "comfy" and path.name.endswith("_00001_.mp4")
    written = {p for p in tmp_path.parent.rglob("*")} - outside_before
    # the only new files are the genuine output (and the fake server's own folders)
    mine = [p for p in written if not p.is_relative_to(comfy.root)]
    assert all(p.is_relative_to(job.work_dir) for p in mine), mine
    assert [p.name for p in (job.work_dir / "comfy").iterdir()] == [path.name]
    assert len([p for m, p, _ in comfy.requests if p == "/view"]) == 1  # nothing hostile fetched


def test_hostile_node_ids_are_flattened_into_the_work_folder(comfy, jobs, shot, still):
    """Node ids (the keys of /history outputs) are server-supplied too."""
    job = jobs(shot)
    renderer(comfy.url).render(shot, still, job)
    pid = jobs.journal[("videos", 1)]["prompt_id"]
    outputs = comfy.history[pid]["outputs"]
    comfy.history[pid]["outputs"] = {"../../../../tmp/evil" + "/x" * 300: v for v in outputs.values()}
    for f in (job.work_dir / "comfy").iterdir():
        f.unlink()
    # a resume adopts the finished prompt and downloads its outputs again; none is from the
    # template's output node any more, so the shot fails, but the file stayed inside
    with pytest.raises(ComfyError, match="produced tmp_evil_x_x"):
        renderer(comfy.url).render(shot, still, jobs(shot, attempt=2))
    [path] = (job.work_dir / "comfy").iterdir()
    assert path.name.startswith("tmp_evil_x_x") and len(path.name) < 100
    assert len(comfy.posts()) == 1


# -- item 9: credentials -------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://alice:s3cr3t-pw@127.0.0.1:8188",
                                 "http://tok-abcdef123456@127.0.0.1:8188"])
def test_credentials_in_a_url_are_refused_naming_the_variable(url):
    with pytest.raises(ConfigError) as info:
        renderer(url)
    msg = str(info.value)
    assert "REELFORGE_COMFY_AUTH" in msg and "http://***@127.0.0.1:8188" in msg
    assert "s3cr3t-pw" not in msg and "tok-abcdef123456" not in msg and "alice" not in msg


def test_credentials_in_a_url_stop_the_cli_before_a_session_exists(tmp_path, monkeypatch):
    out = tmp_path / "output"
    r = CliRunner().invoke(cli, ["run", "x", "--new", "--image-gen", "comfyui",
                                 "--comfy-url", "http://bob:hunter2-pass@127.0.0.1:9",
                                 "--output-dir", str(out)])
    assert r.exit_code == 2 and "REELFORGE_COMFY_AUTH" in r.output
    assert "hunter2-pass" not in r.output and not (out / "sessions").exists()
    # from the environment and from reelforge.toml alike
    monkeypatch.setenv("REELFORGE_COMFY_URL", "http://bob:hunter2-pass@127.0.0.1:9")
    r = CliRunner().invoke(cli, ["run", "x", "--new", "--image-gen", "comfyui", "--output-dir", str(out)])
    assert r.exit_code == 2 and "hunter2-pass" not in r.output
    monkeypatch.delenv("REELFORGE_COMFY_URL")
    cfg = tmp_path / "reelforge.toml"
    cfg.write_text('[backends.comfyui]\nurls = ["http://bob:hunter2-pass@127.0.0.1:9"]\n')
    r = CliRunner().invoke(cli, ["run", "x", "--new", "--image-gen", "comfyui", "--config", str(cfg),
                                 "--output-dir", str(out)])
    assert r.exit_code == 2 and "hunter2-pass" not in r.output
    assert not (out / "sessions").exists()
    r = CliRunner().invoke(cli, ["comfyui", "check", "--comfy-url", "http://bob:hunter2-pass@127.0.0.1:9"])
    assert r.exit_code == 2 and "hunter2-pass" not in r.output


def test_auth_from_the_environment_is_never_saved_and_a_resume_finds_it_again(tmp_path, comfy, monkeypatch):
    password = "pw-9f8e7d6c5b4a"
    monkeypatch.setenv("REELFORGE_COMFY_AUTH", f"studio:{password}")
    token = base64.b64encode(f"studio:{password}".encode()).decode()
    comfy.require_auth = f"Basic {token}"
    comfy.hostile["POST prompt"] = "echo_auth_401"  # every submit: a 401 quoting our header
    out = tmp_path / "output"
    args = ["run", "A lighthouse", "--new", *comfy_args(comfy.url), "--output-dir", str(out)]
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 1, r.output
    assert "bad credentials: Basic ***" in r.output  # the server's words, the secret masked
    assert password not in r.output and token not in r.output
    assert not files_holding(out, password, token)
    session = only_session(out)
    assert session.meta.backends["image"].options["urls"] == [comfy.url]
    # resume: the recorded URL, the credentials read again from the environment
    del comfy.hostile["POST prompt"]
    r = CliRunner().invoke(cli, ["resume", session.id, "--output-dir", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert SessionStore(out).load(session.id).meta.status == "COMPLETE"
    assert not files_holding(out, password, token)
    # without the credentials the proxy refuses us, and says so
    monkeypatch.delenv("REELFORGE_COMFY_AUTH")
    with pytest.raises(ServiceError, match="401"):
        ComfyClient(comfy.url).queue_remaining()


def test_the_websocket_carries_the_auth_header_too(comfy, monkeypatch):
    monkeypatch.setenv("REELFORGE_COMFY_AUTH", "a-bearer-token-123")
    comfy.require_auth = "Bearer a-bearer-token-123"
    from reelforge.plugins.comfy_render.client import auth_headers

    stream = EventStream(comfy.url, "c3", headers=auth_headers())
    assert stream.connect()
    assert stream.next(timeout=60)["type"] == "status"
    stream.close()
    assert not EventStream(comfy.url, "c4").connect()  # refused without it


def test_an_echoed_token_in_a_500_page_never_reaches_a_message(comfy, jobs, shot, still, monkeypatch):
    monkeypatch.setenv("REELFORGE_COMFY_AUTH", "tkn-0123456789abcdef")
    comfy.hostile["POST prompt"] = "echo_auth_500"
    messages = []
    r = renderer(comfy.url, server_grace_s=0.2)
    with pytest.raises(ServiceError) as info:
        r.render(shot, still, jobs(shot))
    messages.append(str(info.value))
    assert messages and all("tkn-0123456789abcdef" not in m for m in messages)
    assert "Bearer ***" in messages[0]


# -- item 13: sizes -----------------------------------------------------------------

@pytest.mark.parametrize("opts, words", [
    (["-o", "image.width=20000", "-o", "image.height=20000"], "option width must be a whole number from 16 to 8192"),
    (["-o", "image.width=8192", "-o", "image.height=8192"], "8192x8192 has 67,108,864 pixels; at most 35,651,584"),
    (["-o", "video.fps=1000"], "option fps must be a number from 1 to 120"),
    (["-o", "video.max_download_mib=0"], "option max_download_mib must be a whole number from 1 to 65536"),
    (["-o", "image.width=wide"], "option width must be a whole number from 16 to 8192 (or 0 for the default), got 'wide'"),
])
def test_comfy_sizes_are_bounded_before_anything_is_sent(tmp_path, comfy, opts, words):
    r = CliRunner().invoke(cli, ["run", "x", "--new", *comfy_args(comfy.url), *opts,
                                 "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and words in r.output, r.output
    assert "@" not in r.output.split("Error:")[-1] and "cattrs" not in r.output
    assert comfy.posts() == []


def test_a_clip_needing_too_many_frames_fails_naming_the_shot(comfy, jobs, shot, still):
    import attrs

    long = attrs.evolve(shot, duration_s=600.0)
    with pytest.raises(StageError, match=r"shot 1: 600s at 12 fps needs more than 2000 frames"):
        renderer(comfy.url, fps=12).render(long, still, jobs(long))
    assert comfy.posts() == []


@pytest.mark.parametrize("url, said", [
    ("http://user:pw@127.0.0.1:8188", "carries a user name or password"),
    ("http://127.0.0.1:8188/?token=s3cr3t-token-value", "carries a key in its query (token=)"),
])
def test_a_comfy_url_carrying_a_secret_is_refused_saying_which(url, said):
    from reelforge.errors import ConfigError
    from reelforge.plugins.comfy_render.backend import check_urls

    with pytest.raises(ConfigError) as info:
        check_urls((url,))
    assert said in str(info.value) and "REELFORGE_COMFY_AUTH" in str(info.value)
    assert "pw@" not in str(info.value) and "s3cr3t-token-value" not in str(info.value)
