"""ffmpeg helpers for the core and for plugins: run the binary imageio-ffmpeg ships, probe a
clip, assemble clips into a film.

Public API: :func:`probe`, :func:`clip_facts`, :func:`assemble`, :func:`run_ffmpeg` (with
:class:`FFmpegProgress` reports), :func:`ffmpeg_exe`, :func:`last_frame`.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from reelforge.errors import StageError, StorageError, TransientError, storage_errno_in

#: How much of ffmpeg's stderr an error message carries.
STDERR_TAIL_CHARS = 1500


class FFmpegCancelled(StageError):
    """ffmpeg was stopped because the run was cancelled (Ctrl-C); nothing was written."""


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (or IMAGEIO_FFMPEG_EXE)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # RuntimeError when no binary is found, ImportError if missing
        raise StageError(
            f"no ffmpeg binary found ({exc}); reinstall imageio-ffmpeg "
            f"(`pip install --force-reinstall imageio-ffmpeg`) or set IMAGEIO_FFMPEG_EXE"
        ) from exc


def _load_prctl():
    """libc's prctl, resolved once in the parent (the child must not import or allocate
    much between fork and exec), or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl.restype = ctypes.c_int
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def child_setup():
    """A ``preexec_fn`` that makes the child die with the runner: on Linux the kernel sends
    it SIGKILL when the thread that started it dies (PR_SET_PDEATHSIG), so an ffmpeg of a
    killed run can never keep writing into a session. ``None`` where unsupported."""
    if _PRCTL is None:
        return None
    parent = os.getpid()

    def setup() -> None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


def _tail(text: str, limit: int = STDERR_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


class FFmpegProgress(NamedTuple):
    """One report of ffmpeg's ``-progress`` output (sent about twice a second)."""

    frame: int | None
    "Frames written so far (None where ffmpeg does not say, e.g. audio only)."
    out_time_s: float | None
    "Seconds of output written so far."
    done: bool
    "The last report: ffmpeg has finished writing (``progress=end``)."


def _progress_report(block: dict[str, str]) -> FFmpegProgress:
    def number(*keys: str) -> float | None:
        for key in keys:
            try:
                return float(block[key])
            except (KeyError, ValueError):
                continue
        return None

    frame = number("frame")
    # out_time_ms is in microseconds too (an old ffmpeg misnomer); out_time_us is newer.
    micros = number("out_time_us", "out_time_ms")
    return FFmpegProgress(frame=None if frame is None else int(frame),
                          out_time_s=None if micros is None or micros < 0 else micros / 1e6,
                          done=block.get("progress") == "end")


def _read_progress(stream, callback: Callable[[FFmpegProgress], None], what: str) -> None:
    """Read ``key=value`` lines from ffmpeg's ``-progress pipe:1`` until it closes; each block
    ends with a ``progress=`` line and becomes one callback. A failing callback is reported
    once and not called again; the pipe is still drained, so ffmpeg never blocks on it."""
    import logging

    block: dict[str, str] = {}
    failed = False
    with stream:
        for raw in iter(stream.readline, b""):
            key, sep, value = raw.decode("ascii", "replace").strip().partition("=")
            if not sep:
                continue
            block[key] = value
            if key != "progress":
                continue
            if not failed:
                try:
                    callback(_progress_report(block))
                except Exception as exc:
                    failed = True
                    logging.getLogger(__name__).warning("%s: progress callback failed: %s", what, exc)
            block = {}


def run_ffmpeg(args: Sequence[str], *, what: str, cancelled: threading.Event | None = None,
               poll_s: float = 0.05, progress: Callable[[FFmpegProgress], None] | None = None) -> None:
    """Run ``ffmpeg args...``; stop it if ``cancelled`` is set.

    ``progress``, if given, is called with an :class:`FFmpegProgress` each time ffmpeg
    reports (``-progress pipe:1``: about twice a second, and once at the end), from a
    thread of its own; the last call happens before this returns.

    Raises :class:`FFmpegCancelled` when cancelled, :class:`StorageError` (with its
    ``errno``) when ffmpeg says the disk is full or read-only, :class:`StageError` with the
    tail of ffmpeg's stderr when it exits non-zero otherwise, :class:`TransientError` when it cannot be started
    for a passing reason (e.g. out of processes).
    """
    reporting = ["-progress", "pipe:1", "-nostats"] if progress is not None else []
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *reporting, *map(str, args)]
    # stderr goes to a file, not a pipe, so a chatty ffmpeg can never block on a full pipe.
    with _stderr_sink() as err:
        try:
            # Own process group: a terminal Ctrl-C reaches the runner, which stops ffmpeg itself
            # through `cancelled` and keeps what is finished.
            # It also dies with the runner (child_setup), so a SIGKILLed run leaves no ffmpeg
            # writing behind it.
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE if progress is not None else subprocess.DEVNULL,
                                    stderr=err, start_new_session=True, preexec_fn=child_setup())
        except (BlockingIOError, InterruptedError) as exc:
            raise TransientError(f"{what}: could not start ffmpeg: {exc}") from exc
        except OSError as exc:
            raise StageError(f"{what}: could not start ffmpeg ({cmd[0]}): {exc}") from exc
        reader = None
        if progress is not None:
            reader = threading.Thread(target=_read_progress, args=(proc.stdout, progress, what),
                                      name="reelforge-ffmpeg-progress", daemon=True)
            reader.start()
        started = time.monotonic()
        usage = None
        try:
            while True:
                usage = _reap(proc, poll_s)
                if proc.returncode is not None:
                    break
                if cancelled is not None and cancelled.is_set():
                    _stop(proc)
                    raise FFmpegCancelled(f"{what}: cancelled")
        finally:
            if proc.poll() is None:  # an exception (KeyboardInterrupt) got us here
                _stop(proc)
            if reader is not None:
                reader.join(5)  # ffmpeg is gone, so its end of the pipe is closed
        _log_run(what, cmd, time.monotonic() - started, usage, proc.returncode)
        if cancelled is not None and cancelled.is_set():
            raise FFmpegCancelled(f"{what}: cancelled")
        if proc.returncode != 0:
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
            full = storage_errno_in(stderr)
            if full is not None:  # one cause, one line: the runner names the folder and stops
                raise StorageError(f"{what}: {os.strerror(full)} (ffmpeg could not write its output)",
                                   errno=full)
            raise StageError(f"{what}: ffmpeg exited with code {proc.returncode}:\n{_tail(stderr)}")


