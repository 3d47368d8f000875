from __future__ import annotations

import threading
from pathlib import Path

import pytest

from reelforge.protocols import ShotJob
from reelforge.records import Shot

from .fake_comfy import FakeComfy


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setenv("REELFORGE_RETRY_BACKOFF", "0")
    monkeypatch.delenv("REELFORGE_COMFY_URL", raising=False)
    # the fake listens on loopback: never send its traffic to a proxy from the environment
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def make_comfy(tmp_path_factory):
    """Start fake ComfyUI servers on 127.0.0.1; all are stopped after the test. What the
    process knows of servers (down, backlog, averages) is forgotten before and after: ports
    are reused from one test to the next."""
    from reelforge.plugins.comfy_render.pool import reset_shared_state

    reset_shared_state()
    servers: list[FakeComfy] = []

    def make(**kw) -> FakeComfy:
        server = FakeComfy(tmp_path_factory.mktemp("comfyui"), **kw).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    reset_shared_state()


@pytest.fixture
def comfy(make_comfy) -> FakeComfy:
    return make_comfy()


class JobFactory:
    """ShotJobs as the runner makes them, with an in-memory checkpoint journal per shot."""

    def __init__(self, root: Path):
        self.root = root
        self.journal: dict[tuple[str, int], dict] = {}
        self.saves: list[dict] = []
        self.progress: list[tuple[float, str]] = []

    def __call__(self, shot: Shot, *, stage: str = "videos", attempt: int = 1,
                 session_id: str = "session_20261124_000000") -> ShotJob:
        key = (stage, shot.id)
        work = self.root / "work" / f"{stage}_{shot.id:03d}"
        work.mkdir(parents=True, exist_ok=True)

        def save(data: dict) -> None:
            self.journal.setdefault(key, {}).update(data)
            self.saves.append(dict(data))

        return ShotJob(session_id=session_id, stage=stage, shot=shot, attempt=attempt, work_dir=work,
                       checkpoint=dict(self.journal.get(key, {})), cancelled=threading.Event(),
                       save=save, progress=lambda f, m: self.progress.append((f, m)))


@pytest.fixture
def jobs(tmp_path) -> JobFactory:
    return JobFactory(tmp_path)


@pytest.fixture
def shot() -> Shot:
    return Shot(id=1, scene_id="s1", description="a lighthouse at dusk",
                image_prompt="a lighthouse at dusk, teal and orange", motion_prompt="slow push in",
                negative_prompt="blurry", duration_s=2.0, seed=1234)


@pytest.fixture
def still(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "shot_001.png"
    Image.new("RGB", (64, 48), (200, 100, 50)).save(path)
    return path
