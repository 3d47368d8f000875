"""Issue 18 item 7: the film player's poster is a frame of the film itself, made once per film
(a cache file beside it that no record names), made again when the film is; the first shot's
picture until there is a film. A kill while it is written leaves nothing that `sessions
verify` or the next poster minds."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from support import wait_idle
from test_web import TOKEN, client

from reelforge.media.mp4info import read_facts
from reelforge.store.sessions import SessionStore
from reelforge.web.poster import film_poster, frame_time, poster_name

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

JSON = {"Accept": "application/json"}


def _posters(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith((".poster.", "..poster.")))


def _decoded(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()  # decodes every pixel: a cut-short file fails here
        return im.format, im.size


def test_the_poster_is_a_frame_of_the_film_made_once_and_verify_stays_clean(out, done):
    c = client(out)
    film = done.meta.film
    url = f"/s/{done.id}/poster.jpg?v={film.sha256[:16]}"
    assert f'poster="{url}"' in c.get(f"/s/{done.id}").text
    r = c.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    facts = read_facts(done.path / "film.mp4")
    assert _decoded(r.content) == ("JPEG", (facts["width"], facts["height"]))  # the film's own frame size
    made = done.path / poster_name(film.sha256)
    assert made.read_bytes() == r.content
    first = os.stat(made)
    assert c.get(url).content == r.content
    again = os.stat(made)
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # made once, then served
    assert _posters(done.path) == [made.name]
    report = SessionStore(out).verify(done.id)
    assert report.ok, report.lines()


def test_the_poster_changes_when_the_film_is_made_again(out, done, fakes):
    c = client(out)
    old_sha = done.meta.film.sha256
    old = c.get(f"/s/{done.id}/poster.jpg?v={old_sha[:16]}").content
    # every shot made again with another seed (the fake pictures are coloured by it): new clips, a new film
    for shot in done.meta.shots:
        r = c.post(f"/s/{done.id}/redo", data={"csrf": TOKEN, "shot": str(shot.id), "stage": "image",
                                               "seed": str(4242 + shot.id)}, headers=JSON)
        assert r.status_code == 202, r.text
        assert wait_idle(c, done.id)["action"]["last"]["ok"] is True
    new_sha = SessionStore(out).load(done.id).meta.film.sha256
    assert new_sha != old_sha
    url = f"/s/{done.id}/poster.jpg?v={new_sha[:16]}"
    assert f'poster="{url}"' in c.get(f"/s/{done.id}").text
    new = c.get(url).content
    assert new != old and _decoded(new)[0] == "JPEG"
    assert _posters(done.path) == [poster_name(new_sha)]  # the old film's poster is gone


def test_before_the_film_the_poster_is_the_first_picture(out, fakes):
    from reelforge.engine.runner import Runner

    result = Runner(out, backends=fakes.narrated, review="images").start("A harbour city")
    sid = result.session_id
    c = client(out)
    page = c.get(f"/s/{sid}").text
    assert f'<img class="poster" src="/s/{sid}/media/images/shot_001.png?v=' in page
    r = c.get(f"/s/{sid}/poster.jpg", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].startswith(f"/s/{sid}/media/images/shot_001.png")
    assert _posters(SessionStore(out).path_for(sid)) == []


def test_a_film_that_is_not_the_recorded_one_gets_no_poster_but_the_first_picture(out, done):
    film = done.path / "film.mp4"
    film.write_bytes(film.read_bytes()[:-10])  # damaged: not the film the meta records
    r = client(out).get(f"/s/{done.id}/poster.jpg", follow_redirects=False)
    assert r.status_code == 307 and "/media/images/shot_001.png" in r.headers["location"]
    assert _posters(done.path) == []


def test_a_kill_while_the_poster_is_written_leaves_nothing_bad(out, done):
    """SIGKILL a real process at the moment its poster file is complete in its temporary file
    but not yet renamed into place: no poster under the real name, verify clean, and the next
    poster is whole (and removes what the kill left once it is old)."""
    code = textwrap.dedent("""
        import os, sys
        from pathlib import Path
        from reelforge.web.poster import film_poster

        def stop(src, dst, **kw):
            print("writing", src, flush=True)
            sys.stdin.read()  # killed here

        os.replace = stop
        film_poster(Path(sys.argv[1]), sys.argv[2])
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(done.path), done.meta.film.sha256],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("writing"), line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = _posters(done.path)
    assert len(left) == 1 and left[0].startswith("..poster.") and left[0].endswith(".tmp")
    assert SessionStore(out).verify(done.id).ok
    old = os.stat(done.path / left[0]).st_mtime - 3600
    os.utime(done.path / left[0], (old, old))  # as it is an hour later
    path = film_poster(done.path, done.meta.film.sha256)
    assert _decoded(path.read_bytes())[0] == "JPEG"
    assert _posters(done.path) == [path.name]


def test_the_frame_is_taken_past_the_fade_in_and_inside_the_film():
    assert frame_time(None) == 0.0
    assert frame_time(0.8) == 0.4
    assert frame_time(4.0) == 1.0
    assert frame_time(60.0) == 6.0
