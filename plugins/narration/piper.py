"""The ``piper`` narrator: a neural voice (Piper, VITS models run by onnxruntime) read from
a voice file you already have. It never downloads anything: a missing model is an error
that names the path and where to get one.

Needs ``pip install 'reelforge[piper]'`` (piper-tts, GPL-3.0, with onnxruntime) and a voice:
an ``.onnx`` file and its ``.onnx.json`` config, e.g. ``en_US-lessac-medium`` (about 60 MB)
from the Piper voices collection.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import ClassVar

import attrs

from reelforge.errors import ConfigError, StageError
from reelforge.protocols import ShotJob
from reelforge.records import Shot

from reelforge.plugins.narration import text as T

GET_VOICES = ("download a voice (an .onnx file and its .onnx.json) from the Piper voices collection "
              "(huggingface.co/rhasspy/piper-voices), e.g. en/en_US/lessac/medium, and point "
              "-o piper.model=PATH/en_US-lessac-medium.onnx at it")


@attrs.frozen
class PiperOptions:
    model: str = ""
    "Path of the Piper voice model (.onnx). Required; nothing is ever downloaded."
    config: str = ""
    "Path of its config (default: the model's path + .json)."
    speaker: int = attrs.field(default=-1, validator=attrs.validators.ge(-1))
    "Speaker number for a multi-speaker voice (-1: the voice's default)."
    length_scale: float | None = attrs.field(default=None, validator=attrs.validators.optional(
        [attrs.validators.gt(0.2), attrs.validators.lt(5.0)]))
    "Pace: above 1 speaks slower, below 1 faster (default: the voice's own)."


class PiperNarrator:
    """Speaks each shot's narration with a local Piper voice model (neural, natural sounding,
    one language per voice). Takes the model file path; never downloads."""

    name: ClassVar[str] = "piper"
    Options: ClassVar[type] = PiperOptions
    description: ClassVar[str] = "Piper neural voice from a local .onnx model (needs reelforge[piper])"
    #: onnxruntime already spreads one synthesis over the cores.
    concurrency: int = 1

    def __init__(self, options: PiperOptions | None = None):
        self.options = options if options is not None else PiperOptions()
        if not self.options.model.strip():
            raise ConfigError(f"the piper narrator needs a voice model: {GET_VOICES}")
        self.model_path = Path(self.options.model).expanduser()
        self.config_path = (Path(self.options.config).expanduser() if self.options.config.strip()
                            else self.model_path.with_name(self.model_path.name + ".json"))
        if not self.model_path.is_file():
            raise ConfigError(f"piper voice model {self.model_path} does not exist; {GET_VOICES}")
        if not self.config_path.is_file():
            raise ConfigError(f"piper voice config {self.config_path} does not exist: a Piper voice is "
                              f"two files, the .onnx model and its .onnx.json config; {GET_VOICES}")
        try:
            config = json.loads(self.config_path.read_text(encoding="utf-8"))
            self.sample_rate = int(config["audio"]["sample_rate"])
            self.language = str(config.get("espeak", {}).get("voice") or
                                config.get("language", {}).get("code") or "")
            self.phoneme_type = str(config.get("phoneme_type", "espeak"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"piper voice config {self.config_path} is not a Piper voice config: {exc}") from exc
        if self.phoneme_type == "pinyin" and not (self.model_path.parent / "g2pW" / "g2pw.onnx").is_file():
            # piper would download its Chinese phonemizer model at the first line: refuse.
            raise ConfigError(
                f"the Chinese piper voice {self.model_path.name} needs the g2pW model at "
                f"{self.model_path.parent / 'g2pW' / 'g2pw.onnx'}; reelforge never downloads it: fetch "
                f"g2pw.tar.gz from the Piper checkpoints collection and unpack it there")
        import importlib.util

        if importlib.util.find_spec("piper") is None:
            raise ConfigError("the piper narrator needs piper-tts: pip install 'reelforge[piper]' "
                              "(or pip install piper-tts)")
        self._voice = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._voice is None:
                try:
                    from piper import PiperVoice
                except ImportError as exc:
                    raise ConfigError("the piper narrator needs piper-tts: pip install 'reelforge[piper]' "
                                      "(or pip install piper-tts)") from exc
                try:
                    # download_dir: where piper looks for extra phonemizer models; next to the voice,
                    # never the working folder.
                    self._voice = PiperVoice.load(self.model_path, config_path=self.config_path,
                                                  download_dir=self.model_path.parent)
                except Exception as exc:  # onnxruntime raises its own kinds for a bad model
                    raise StageError(f"could not load the piper voice {self.model_path}: {exc}") from exc
            return self._voice

    def narrate(self, shot: Shot, job: ShotJob) -> Path:
        """Write ``shot.narration`` spoken as a mono 16-bit WAV at the voice's sample rate
        under ``job.work_dir`` and return its path."""
        text = T.require_text(shot)
        T.check_script(shot, text, self.language or "", "piper")
        voice = self._load()
        from piper import SynthesisConfig

        syn = SynthesisConfig(speaker_id=None if self.options.speaker < 0 else self.options.speaker,
                              length_scale=self.options.length_scale)
        job.progress(0.0, f"speaking ({self.model_path.stem})")
        pcm: list[bytes] = []
        rate = self.sample_rate
        try:
            for chunk in voice.synthesize(text, syn_config=syn):
                if job.cancelled.is_set():
                    raise StageError(f"shot {shot.id}: narration cancelled")
                rate = chunk.sample_rate
                pcm.append(chunk.audio_int16_bytes)
        except StageError:
            raise
        except Exception as exc:
            raise StageError(f"shot {shot.id}: the piper voice {self.model_path.name} failed: {exc}") from exc
        data = b"".join(pcm)
        seconds = len(data) / 2 / rate
        T.check_length(shot, text, seconds, "piper", self.model_path.stem,
                       speed=1.0 / (self.options.length_scale or 1.0))
        out = T.write_wav(Path(job.work_dir) / f"shot_{shot.id:03d}.wav", data, rate)
        job.progress(1.0, f"{seconds:.1f} s")
        return out


__all__ = ["PiperNarrator", "PiperOptions"]
