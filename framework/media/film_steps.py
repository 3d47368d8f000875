"""The film stage's steps that are not the soundtrack's: its progress (one fraction over
sub-steps that may run side by side, fed by ffmpeg's ``-progress`` reports), the audio
track encoded to AAC (with its fades) while the picture is being joined, and the last mux,
a stream copy of picture, sound and soft subtitles.

Splitting the audio encode from the mux lets the slow part of the sound (the AAC encode)
run beside the picture's fades and concat on the other core; the mux then copies both.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from reelforge.media.ffmpeg import FFmpegProgress, run_ffmpeg
from reelforge.media.soundtrack.finish import audio_filters

#: Called with (fraction of the film stage done, what is running).
Report = Callable[[float, str], None]


class FilmProgress:
    """The film stage's fraction done: each sub-step has a weight (about its cost); a step's
    own fraction comes from ffmpeg's reports while it runs. Thread-safe: the picture and
    the sound run side by side."""

    def __init__(self, report: Report | None, weights: dict[str, float]):
        self.report = report
        self.weights = dict(weights)
        self.total = sum(self.weights.values()) or 1.0
        self.done: dict[str, float] = {}
        self.running: dict[str, str] = {}
        self._lock = threading.Lock()

    def _send(self) -> None:
        if self.report is None:
            return
        fraction = sum(self.weights.get(k, 0.0) * f for k, f in self.done.items()) / self.total
        self.report(min(fraction, 0.99), ", ".join(self.running.values()) or "finishing")

    def start(self, step: str, label: str) -> None:
        with self._lock:
            self.running[step] = label
            self.done.setdefault(step, 0.0)
            self._send()

    def step(self, step: str, fraction: float) -> None:
        with self._lock:
            self.done[step] = max(self.done.get(step, 0.0), min(1.0, max(0.0, fraction)))
            self._send()

    def finish(self, step: str) -> None:
        with self._lock:
            self.done[step] = 1.0
            self.running.pop(step, None)
            self._send()

    def ffmpeg(self, step: str, seconds: float) -> Callable[[FFmpegProgress], None]:
        """A ``run_ffmpeg(progress=...)`` callback that advances ``step`` by the output
        time ffmpeg reports, out of ``seconds``."""
        def report(p: FFmpegProgress) -> None:
            if p.out_time_s is not None and seconds > 0:
                self.step(step, p.out_time_s / seconds)
        return report

    def run(self, step: str, label: str, fn: Callable[[], Path]) -> Path:
        """Run ``fn`` as ``step``: started, then done."""
        self.start(step, label)
        out = fn()
        self.finish(step)
        return out


def encode_audio(wav: Path, out: Path, duration_s: float, *, fade_in_s: float = 0.0, fade_out_s: float = 0.0,
                 bitrate: str = "160k", cancelled: threading.Event | None = None,
                 progress: Callable[[FFmpegProgress], None] | None = None) -> Path:
    """The film's audio (a WAV from build_audio) faded in and out, cut or padded to
    ``duration_s`` and encoded to AAC in an MP4 (``out``), ready to be copied into the film."""
    run_ffmpeg(["-i", str(wav), "-af", audio_filters(duration_s, fade_in_s, fade_out_s), "-c:a", "aac", "-b:a", bitrate,
                "-f", "mp4", "-y", str(out)],
               what=f"encoding the film's audio into {out.name}", cancelled=cancelled, progress=progress)
    return out


def mux(picture: Path, audio: Path, out: Path, duration_s: float, *, srt: Path | None = None,
        language: str = "eng", cancelled: threading.Event | None = None,
        progress: Callable[[FFmpegProgress], None] | None = None) -> Path:
    """The finished film: ``picture`` and ``audio`` (AAC, from :func:`encode_audio`) copied,
    and ``srt`` as a soft mov_text subtitle track tagged ``language`` when given."""
    inputs = ["-i", str(picture), "-i", str(audio)]
    maps = ["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "copy"]
    if srt is not None:
        inputs += ["-i", str(srt)]
        maps += ["-map", "2:s:0", "-c:s", "mov_text", "-metadata:s:s:0", f"language={language}"]
    os.makedirs(out.parent, exist_ok=True)
    run_ffmpeg([*inputs, *maps, "-t", f"{duration_s:.6f}", "-movflags", "+faststart", "-f", "mp4", "-y", str(out)],
               what=f"finishing the film {out.name}", cancelled=cancelled, progress=progress)
    return out
