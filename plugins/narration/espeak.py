"""The ``espeak`` narrator: eSpeak NG's formant voices, in over a hundred languages.

The library and its voice data come inside the ``espeakng-loader`` wheel (a dependency of
reelforge), so it works after ``pip install`` alone: no system package, no download. It is
driven through ctypes in synchronous mode: the samples come back through a callback, so
nothing is played and no temporary files are made.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from pathlib import Path
from typing import ClassVar

import attrs

from reelforge.errors import ConfigError, StageError
from reelforge.protocols import ShotJob
from reelforge.records import Shot

from reelforge.plugins.narration import text as T

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE, _PITCH = 1, 3
_EE_OK, _EE_NOT_FOUND = 0, 2

#: Normal speaking rate of eSpeak NG, words per minute.
DEFAULT_RATE = 175

#: Languages reelforge picks a regional voice for when told ``auto``.
_AUTO_VOICE = {"en": "en-us", "pt": "pt-br", "cmn": "cmn", "zh": "cmn"}


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte),
                ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int),
                ("spare", ctypes.c_void_p)]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Engine:
    """The process's one eSpeak NG instance. The library keeps global state (voice,
    parameters, callback), so every synthesis holds the lock."""

    lock = threading.Lock()

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as exc:
            raise ConfigError("the espeak narrator needs the espeakng-loader package, which ships "
                              "eSpeak NG: pip install espeakng-loader") from exc
        lib_path, data_path = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise ConfigError(f"could not load eSpeak NG from {lib_path}: {exc}; reinstall it with "
                              f"pip install --force-reinstall espeakng-loader") from exc
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if rate <= 0:
            raise ConfigError(f"eSpeak NG could not start with its data at {data_path}")
        self.lib, self.sample_rate, self.data_path = lib, rate, data_path
        self._chunks: list[bytes] = []
        self._cancelled: threading.Event | None = None
        # Kept on the instance: the C side holds only a pointer to it.
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, _events) -> int:
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        return 1 if self._cancelled is not None and self._cancelled.is_set() else 0

    @functools.cached_property
    def languages(self) -> dict[str, str]:
        """Every language the voice data has -> the voice identifier for it."""
        found: dict[str, str] = {}
        voices = self.lib.espeak_ListVoices(None)
        i = 0
        while voices[i]:
            voice = voices[i].contents
            raw = ctypes.string_at(voice.languages, 256) if voice.languages else b""
            # Pairs of (priority byte, NUL-terminated language name), ended by a zero byte.
            pos = 0
            while pos < len(raw) and raw[pos] != 0:
                end = raw.index(b"\0", pos + 1)
                found.setdefault(raw[pos + 1:end].decode("ascii", "replace"),
                                 (voice.identifier or b"").decode("ascii", "replace"))
                pos = end + 1
            i += 1
        return found

    def has_voice(self, name: str) -> bool:
        base = name.split("+", 1)[0].lower()
        return base in {k.lower() for k in self.languages} or any(
            v.lower().endswith("/" + base) or v.lower() == base for v in self.languages.values())

    def speak(self, text: str, voice: str, *, rate: int, pitch: int,
              cancelled: threading.Event | None) -> bytes:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise StageError(f"eSpeak NG has no voice {voice!r}")
            self.lib.espeak_SetParameter(_RATE, rate, 0)
            self.lib.espeak_SetParameter(_PITCH, pitch, 0)
            data = text.encode("utf-8")
            self._chunks, self._cancelled = [], cancelled
            try:
                err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0,
                                            _CHARS_UTF8 | _ENDPAUSE, None, None)
                self.lib.espeak_Synchronize()
                if err != _EE_OK:
                    raise StageError(f"eSpeak NG failed to speak (error {err})")
                return b"".join(self._chunks)
            finally:
                self._chunks, self._cancelled = [], None


@functools.lru_cache(maxsize=1)
def engine() -> _Engine:
    return _Engine()


@attrs.frozen
class EspeakOptions:
    voice: str = attrs.field(default="auto", validator=attrs.validators.instance_of(str))
    """An eSpeak NG voice or language (en-us, en-gb, fr, de, es, cmn, ja, ...), optionally with a
    variant (en-us+f3), or auto: chosen per line from its script and common words."""
    rate: int = attrs.field(default=170, validator=[attrs.validators.ge(80), attrs.validators.le(450)])
    "Speaking rate, words per minute."
    pitch: int = attrs.field(default=45, validator=[attrs.validators.ge(0), attrs.validators.le(99)])
    "Base pitch, 0 to 99."


class EspeakNarrator:
    """Speaks each shot's narration with eSpeak NG (bundled in the espeakng-loader wheel):
    offline, instant, robotic but clear, in over a hundred languages."""

    name: ClassVar[str] = "espeak"
    Options: ClassVar[type] = EspeakOptions
    description: ClassVar[str] = "eSpeak NG voices, bundled (offline, 100+ languages, no model)"
    #: eSpeak NG is one global instance per process, and it is far faster than real time.
    concurrency: int = 1
    #: The same line always sounds the same: a redo of a voice is refused (edit the line instead).
    uses_seed: ClassVar[bool] = False

    def __init__(self, options: EspeakOptions | None = None):
        self.options = options if options is not None else EspeakOptions()
        self.engine = engine()
        voice = self.options.voice.strip()
        if voice.lower() != "auto" and not self.engine.has_voice(voice):
            close = sorted(k for k in self.engine.languages if k.startswith(T.language_of_voice(voice)))
            raise ConfigError(
                f"eSpeak NG has no voice {voice!r}"
                + (f"; close: {', '.join(close[:10])}" if close else "")
                + f" ({len(self.engine.languages)} languages, e.g. {', '.join(sorted(self.engine.languages)[:30])})")

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    def voice_for(self, shot: Shot, text: str) -> str:
        """The voice that speaks ``text``: the one chosen, or with ``auto`` the best one for
        the line's language (StageError when the data has none)."""
        chosen = self.options.voice.strip()
        if chosen.lower() != "auto":
            return chosen
        language, _sure = T.guess_language(text)
        voice = _AUTO_VOICE.get(language, language)
        if not self.engine.has_voice(voice):
            raise StageError(f"shot {shot.id}: the narration looks like language {language!r}, for which "
                             f"eSpeak NG has no voice; set the espeak voice option: {text[:60]!r}")
        return voice

    def narrate(self, shot: Shot, job: ShotJob) -> Path:
        """Write ``shot.narration`` spoken as a mono 16-bit WAV (eSpeak's 22,050 Hz) under
        ``job.work_dir`` and return its path."""
        text = T.require_text(shot)
        voice = self.voice_for(shot, text)
        T.check_script(shot, text, voice, "espeak")
        job.progress(0.0, f"speaking ({voice})")
        pcm = self.engine.speak(text, voice, rate=self.options.rate, pitch=self.options.pitch,
                                cancelled=job.cancelled)
        if job.cancelled.is_set():
            raise StageError(f"shot {shot.id}: narration cancelled")
        seconds = len(pcm) / 2 / self.sample_rate
        T.check_length(shot, text, seconds, "espeak", voice, speed=self.options.rate / DEFAULT_RATE)
        out = T.write_wav(Path(job.work_dir) / f"shot_{shot.id:03d}.wav", pcm, self.sample_rate)
        job.progress(1.0, f"{seconds:.1f} s")
        return out
