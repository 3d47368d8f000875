"""Test helpers for reelforge and for plugin authors: fake backends that record what they
were asked, a context manager that registers them, and a helper that runs a session.

    from reelforge.testing import FakeStoryWriter, FakeImageGenerator, FakeRenderer, fake_backends

    def test_my_observer(tmp_path):
        with fake_backends() as fakes:
            result = run_session(tmp_path, "An idea", plugins=[MyObserver()])
        assert result.ok
        assert len(fakes.image.calls) == 3

A fake is an instance that stands in for its backend class: the runner calls
``fake(options)`` and gets the fake itself back, so the test keeps a handle on it.
Set ``REELFORGE_FAKE_LOG`` to a file path to also append one line per call there (useful
when the run happens in a subprocess).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import attrs

from reelforge import hookimpl
from reelforge.errors import StageError
from reelforge.records import Character, Scene, SceneGraph, Shot, ShotPlan, Story


def _log_call(kind: str, detail: str) -> None:
    path = os.environ.get("REELFORGE_FAKE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{kind} {detail}\n")
            fh.flush()
            os.fsync(fh.fileno())


class _Fake:
    kind: str = ""
    name: str = "fake"

    @attrs.frozen
    class Options:
        delay: float = attrs.field(default=0.0, metadata={"fingerprint": False})
        "Seconds each call sleeps (to widen a crash window in tests). Does not change the output."

    def __init__(self, name: str | None = None, *, concurrency: int = 1):
        if name:
            self.name = name
        self.concurrency = concurrency
        self.calls: list[tuple[Any, ...]] = []
        self.options = self.Options()
        self._failures: dict[Any, list[BaseException]] = {}
        self._lock = threading.Lock()

    closed = False
    "Set when the runner calls close() at the end of a run."

    def close(self) -> None:
        self.closed = True

    def __call__(self, options: Any = None) -> "_Fake":
        """The runner 'constructs' the backend: hand back this very fake."""
        if options is not None and options != self.Options():  # defaults keep the test's settings
            self.options = options
        return self

    def fail(self, key: Any, *errors: BaseException) -> None:
        """Raise ``errors`` one per call for ``key`` (a shot id or method name), then succeed."""
        self._failures.setdefault(key, []).extend(errors)

    def _record(self, key: Any, *call: Any) -> None:
        with self._lock:
            self.calls.append(call)
            pending = self._failures.get(key)
            error = pending.pop(0) if pending else None
        _log_call(self.kind, " ".join(str(c) for c in call))
        if self.options.delay:
            time.sleep(self.options.delay)
        if error is not None:
            raise error


class FakeStoryWriter(_Fake):
    """A story writer that returns queued results, or a plain n-shot plan."""

    kind = "story"

    @attrs.frozen
    class Options:
        shots: int = 3
        "Shots in the default plan."
        delay: float = attrs.field(default=0.0, metadata={"fingerprint": False})
        "Seconds each call sleeps."

    def __init__(self, name: str | None = None, shots: int = 3):
        super().__init__(name)
        self.options = self.Options(shots=shots)
        self._queue: list[Any] = []
        self.seen_checkpoints: list[dict[str, Any]] = []
        "What plan_shots found in its StageJob's checkpoint, one entry per call."

    def enqueue(self, *values: Any) -> None:
        """Queue results (Story, SceneGraph, ShotPlan or an exception to raise) for the next calls."""
        self._queue.extend(values)

    def _next(self, method: str, expected: type, default: Any) -> Any:
        self._record(method, method)
        for i, value in enumerate(self._queue):
            if isinstance(value, (expected, BaseException)):
                self._queue.pop(i)
                if isinstance(value, BaseException):
                    raise value
                return value
        return default

    def write_story(self, idea: str) -> Story:
        default = Story(title=idea[:60], logline=f"A film about {idea}.", synopsis=idea,
                        characters=(Character("Ada", "a tall woman in a red coat"),), style="flat colours")
        return self._next("write_story", Story, default)

    def build_scene_graph(self, story: Story) -> SceneGraph:
        default = SceneGraph(scenes=(Scene(id="s1", order=1, summary=story.logline, setting="a town"),))
        return self._next("build_scene_graph", SceneGraph, default)

    def plan_shots(self, story: Story, scenes: SceneGraph, job=None) -> ShotPlan:
        if job is not None:  # shows the StageJob seam: partial work survives a failure
            self.seen_checkpoints.append(dict(job.checkpoint))
            job.progress(0.5, "planning")
            job.save_checkpoint(tries=job.checkpoint.get("tries", 0) + 1)
        n = self.options.shots
        default = ShotPlan(shots=tuple(
            Shot(id=i, scene_id=scenes.scenes[0].id, description=f"Shot {i} of {story.title}",
                 image_prompt=f"{story.title}, frame {i}", motion_prompt="slow push in",
                 duration_s=0.4, seed=i, narration=" ".join(["word"] * i)) for i in range(1, n + 1)))
        return self._next("plan_shots", ShotPlan, default)


class FakeImageGenerator(_Fake):
    """Writes a small solid-colour PNG per shot (colour from the seed)."""

    kind = "image"

    @attrs.frozen
    class Options:
        delay: float = attrs.field(default=0.0, metadata={"fingerprint": False})
        "Seconds each call sleeps. Does not change the output."
        tint: int = 0
        "Added to the red channel: changes the pictures."

    def __init__(self, name: str | None = None, *, concurrency: int = 1):
        super().__init__(name, concurrency=concurrency)
        self.portraits: list[tuple[str, int]] = []
        "(character name, attempt) per cast portrait asked for (``job.stage == 'cast'``): kept out of ``calls``."
        self.references: dict[int, tuple] = {}
        "The ShotJob.references each shot was last given (set ``takes_references = True`` to get any)."

    def generate(self, shot: Shot, job) -> Path:
        from PIL import Image

        if job.stage == "cast":  # a character's portrait (see reelforge.engine.cast)
            name = shot.characters[0] if shot.characters else ""
            with self._lock:
                self.portraits.append((name, job.attempt))
            _log_call("portrait", f"{name} {job.attempt}")
            out = job.work_dir / "portrait.png"
            Image.new("RGB", (36, 36), ((shot.seed * 53 + self.options.tint) % 256, 90, (shot.seed * 7) % 256)).save(out)
            return out
        self.references[shot.id] = tuple(job.references)
        self._record(shot.id, shot.id, job.attempt)

        job.progress(0.5, "drawing")
        out = job.work_dir / "fake.png"
        from PIL.PngImagePlugin import PngInfo

        # A picture drawn from references (takes_references) follows them: a new portrait, new pixels.
        shift = sum(int(ref.sha256[:4], 16) for ref in job.references)
        color = ((shot.seed * 67 + self.options.tint) % 256, (shot.seed * 131 + shift) % 256, (shot.seed * 29) % 256)
        info = PngInfo()
        info.add_text("seed", str(shot.seed))  # two seeds of one colour still give two files
        Image.new("RGB", (64, 36), color).save(out, pnginfo=info)
        return out


class FakeRenderer(_Fake):
    """Renders a tiny real H.264 clip of the image with the bundled ffmpeg (the seed is not
    used, unless the ``seeded`` option asks for it)."""

    kind = "video"

    @attrs.frozen
    class Options:
        delay: float = attrs.field(default=0.0, metadata={"fingerprint": False})
        "Seconds each call sleeps (to widen a crash window in tests). Does not change the output."
        seeded: bool = False
        "Tag each clip with the shot's seed, so another seed gives another file (as a model's would)."

    @property
    def uses_seed(self) -> bool:
        """Whether another seed gives another clip (reelforge.engine.edits.uses_seed)."""
        return bool(getattr(self.options, "seeded", False))  # a test may give Options of its own
    starts_from_image = True
    "Its clip shows the picture it is given (so --continuity last-frame can be tested with it)."

    def render(self, shot: Shot, image: Path, job) -> Path:
        self._record(shot.id, shot.id, job.attempt)
        import imageio_ffmpeg

        out = job.work_dir / "fake.mp4"
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-loop", "1",
               "-i", str(image), "-t", str(min(shot.duration_s, 0.4)), "-r", "10",
               "-vf", "scale=64:36,format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
               *(["-metadata", f"comment=seed {shot.seed}"] if self.uses_seed else []),
               "-movflags", "+faststart", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise StageError(f"ffmpeg failed: {proc.stderr[-500:]}")
        return out


class FakeNarrator(_Fake):
    """Speaks a shot's narration as a tone WAV, 0.1 s per word (so timing follows the text)."""

    kind = "narration"
    uses_seed = False

    @attrs.frozen
    class Options:
        delay: float = attrs.field(default=0.0, metadata={"fingerprint": False})
        "Seconds each call sleeps. Does not change the output."
        seconds_per_word: float = 0.1
        "How long each word takes to say."

    def narrate(self, shot: Shot, job) -> Path:
        self._record(shot.id, shot.id, job.attempt)
        import math
        import struct
        import wave

        words = len(shot.narration.split())
        if not words:
            raise StageError(f"shot {shot.id} has no narration to speak")
        rate = 8000
        frames = int(words * self.options.seconds_per_word * rate)
        out = job.work_dir / "fake.wav"
        with wave.open(str(out), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i * 0.2))) for i in range(frames)))
        return out