def _reap(proc: subprocess.Popen, timeout: float):
    """Wait up to ``timeout`` for ``proc``; once it has exited, set its returncode and
    return its resource usage (os.wait4: the child's own CPU time), else None."""
    if hasattr(os, "wait4"):
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                proc.wait()
                return None
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return usage
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(left, _REAP_STEP_S))
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    return None


#: How often _reap looks whether ffmpeg has exited (short: most film steps take 50-300 ms).
_REAP_STEP_S = 0.005
#: Set to a file path to log every ffmpeg run there (one JSON line each: what, command,
#: wall and CPU seconds); bench/first_film.py reads it. Logged at DEBUG level too.
LOG_ENV = "REELFORGE_FFMPEG_LOG"


def _log_run(what: str, cmd: Sequence[str], wall: float, usage, returncode: int | None) -> None:
    import json
    import logging

    cpu = None if usage is None else usage.ru_utime + usage.ru_stime
    log = logging.getLogger(__name__)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("ffmpeg %.3f s wall, %s s CPU, exit %s: %s: %s", wall, "?" if cpu is None else f"{cpu:.3f}",
                  returncode, what, subprocess.list2cmdline(cmd))
    target = os.environ.get(LOG_ENV)
    if not target:
        return
    line = json.dumps({"what": what, "cmd": list(cmd)[1:], "start": time.time() - wall, "wall": round(wall, 4),
                       "cpu": None if cpu is None else round(cpu, 4), "exit": returncode})
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _stderr_sink():
    """A file for ffmpeg's stderr held in memory (memfd, Linux) so a run writes nothing
    under $TMPDIR; where there is no memfd, an unnamed temporary file."""
    if hasattr(os, "memfd_create"):
        return open(os.memfd_create("reelforge-ffmpeg-stderr"), "w+b")
    return tempfile.TemporaryFile()


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- probe --------------------------------------------------------------------------

_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: (\w+)(.*)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"(\d+(?:\.\d+)?)(k?) (?:fps|tbr)")
_PIXFMT = re.compile(r"\b(yuv\w+|rgb\w+|bgr\w+|gray\w*|nv12|nv21)\b")


