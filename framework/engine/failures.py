"""Failures said once per cause: shots failed by one cause (a server down) become one line
(``4 clips failed (shots 1-4): CAUSE``), in the run's result and in the live output."""

from __future__ import annotations

#: What one shot's output is called, per stage: (singular, plural).
NOUNS = {"images": ("image", "images"), "narration": ("narration", "narrations"), "videos": ("clip", "clips")}


def shot_ranges(ids, limit: int = 8) -> str:
    """``[1, 2, 3, 5, 7, 8]`` -> ``'1-3, 5, 7-8'`` (at most ``limit`` ranges, then how many more)."""
    ranges: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        rest = sum(b - a + 1 for a, b in ranges[limit:])
        parts.append(f"and {rest:,} more")
    return ", ".join(parts)


def group_failures(failures) -> list[str]:
    """One line per cause, in the order first seen, from (stage, shot id, cause, line) per
    failed shot: a cause alone keeps its own line (``shot 3 (videos): ...``); several shots
    of one stage failed by the same cause become ``4 clips failed (shots 1-4): CAUSE``."""
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for stage, shot_id, cause, line in failures:
        groups.setdefault((stage, cause), []).append((shot_id, line))
    lines = []
    for (stage, cause), shots in groups.items():
        if len(shots) == 1:
            lines.append(shots[0][1])
            continue
        noun = NOUNS.get(stage, (stage, stage))[1]
        lines.append(f"{len(shots):,} {noun} failed (shots {shot_ranges(s for s, _ in shots)}): {cause}")
    return lines
