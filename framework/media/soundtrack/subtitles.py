"""Subtitles: narration lines cut into cues timed by their share of the speech, and the cues
written to and read back from SubRip (.srt) and WebVTT (.vtt) files."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import attrs

from reelforge.errors import StageError


@attrs.frozen
class Cue:
    """One subtitle: ``text`` shown from ``start`` to ``end`` seconds of the film."""

    start: float
    "When the text appears, in seconds from the film's start."
    end: float
    "When it goes, in seconds (after ``start``)."
    text: str
    "What is shown; may hold a line break."



#: Words a subtitle line should not end on (style guides: BBC, Netflix): articles,
#: prepositions, conjunctions, and the like, which belong with the words after them.
WEAK_ENDINGS = frozenset("""
a an the this that these those my your his her its our their some any no every each
of to in on at by for with from into onto over under about after before through between
without within during across against along around behind beyond near toward towards upon
and or but nor so yet if as than because while when where whether although though unless
until since once that which who whom whose
is are was were be been has have had will would can could shall should may might must
not very
""".split())


def _weak_end(line: str) -> bool:
    words = line.split()
    if not words:
        return False
    last = words[-1]
    if last[-1:] in ",.;:!?\u2014":  # a line ending in punctuation ends a phrase
        return False
    return last.lower().strip("\"'\u2018\u2019\u201c\u201d(") in WEAK_ENDINGS


def _split_text(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into pieces of at most about ``max_chars``, at sentence ends first,
    then at commas, then between words (never right after an article, preposition or
    conjunction when another place fits)."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text] if text else []
    pieces: list[str] = []
    for sentence in re.split(r"(?<=[.!?;:])\s+", text):
        for clause in (re.split(r"(?<=,)\s+", sentence) if len(sentence) > max_chars else [sentence]):
            words, current = clause.split(), []
            for word in words:
                if len(" ".join([*current, word])) > max_chars and current:
                    # Carry the weak words at the end over to the next piece.
                    keep = len(current)
                    while keep > 1 and _weak_end(" ".join(current[:keep])):
                        keep -= 1
                    pieces.append(" ".join(current[:keep]))
                    current = current[keep:]
                current.append(word)
            if current:
                pieces.append(" ".join(current))
    # Merge short neighbours back together when they fit.
    merged: list[str] = []
    for piece in pieces:
        if merged and len(merged[-1]) + 1 + len(piece) <= max_chars:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def _two_lines(text: str, width: int) -> str:
    """Break a cue's text into at most two lines of at most ``width`` characters where it
    can be done, as subtitle style guides ask: never after an article, preposition or
    conjunction when another break fits, after punctuation when that keeps the lines
    near balance, and otherwise as balanced as possible (the top line the shorter on a tie)."""
    if len(text) <= width:
        return text
    words = text.split()
    best, best_score = text, None
    for i in range(1, len(words)):
        a, b = " ".join(words[:i]), " ".join(words[i:])
        over = max(0, len(a) - width) + max(0, len(b) - width)
        score = (over, _weak_end(a), abs(len(a) - len(b)) - (6 if a[-1] in ",.;:!?" else 0), len(a) > len(b))
        if best_score is None or score < best_score:
            best, best_score = f"{a}\n{b}", score
    return best


def _fit_two_lines(piece: str, width: int) -> list[str]:
    """``piece`` as one cue, or as two when its only two-line breaks that fit ``width`` end
    a line on a weak word: then split at the most even break that does not."""
    broken = _two_lines(piece, width)
    if "\n" not in broken or not _weak_end(broken.split("\n")[0]):
        return [piece]
    words = piece.split()
    splits = [(abs(len(" ".join(words[:i])) - len(" ".join(words[i:]))), i) for i in range(1, len(words))
              if not _weak_end(" ".join(words[:i]))]
    if not splits:
        return [piece]
    i = min(splits)[1]
    return [" ".join(words[:i]), " ".join(words[i:])]


def narration_cues(lines: Sequence[tuple[float, float, str]], *, max_chars: int = 90,
                   line_width: int = 45) -> list[Cue]:
    """Subtitle cues for narration: ``lines`` is (start, seconds of speech, text) per shot.
    A line longer than ``max_chars`` becomes several cues, its speech time shared in
    proportion to their length; each cue is at most two lines of ``line_width``."""
    cues: list[Cue] = []
    for start, length, text in lines:
        pieces = [p for piece in _split_text(text, max_chars) for p in _fit_two_lines(piece, line_width)]
        if not pieces or length <= 0:
            continue
        total = sum(len(p) for p in pieces)
        t = start
        for piece in pieces:
            d = length * len(piece) / total
            cues.append(Cue(round(t, 3), round(t + d, 3), _two_lines(piece, line_width)))
            t += d
    return cues



def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _check_cues(cues: Sequence[Cue]) -> None:
    for i, cue in enumerate(cues, start=1):
        if not cue.end > cue.start or cue.start < 0:
            raise StageError(f"subtitle cue {i} ({cue.text[:30]!r}) has start {cue.start} and end "
                             f"{cue.end}: the end must come after the start")


def _write_text(out: str | os.PathLike, text: str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def write_srt(cues: Sequence[Cue], out: str | os.PathLike) -> Path:
    """Write ``cues`` as a SubRip (.srt) file at ``out`` (UTF-8) and return ``out``."""
    _check_cues(cues)
    blocks = [f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.text.strip()}\n"
              for i, c in enumerate(cues, start=1)]
    return _write_text(out, "\n".join(blocks))


#: The height of one line of a WebVTT cue as browsers draw it, as a fraction of the picture's
#: height (the cue font is 5 % of the height; more for the line spacing and the cue's box).
VTT_LINE = 0.065


def write_vtt(cues: Sequence[Cue], out: str | os.PathLike, *, clear_bottom: float | None = None) -> Path:
    """Write ``cues`` as a WebVTT (.vtt) file at ``out`` (UTF-8) and return ``out``.

    ``clear_bottom``: a fraction of the picture's height at the bottom that the cues must
    leave clear (the storyboard card's caption band): each cue gets a ``line:`` setting
    that puts its last line just above it, so a browser never draws the narration over the
    card's caption. None: no settings (the player's own place, at the bottom)."""
    _check_cues(cues)
    blocks = [f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}{_placement(c, clear_bottom)}\n{c.text.strip()}\n"
              for c in cues]
    return _write_text(out, "WEBVTT\n\n" + "\n".join(blocks))


def _placement(cue: Cue, clear_bottom: float | None) -> str:
    if not clear_bottom:
        return ""
    lines = cue.text.strip().count("\n") + 1
    top = max(0.0, 1.0 - clear_bottom - lines * VTT_LINE)
    return f" line:{top * 100:.0f}%"


_CUE_TIME = re.compile(r"(\d+):(\d\d):(\d\d)[,.](\d{3})\s*-->\s*(\d+):(\d\d):(\d\d)[,.](\d{3})")


def read_cues(path: str | os.PathLike) -> list[Cue]:
    """Read an .srt or .vtt file written by :func:`write_srt` / :func:`write_vtt`."""
    text = Path(path).read_text(encoding="utf-8")
    cues = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip().splitlines()
        for i, line in enumerate(lines):
            m = _CUE_TIME.search(line)
            if m:
                g = [int(x) for x in m.groups()]
                start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
                end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
                cues.append(Cue(start, end, "\n".join(lines[i + 1:])))
                break
    return cues

