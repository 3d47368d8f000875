"""What every narrator checks about a narration line before and after speaking it: that
there is text, which script and language it is in, that the voice can read that script,
and that the audio is not implausibly short for the text (the mark of a voice that
skipped words it could not read)."""

from __future__ import annotations

import os
import re
import unicodedata
import wave
from pathlib import Path

from reelforge.errors import StageError
from reelforge.records import Shot

#: Language code (ISO 639-1/-3, as espeak-ng and piper name voices) -> the script it is
#: written in. A voice whose language is not here is not script-checked.
LANGUAGE_SCRIPT: dict[str, str] = {
    **{code: "Latin" for code in (
        "af", "an", "az", "bs", "ca", "cs", "cy", "da", "de", "en", "eo", "es", "et", "eu", "fi",
        "fr", "ga", "gd", "gl", "gn", "hr", "ht", "hu", "ia", "id", "io", "is", "it", "jbo", "kl",
        "la", "lb", "lfn", "lt", "lv", "mi", "ms", "mt", "nb", "nl", "no", "om", "pap", "pl", "pt",
        "qu", "ro", "sk", "sl", "smj", "sq", "sv", "sw", "tn", "tk", "tr", "uz", "vi")},
    **{code: "Cyrillic" for code in ("ba", "be", "bg", "cv", "kk", "ky", "mk", "ru", "sr", "tt", "uk")},
    **{code: "Greek" for code in ("el", "grc")},
    **{code: "Arabic" for code in ("ar", "fa", "sd", "ug", "ur")},
    "he": "Hebrew",
    **{code: "Han" for code in ("cmn", "hak", "yue", "zh")},
    "ja": "Japanese",
    "ko": "Hangul",
    **{code: "Devanagari" for code in ("hi", "kok", "mr", "ne")},
    **{code: "Bengali" for code in ("as", "bn", "bpy")},
    "th": "Thai", "ta": "Tamil", "te": "Telugu", "kn": "Kannada", "ml": "Malayalam",
    "gu": "Gujarati", "pa": "Gurmukhi", "or": "Oriya", "si": "Sinhala", "my": "Myanmar",
    "ka": "Georgian", "hy": "Armenian", "am": "Ethiopic", "chr": "Cherokee",
}

#: Script -> the language a narrator picks for it when told ``auto``.
SCRIPT_LANGUAGE: dict[str, str] = {
    "Cyrillic": "ru", "Greek": "el", "Arabic": "ar", "Hebrew": "he", "Han": "cmn", "Japanese": "ja",
    "Hangul": "ko", "Devanagari": "hi", "Bengali": "bn", "Thai": "th", "Tamil": "ta", "Telugu": "te",
    "Kannada": "kn", "Malayalam": "ml", "Gujarati": "gu", "Gurmukhi": "pa", "Oriya": "or",
    "Sinhala": "si", "Myanmar": "my", "Georgian": "ka", "Armenian": "hy", "Ethiopic": "am",
}

# Unicode character-name prefixes -> script.
_NAME_SCRIPT = {
    "LATIN": "Latin", "CYRILLIC": "Cyrillic", "GREEK": "Greek", "ARABIC": "Arabic", "HEBREW": "Hebrew",
    "CJK": "Han", "HIRAGANA": "Japanese", "KATAKANA": "Japanese", "HANGUL": "Hangul",
    "DEVANAGARI": "Devanagari", "BENGALI": "Bengali", "THAI": "Thai", "TAMIL": "Tamil",
    "TELUGU": "Telugu", "KANNADA": "Kannada", "MALAYALAM": "Malayalam", "GUJARATI": "Gujarati",
    "GURMUKHI": "Gurmukhi", "ORIYA": "Oriya", "SINHALA": "Sinhala", "MYANMAR": "Myanmar",
    "GEORGIAN": "Georgian", "ARMENIAN": "Armenian", "ETHIOPIC": "Ethiopic", "CHEROKEE": "Cherokee",
}
#: Scripts whose characters are syllables or words, not letters: fewer per second of speech.
_SYLLABIC = {"Han", "Japanese", "Hangul"}

#: A few very common words per Latin-script language, to tell them apart on one line.
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and of to in is it that with as his her was for on at from they this".split()),
    "fr": frozenset("le la les et des une un est dans du que qui pour sur au avec elle il pas".split()),
    "de": frozenset("der die das und ist nicht ein eine mit den dem sich auf für von zu im".split()),
    "es": frozenset("el la los las y que en un una es por con del para se su al lo".split()),
    "it": frozenset("il lo la gli le e che di un una è per con del della non si nel al".split()),
    "pt": frozenset("o a os as e que de um uma é com não do da em para se no na".split()),
    "nl": frozenset("de het een en van is dat niet op te zijn met voor aan als er".split()),
    "sv": frozenset("och att det som en ett är på för med inte av den till har om".split()),
    "pl": frozenset("i w nie na się z że do jest to jak po od co przez dla".split()),
    "tr": frozenset("ve bir bu da de için ile çok ne gibi daha o ama olarak kadar".split()),
    "id": frozenset("dan yang di ini itu dengan untuk dari tidak ke akan pada adalah".split()),
}