def probe(path: str | os.PathLike) -> dict:
    """Describe a video file: ``{"duration", "width", "height", "fps", "codec", "pix_fmt",
    "has_audio"}`` (duration in seconds, from the container; decoded when the container
    does not say). Raises StageError when the file is missing or is not a readable video."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path} does not exist")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=60, preexec_fn=child_setup())
    info = proc.stderr
    video = _VIDEO.search(info)
    if video is None:
        raise StageError(f"{path} is not a readable video: {_tail(info, 400)}")
    codec, rest = video.group(1), video.group(2)
    size = _SIZE.search(rest)
    fps = _FPS.search(rest)
    pix = _PIXFMT.search(rest)
    duration_m = _DURATION.search(info)
    if duration_m:
        h, m, s = duration_m.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    else:  # e.g. a WebM written as a stream: count by decoding
        import imageio_ffmpeg

        try:
            duration = float(imageio_ffmpeg.count_frames_and_secs(str(path))[1])
        except Exception as exc:
            raise StageError(f"{path}: could not measure its duration: {exc}") from exc
    fps_value = None
    if fps:
        fps_value = float(fps.group(1)) * (1000 if fps.group(2) else 1)
    return {
        "duration": duration,
        "width": int(size.group(1)) if size else None,
        "height": int(size.group(2)) if size else None,
        "fps": fps_value,
        "codec": codec,
        "pix_fmt": pix.group(1) if pix else None,
        "has_audio": bool(re.search(r"Stream #\S+.*?: Audio:", info)),
    }


#: The keys of what probe() and clip_facts() return.
FACT_KEYS = frozenset({"duration", "width", "height", "fps", "codec", "pix_fmt", "has_audio"})


def clip_facts(path: str | os.PathLike) -> dict:
    """What :func:`probe` says about a clip, read in-process when it is an MP4 that
    :mod:`reelforge.media.mp4info` understands (H.264/HEVC: microseconds, no ffmpeg process), else
    from :func:`probe`. Same keys, values comparable with probe()'s (``duration`` is exact
    here, to the hundredth from probe). Raises StageError as probe() does."""
    from reelforge.media import mp4info

    try:
        return mp4info.read_facts(path)
    except (mp4info.Unsupported, OSError):  # OSError: missing or unreadable, probe() says which
        return probe(path)


def last_frame(clip: str | os.PathLike, out: str | os.PathLike, *,
               cancelled: threading.Event | None = None) -> Path:
    """Write the last frame of ``clip`` to ``out`` as a PNG, atomically (a partial file of
    this thread's own, renamed into place). Bit-exact flags and no metadata: the same clip
    gives the same PNG bytes every time, so what is made from the frame can be checked
    against it. Raises StageError when the clip has no frame ffmpeg can read."""
    clip, out = Path(clip), Path(out)
    partial = out.with_name(f"{out.stem}.{os.getpid()}.{threading.get_ident()}.partial.png")
    try:
        # Each frame written overwrites the one before (-update 1), so the file ends up
        # holding the last. Only the last half second is written (a PNG per frame is the cost);
        # a clip with no frame in it (under 2 fps) is read whole.
        for seek in (["-sseof", "-0.5"], []):
            run_ffmpeg([*seek, "-i", str(clip), "-map", "0:v:0", "-an", "-sn", "-map_metadata", "-1",
                        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-c:v", "png", "-pix_fmt", "rgb24",
                        "-update", "1", "-f", "image2", "-y", str(partial)],
                       what=f"the last frame of {clip.name}", cancelled=cancelled)
            if partial.is_file() and partial.stat().st_size > 0:
                break
        else:
            raise StageError(f"the last frame of {clip.name}: ffmpeg found no picture in it")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


# -- assemble -----------------------------------------------------------------------

def _concat_line(path: Path) -> str:
    # The concat demuxer's quoting: single quotes, with ' written as '\''.
    return "file '" + str(path.resolve()).replace("'", "'\\''") + "'\n"


def _same_format(infos: list[dict]) -> bool:
    keys = ("codec", "width", "height", "fps", "pix_fmt", "has_audio")
    first = tuple(infos[0][k] for k in keys)
    return all(tuple(i[k] for k in keys) == first for i in infos[1:])


def assemble(clips: Sequence[str | os.PathLike], out: str | os.PathLike, *,
             transition: str = "cut", crossfade_s: float = 0.5,
             cancelled: threading.Event | None = None,
             preset: str = "veryfast", crf: int = 20,
             facts: Sequence[dict | None] | None = None,
             progress: Callable[[FFmpegProgress], None] | None = None,
             fade_in_s: float = 0.0, fade_out_s: float = 0.0) -> Path:
    """Join ``clips`` (in order) into one MP4 at ``out`` and return ``out``.

    ``transition="cut"`` uses the concat demuxer with stream copy when every clip has the same
    codec, size, frame rate and pixel format (fast, lossless); otherwise the clips are
    re-encoded to H.264, scaled and padded to the first clip's size and frame rate.
    ``transition="crossfade"`` re-encodes with an xfade of ``crossfade_s`` seconds between
    clips, so the film is ``(n - 1) * crossfade_s`` shorter than the clips added up.
    Re-encoded films carry no audio. ``out`` is written as MP4 whatever its suffix (so a
    caller may pass a temporary name and rename it).

    ``facts``: each clip's :func:`clip_facts` if the caller recorded them (e.g. when the clip
    was committed), in the order of ``clips``; a ``None`` entry, or ``facts=None``, is read
    from the file. ``progress`` is passed to :func:`run_ffmpeg`.

    ``fade_in_s`` / ``fade_out_s``: a fade from and to black on the film, drawn in the same
    encode (only when the clips are re-encoded: a crossfade, or clips that differ; see
    :func:`joins_by_copy`). A caller of a stream-copy join fades its first and last clips.
    """
    if transition not in ("cut", "crossfade"):
        raise StageError(f"unknown transition {transition!r}: use 'cut' or 'crossfade'")
    paths = [Path(c) for c in clips]
    if not paths:
        raise StageError("nothing to assemble: no clips")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if facts is not None and len(facts) != len(paths):
        raise StageError(f"assemble: {len(facts)} facts for {len(paths)} clips")
    infos = [clip_facts(p) if facts is None or facts[i] is None else facts[i] for i, p in enumerate(paths)]
    what = f"assembling {len(paths)} clips into {out.name}"
    tail = ["-movflags", "+faststart", "-f", "mp4", "-y", str(out)]

    if transition == "cut" and _same_format(infos):  # (joins_by_copy)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=out.parent, delete=False,
                                         encoding="utf-8") as listing:
            listing.writelines(_concat_line(p) for p in paths)
        try:
            run_ffmpeg(["-f", "concat", "-safe", "0", "-i", listing.name, "-c", "copy", *tail],
                       what=what, cancelled=cancelled, progress=progress)
        finally:
            os.unlink(listing.name)
        return _verified(out, sum(i["duration"] for i in infos))

    width, height = infos[0]["width"] or 1280, infos[0]["height"] or 720
    width, height = width - width % 2, height - height % 2
    fps = infos[0]["fps"] or 25
    inputs: list[str] = []
    filters: list[str] = []
    for i, p in enumerate(paths):
        inputs += ["-i", str(p)]
        filters.append(
            f"[{i}:v]scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps:g},format=yuv420p,"
            f"settb=AVTB,setpts=PTS-STARTPTS[v{i}]"
        )
    durations = [i["duration"] for i in infos]
    elapsed = sum(durations)
    if transition == "crossfade" and len(paths) > 1:
        # xfade needs the fade shorter than either clip it joins.
        fade = max(0.0, min(crossfade_s, min(durations) / 2))
        label, elapsed = "v0", durations[0]
        for i in range(1, len(paths)):
            offset = elapsed - fade
            nxt = f"x{i}"
            filters.append(f"[{label}][v{i}]xfade=transition=fade:duration={fade:.4f}:offset={offset:.4f}[{nxt}]")
            label, elapsed = nxt, elapsed + durations[i] - fade
    else:
        filters.append("".join(f"[v{i}]" for i in range(len(paths))) + f"concat=n={len(paths)}:v=1:a=0[vout]")
        label = "vout"
    fades = []
    fade_in_s, fade_out_s = min(max(0.0, fade_in_s), elapsed / 2), min(max(0.0, fade_out_s), elapsed / 2)
    if fade_in_s > 0:
        fades.append(f"fade=t=in:st=0:d={fade_in_s:.4f}")
    if fade_out_s > 0:
        fades.append(f"fade=t=out:st={elapsed - fade_out_s:.4f}:d={fade_out_s:.4f}")
    if fades:
        filters.append(f"[{label}]{','.join(fades)}[faded]")
        label = "faded"
    run_ffmpeg([*inputs, "-filter_complex", ";".join(filters), "-map", f"[{label}]", "-an",
                "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p", *tail],
               what=what, cancelled=cancelled, progress=progress)
    return _verified(out, elapsed)


def joins_by_copy(transition: str, facts: Sequence[dict]) -> bool:
    """Whether :func:`assemble` joins clips with these facts by stream copy (a cut between
    clips of one format) rather than re-encoding them."""
    return transition == "cut" and _same_format(list(facts))


def _verified(out: Path, expected_s: float) -> Path:
    """``out`` if it is a readable video about ``expected_s`` long; else StageError. A film
    is checked before anyone may mark it done: an ffmpeg that was stopped, or that wrote
    less than it was asked to, never passes as a finished film."""
    try:
        info = clip_facts(out)
    except StageError as exc:
        raise StageError(f"the assembled film {out.name} is not a readable video: {exc}") from exc
    tolerance = max(0.5, 0.02 * expected_s)
    if not info.get("duration") or abs(info["duration"] - expected_s) > tolerance:
        raise StageError(f"the assembled film {out.name} is {info.get('duration') or 0:.2f} s long; "
                         f"its clips add up to {expected_s:.2f} s")
    return out