@attrs.define
class Fakes:
    story: FakeStoryWriter
    image: FakeImageGenerator
    video: FakeRenderer
    narration: FakeNarrator = attrs.Factory(FakeNarrator)

    @property
    def backends(self) -> dict[str, str]:
        """The fakes for story, images and clips, with narration off."""
        return {"story": self.story.name, "image": self.image.name, "video": self.video.name,
                "narration": "none"}

    @property
    def narrated(self) -> dict[str, str]:
        """All four fakes, narration included."""
        return {**self.backends, "narration": self.narration.name}


class FakePlugin:
    """A plugin object that registers the given fakes."""

    def __init__(self, fakes: Fakes):
        self.fakes = fakes

    @hookimpl
    def register_story_llms(self, register):
        register(self.fakes.story, name=self.fakes.story.name)

    @hookimpl
    def register_image_generators(self, register):
        register(self.fakes.image, name=self.fakes.image.name)

    @hookimpl
    def register_renderers(self, register):
        register(self.fakes.video, name=self.fakes.video.name)

    @hookimpl
    def register_narrators(self, register):
        register(self.fakes.narration, name=self.fakes.narration.name)


@contextlib.contextmanager
def fake_backends(shots: int = 3, name: str = "fake") -> Iterator[Fakes]:
    """Register a fake story writer, image generator and renderer (all named ``name``) for
    the duration of the block; unregister them afterwards even on failure."""
    from reelforge.engine.plugins import load_plugins

    pm = load_plugins()
    fakes = Fakes(FakeStoryWriter(name, shots=shots), FakeImageGenerator(name), FakeRenderer(name),
                  FakeNarrator(name))
    plugin = FakePlugin(fakes)
    pm.register(plugin, name=f"_fakes_{id(plugin)}")
    try:
        yield fakes
    finally:
        pm.unregister(plugin)


@contextlib.contextmanager
def registered(*plugins: Any) -> Iterator[None]:
    """Register plugin objects or modules for the duration of the block."""
    from reelforge.engine.plugins import load_plugins

    pm = load_plugins()
    added = [p for p in plugins if not pm.is_registered(p)]  # an installed plugin is already in
    for p in added:
        pm.register(p, name=f"_test_{id(p)}")
    try:
        yield
    finally:
        for p in added:
            pm.unregister(p)


def run_session(output_dir: str | os.PathLike, idea: str, *, backends: dict[str, str] | None = None,
                options: Any = (), plugins: tuple[Any, ...] = (), resume: str | None = None, **kw: Any):
    """Run (or, with ``resume=ID``, resume) a session in ``output_dir`` with no retry
    backoff; returns the RunResult. Extra ``plugins`` are registered for the run."""
    from reelforge.engine.retry import RetryPolicy
    from reelforge.engine.runner import Runner

    with registered(*plugins):
        runner = Runner(output_dir, backends=backends, options=options,
                        retry=kw.pop("retry", RetryPolicy(initial=0)), **kw)
        return runner.resume(resume) if resume else runner.start(idea)