def letters(text: str) -> list[str]:
    """The letters (and ideographs) of ``text``: what a voice has to pronounce."""
    return [c for c in text if unicodedata.category(c)[0] == "L"]


def script_of(ch: str) -> str | None:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    first = name.split(" ", 1)[0]
    return _NAME_SCRIPT.get(first)


def dominant_script(text: str) -> str | None:
    """The script most of ``text``'s letters are in ('Latin', 'Han', 'Japanese' when there
    is any kana, ...), or None for text without letters."""
    counts: dict[str, int] = {}
    for ch in letters(text):
        script = script_of(ch)
        if script:
            counts[script] = counts.get(script, 0) + 1
    if not counts:
        return None
    if counts.get("Japanese") and counts.get("Han"):
        counts["Japanese"] += counts.pop("Han")  # kanji among kana are Japanese
    return max(counts, key=counts.get)


def guess_language(text: str) -> tuple[str, bool]:
    """(language code, sure) for a narration line: from its script, and for Latin script
    from common words. Unsure guesses fall back to English."""
    script = dominant_script(text)
    if script is None:
        return "en", False
    if script == "Cyrillic":
        return ("uk", True) if re.search(r"[іїєґ]", text.lower()) else ("ru", True)
    if script == "Arabic":
        return ("fa", True) if re.search(r"[پچژگ]", text) else ("ar", True)
    if script != "Latin":
        return SCRIPT_LANGUAGE.get(script, "en"), script in SCRIPT_LANGUAGE
    words = re.findall(r"[^\W\d_]+", text.lower())
    scores = sorted(((sum(w in stop for w in words), code) for code, stop in _STOPWORDS.items()), reverse=True)
    (best, code), (second, _) = scores[0], scores[1]
    if best >= 2 and best > second:
        return code, True
    if best >= 1 and best > second and len(words) <= 6:
        return code, False
    return "en", False


def language_of_voice(voice: str) -> str:
    """The language part of a voice name: 'en-us+f2' -> 'en', 'pt-BR' -> 'pt', 'cmn' -> 'cmn'."""
    return re.split(r"[-_+/]", voice.strip().lower(), maxsplit=1)[0]


def clean(text: str) -> str:
    return " ".join(text.split())


def require_text(shot: Shot) -> str:
    """The shot's narration, whitespace collapsed; StageError when there is none."""
    text = clean(shot.narration)
    if not letters(text) and not re.search(r"\d", text):
        raise StageError(
            f"shot {shot.id}: its narration line is empty, so there is nothing to speak; write one "
            f"(the \"narration\" of shot {shot.id} in shots.json) or make the film without narration")
    return text


def check_script(shot: Shot, text: str, voice: str, engine: str) -> None:
    """StageError when ``voice`` cannot read the script ``text`` is written in (an English
    voice given Chinese text says nothing useful, or skips it)."""
    script = dominant_script(text)
    wanted = LANGUAGE_SCRIPT.get(language_of_voice(voice))
    if script is None or wanted is None or script == wanted:
        return
    if wanted == "Japanese" and script == "Han":
        return
    suggestion = SCRIPT_LANGUAGE.get(script)
    hint = f" (a {suggestion!r} voice, or voice=auto)" if suggestion else ""
    raise StageError(
        f"shot {shot.id}: the narration is written in {script} script but the {engine} voice "
        f"{voice!r} reads {wanted} script; choose a voice for the narration's language{hint}: "
        f"{text[:60]!r}")


def min_seconds(text: str, speed: float = 1.0) -> float:
    """The shortest plausible speech for ``text`` at ``speed`` times the normal pace: a
    third of the time a brisk speaker needs (14 letters, or 5 syllabic characters, a second)."""
    chars = letters(text)
    syllabic = sum(1 for c in chars if script_of(c) in _SYLLABIC)
    digits = len(re.findall(r"\d", text))
    normal = (len(chars) - syllabic + 2 * digits) / 14.0 + syllabic / 5.0
    return normal / 3.0 / max(0.1, speed)


def check_length(shot: Shot, text: str, seconds: float, engine: str, voice: str, speed: float = 1.0) -> None:
    """StageError when ``seconds`` of audio is implausibly short for ``text``."""
    floor = min_seconds(text, speed)
    if seconds < floor:
        raise StageError(
            f"shot {shot.id}: the {engine} voice {voice!r} gave {seconds:.2f} s of audio for "
            f"{len(letters(text))} letters of narration (at least {floor:.1f} s expected); it probably "
            f"cannot read this language: {text[:60]!r}. Choose a voice for the narration's language.")


def write_wav(out: Path, pcm: bytes, sample_rate: int, channels: int = 1) -> Path:
    """Write 16-bit PCM at ``out`` through a partial name (a crash never leaves half a WAV
    under the final name)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.stem}.{os.getpid()}.partial.wav")
    try:
        with wave.open(str(partial), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm)
        os.replace(partial, out)
    except OSError as exc:
        raise StageError(f"could not write the narration {out}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return out


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())
