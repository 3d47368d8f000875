"""Issue 12 item 5: one server pool per server set for both stages, weighing queued work by
its expected seconds (running averages of the servers' own execution times)."""

from __future__ import annotations

import logging

import attrs
import pytest

from reelforge.plugins.comfy_render.pool import ServerPool, normalise_url, shared_pool

from .test_comfy_backends import image_gen, renderer


def test_image_and_video_backends_on_the_same_servers_share_one_pool(make_comfy):
    a, b = make_comfy(), make_comfy()
    gen = image_gen(a.url, b.url)
    ren = renderer(b.url + "/", a.url.upper().replace("HTTP://", "http://"))  # other order and spelling
    assert gen.backend.pool is ren.backend.pool
    other = renderer(a.url)  # another set: its own pool, but what is known of a is shared
    assert other.backend.pool is not gen.backend.pool
    gen.backend.pool.mark_down(a.url, "test")
    assert other.backend.pool.was_down(a.url) and ren.backend.pool.was_down(a.url)


def test_a_pick_weighs_seconds_not_prompts(make_comfy):
    a, b = make_comfy(), make_comfy()
    gen, ren = image_gen(a.url, b.url), renderer(a.url, b.url)
    pool = ren.backend.pool
    # the video stage has one long clip queued on a; the image stage two short stills on b
    pool.track(a.url, key="video:x", units=1, expected=10.0, submitted=False)
    for _ in range(2):
        gen.backend.pool.track(b.url, key="image:x", units=1, expected=1.0, submitted=False)
    ticket = pool.pick(ren.backend.client, key="video:x", units=1, expected=10.0)
    assert ticket.url == normalise_url(b.url)  # 2 s of work beats 10 s, though 2 prompts > 1
    ticket.finish()


def test_someone_elses_queue_counts_at_the_mean_estimate(make_comfy):
    import httpx

    a, b = make_comfy(), make_comfy()
    a.hold("SaveImage")  # someone else's prompt is still running when the pick looks
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "o"}}}
    httpx.post(f"{a.url}/prompt", json={"prompt": wf}, trust_env=False)
    a.wait_until(a.held)
    gen = image_gen(a.url, b.url)
    ticket = gen.backend.pool.pick(gen.backend.client, key="image:x", units=1, expected=1.0)
    assert ticket.url == normalise_url(b.url)
    ticket.finish()


def test_concurrent_picks_spread_over_the_servers(make_comfy):
    """Judged and reserved under one lock: eight shots picking at once land two per server."""
    import concurrent.futures as cf

    servers = [make_comfy() for _ in range(4)]
    gen = image_gen(*(s.url for s in servers))
    pool = gen.backend.pool
    with cf.ThreadPoolExecutor(8) as ex:
        tickets = list(ex.map(lambda _: pool.pick(gen.backend.client, key="image:x", units=1,
                                                  expected=1.0), range(8)))
    counts = {}
    for t in tickets:
        counts[t.url] = counts.get(t.url, 0) + 1
    assert sorted(counts.values()) == [2, 2, 2, 2]
    for t in tickets:
        t.finish()
    assert pool.backlog(servers[0].url) == 0


def test_averages_are_learned_from_the_servers_own_times(comfy, jobs, shot):
    comfy.node_latency = 0.05
    gen = image_gen(comfy.url)
    pool = gen.backend.pool
    assert pool.estimate(gen.backend.key, 1, 2) == 2.0  # nothing measured: its node count
    gen.generate(shot, jobs(shot, stage="images"))
    measured = jobs.journal[("images", 1)]["server_seconds"]
    assert measured >= 0.1
    assert pool.estimate(gen.backend.key, 1, 2) == pytest.approx(measured)
    # a template never run yet is judged by the per-node time of those that have
    assert pool.estimate("video:other", 3, 4) == pytest.approx(measured / 2 * 4 * 3)


def test_a_reattached_finished_prompt_seeds_the_average(comfy, jobs, shot):
    """After a crash, the prompts that finished meanwhile are adopted: their times are the
    first figures the new process has."""
    from reelforge.plugins.comfy_render.pool import reset_shared_state

    gen = image_gen(comfy.url)
    gen.generate(shot, jobs(shot, stage="images"))
    reset_shared_state()  # a new process
    fresh = image_gen(comfy.url)
    fresh.generate(shot, jobs(shot, stage="images", attempt=2))
    assert len(comfy.posts()) == 1
    assert fresh.backend.pool.estimate(fresh.backend.key, 1, 2) == pytest.approx(
        jobs.journal[("images", 1)]["server_seconds"])


def test_a_clips_expected_time_scales_with_its_frames(comfy, jobs, shot, still):
    ren = renderer(comfy.url, fps=12)
    long = attrs.evolve(shot, id=2, duration_s=4.0)
    assert ren.backend._units(long) == 2 * ren.backend._units(shot)  # 48 frames against 24
    ren.render(shot, still, jobs(shot))
    per_frame = jobs.journal[("videos", 1)]["server_seconds"] / ren.backend._units(shot)
    assert ren.backend._expected(long, jobs(long), ren.backend._units(long)) == \
        pytest.approx(per_frame * 48)


def test_pool_state_changes_are_said_once(caplog):
    caplog.set_level(logging.WARNING, logger="reelforge.comfyui")
    pool = ServerPool(("http://127.0.0.1:1", "http://127.0.0.1:2"))
    for _ in range(5):
        pool.mark_down("http://127.0.0.1:1", "refused the connection")
    for _ in range(5):
        pool.mark_up("http://127.0.0.1:1")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert said[0] == "ComfyUI at http://127.0.0.1:1 is down (refused the connection); its shots go to http://127.0.0.1:2"
    assert said[1].startswith("ComfyUI at http://127.0.0.1:1 is answering again")
    assert pool.all_down_for() is None


def test_shared_pool_is_per_set():
    one = shared_pool(["http://a:1", "http://b:2/"])
    assert shared_pool(["HTTP://B:2", "http://a:1"]) is one
    assert shared_pool(["http://a:1"]) is not one


def test_a_pick_asks_the_servers_their_queues_at_the_same_time():
    """A pick waits one round trip for the servers' queue depths, not one per server: each
    server here answers only once all four have been asked (a pick asking them one after
    another would never get its first answer)."""
    import threading

    urls = [f"http://127.0.0.1:{9100 + i}" for i in range(4)]
    pool = ServerPool(tuple(urls))
    everyone_asked = threading.Barrier(4, timeout=30)
    asked = []

    class Client:
        def __init__(self, url):
            self.url = url

        def queue_remaining(self) -> int:
            asked.append(self.url)
            everyone_asked.wait()  # BrokenBarrierError (the pick fails) if asked alone
            return 1 if self.url == urls[0] else 0

    ticket = pool.pick(Client, key="video:x", units=1, expected=10.0)
    assert sorted(asked) == sorted(urls)
    assert ticket.url != normalise_url(urls[0])  # the depths were heard: the busy one is not picked
    ticket.finish()
