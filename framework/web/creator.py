"""What a creator looks at: a session's story, shots and ledger gathered into plain data, for
`reelforge report`, `reelforge serve` and the ledger lines of `sessions view`.

Everything here reads a session loaded read-only (:meth:`SessionStore.load`); nothing is
written. Text in the result is as the session holds it (untrusted): the HTML templates
escape it, the terminal views pass it through ``for_terminal``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any, Callable

from reelforge.errors import SessionCorruptError
from reelforge.media.checks import clip_seconds
from reelforge.redact import redact_data
from reelforge.store.meta import DONE, SHOT_STAGES, Meta
from reelforge.store.session import Session
from reelforge.store.verify import verify_summary

#: Per-stage ledger rows, in pipeline order: (key, label).
LEDGER_STAGES = (("story", "Story"), ("scene_graph", "Scenes"), ("shots", "Shots"),
                 ("images", "Images"), ("narration", "Voice"), ("videos", "Videos"),
                 ("assemble", "Film"))
#: The shot artifacts a page shows, in pipeline order: (attribute of ShotState, stage folder).
SHOT_ARTIFACTS = (("image", "images"), ("narration", "narration"), ("video", "videos"))
TOKEN_KEYS = ("prompt_tokens", "completion_tokens")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def artifact_cost(art) -> float | None:
    """Backend seconds spent on one artifact over all its attempts; for a session older than
    the ledger, the successful attempt's time (all it recorded); None if nothing was spent."""
    spent = _number(art.backend_seconds)
    return spent if spent is not None else _number(art.seconds)


def stage_totals(meta: Meta) -> dict[str, dict[str, float | int | None]]:
    """The cost ledger per stage: ``{stage: {backend_seconds, attempts, prompt_tokens,
    completion_tokens}}`` (a value is None where the stage recorded none). Story steps come
    from ``step_usage``, shot stages add up their shots, the film is its assembly time."""
    totals: dict[str, dict[str, Any]] = {}
    for step in ("story", "scene_graph", "shots"):
        usage = meta.step_usage.get(step) or {}
        totals[step] = {"backend_seconds": _number(usage.get("seconds")),
                        "attempts": _int(usage.get("attempts")),
                        **{k: _int(usage.get(k)) for k in TOKEN_KEYS}}
    for stage, attr in SHOT_STAGES.items():
        seconds = attempts = None
        for shot in meta.shots:
            art = getattr(shot, attr)
            cost = artifact_cost(art)
            if cost is not None:
                seconds = (seconds or 0.0) + cost
            if art.attempts:
                attempts = (attempts or 0) + art.attempts
        totals[stage] = {"backend_seconds": seconds, "attempts": attempts,
                         "prompt_tokens": None, "completion_tokens": None}
    film_s = artifact_cost(meta.film)
    totals["assemble"] = {"backend_seconds": film_s, "attempts": None,
                          "prompt_tokens": None, "completion_tokens": None}
    return totals


def grand_total(totals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The sum of :func:`stage_totals` rows (None where no stage recorded a value)."""
    out: dict[str, Any] = {}
    for key in ("backend_seconds", "attempts", *TOKEN_KEYS):
        values = [row[key] for row in totals.values() if row.get(key) is not None]
        out[key] = sum(values) if values else None
    return out


def _int(value: Any) -> int | None:
    n = _number(value)
    return None if n is None else int(n)


def ledger_lines(meta: Meta) -> list[str]:
    """The ledger as text lines for `sessions view`: a row per stage that spent anything."""
    totals = stage_totals(meta)
    rows = [(label, totals[key]) for key, label in LEDGER_STAGES
            if any(v is not None for v in totals[key].values())]
    if not rows:
        return []
    rows.append(("Total", grand_total(totals)))
    lines = ["Ledger (backend time over all attempts, attempts, LLM tokens):"]
    for label, row in rows:
        parts = [f"{row['backend_seconds']:>9.1f} s" if row["backend_seconds"] is not None else f"{'-':>11}"]
        attempts = row["attempts"]
        parts.append((f"{attempts:>5,} attempt{'' if attempts == 1 else 's'}" if attempts is not None
                      else "").ljust(14))
        if row["prompt_tokens"] is not None or row["completion_tokens"] is not None:
            parts.append(f"{row['prompt_tokens'] or 0:,} prompt + {row['completion_tokens'] or 0:,} "
                         f"completion tokens")
        lines.append(f"  {label:<8}" + "  ".join(parts).rstrip())
    return lines


# -- the whole session as data, for the report and the web app ------------------------

def _read(reader: Callable[[str], Any], step: str) -> tuple[Any, str | None]:
    try:
        return reader(step), None
    except SessionCorruptError as exc:
        return None, str(exc)


def file_present(session: Session, path: str | None) -> bool:
    """Whether the file a loaded session names is in place (paths in a loaded session were
    checked to stay inside it; a link counts as absent)."""
    return bool(path) and os.path.isfile(session.path / path) and not os.path.islink(session.path / path)


def _artifact(art, stage: str, media: Callable[[str, str | None], str | None],
              present: Callable[[str | None], bool]) -> dict[str, Any]:
    info = art.info if isinstance(art.info, dict) else {}
    takes = []
    for take in art.takes:
        path = take.get("path")
        takes.append({"n": take.get("n"), "url": media(path, take.get("sha256")) if present(path) else None,
                      "path": path, "seed": take.get("seed"), "backend": take.get("backend"),
                      "prompt": take.get("prompt"), "seconds": take.get("seconds"),
                      "created": take.get("created"), "rejected": bool(take.get("rejected")),
                      "sha256": take.get("sha256")})
    done = art.state == DONE and bool(art.path)
    return {
        "state": art.state, "attempts": art.attempts, "last_error": art.last_error,
        "path": art.path if done else None,
        # A file that its record calls done but that is not in place (yet: a commit renames
        # it in just after recording it) gets no URL, so a page never shows it broken.
        "url": media(art.path, art.sha256) if done and present(art.path) else None,
        "sha256": art.sha256 if art.state == DONE else None,
        "backend": art.backend, "seed": art.seed, "seconds": art.seconds,
        "backend_seconds": artifact_cost(art), "pinned": art.pinned, "updated": art.updated,
        "info": {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) or v is None},
        "takes": takes, "stage": stage,
    }


def shot_row(session: Session, st, shot, narrated: bool, media: Callable[[str, str | None], str | None]
             ) -> dict[str, Any]:
    """One shot as a page shows it (``st``: its ShotState, ``shot``: its planned Shot or None),
    with its version, redacted."""
    present = functools.partial(file_present, session)
    clip_s = clip_seconds(session.path, st.video)  # the real length, beside the planned duration_s
    row: dict[str, Any] = {"id": st.id, "indicator": st.indicator,
                           # changed by the user since the film was made: pending until it is made again
                           "edited": st.id in session.meta.edited,
                           "clip_s": None if clip_s is None else round(clip_s, 2)}
    if shot is not None:
        row.update(scene_id=shot.scene_id, description=shot.description,
                   image_prompt=shot.image_prompt, motion_prompt=shot.motion_prompt,
                   negative_prompt=shot.negative_prompt, narration=shot.narration,
                   duration_s=shot.duration_s, seed=shot.seed, characters=list(shot.characters),
                   look=getattr(shot, "look", ""))
    stages = {}
    for attr, folder in SHOT_ARTIFACTS:
        if attr == "narration" and not narrated and getattr(st, attr).state != DONE:
            continue
        stages[attr] = _artifact(getattr(st, attr), folder, media, present)
    row["stages"] = stages
    row["backend_seconds"] = sum(a["backend_seconds"] or 0.0 for a in stages.values())
    row["attempts"] = sum(a["attempts"] for a in stages.values())
    row["version"] = _version(row)
    return redact_data(row)


def waiting_for_files(row: dict[str, Any]) -> bool:
    """Whether a shot row names a file that was not in place when it was made (a commit
    records a file just before renaming it into place): such a row is made again later."""
    return any((a["state"] == DONE and a["url"] is None) or any(t["url"] is None for t in a["takes"])
               for a in row["stages"].values())


def session_data(session: Session, media: Callable[[str, str | None], str | None], *,
                 read: Callable[[str], Any] | None = None,
                 row: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything a report or the web app shows about ``session`` as JSON-ready data.
    ``media(path, sha256)`` turns a path stored in the session (``images/shot_001.png``)
    and the digest of the file it holds now into the URL a page uses for it (a relative
    path in the report, a server route in the web app; the digest lets a page that
    follows the session see a redone picture under the same name). A reader that keeps
    what it read passes ``read(step)`` (a step's output, as ``session.read_step_output``)
    and ``row(st, shot, narrated)`` (a shot's row, as :func:`shot_row` makes it)."""
    from reelforge.engine.plugins import learn_secrets

    m = session.meta
    learn_secrets(m)  # a page may show a key an older version saved: mask it by what the environment holds
    present = functools.partial(file_present, session)
    read = read or session.read_step_output
    if row is None:
        def row(st, shot, narrated):
            return shot_row(session, st, shot, narrated, media)

    story, story_problem = _read(read, "story")
    scenes, scenes_problem = _read(read, "scene_graph")
    plan, plan_problem = _read(read, "shots")
    planned = {s.id: s for s in plan.shots} if plan else {}
    narrated = m.backends.get("narration") is not None and m.backends["narration"].name != "none"
    shots = [row(st, planned.get(st.id), narrated) for st in m.shots]
    cast = []
    if story is not None and not story_problem and getattr(m, "cast", None):  # a session with portraits
        from reelforge.engine.cast import cast_rows

        for person in cast_rows(session, story, plan):  # the story and plan read above
            cast.append({**person, "url": media(person["file"], person["sha256"]) if present(person["file"]) else None})
    subtitles = [n for n in (m.film.info.get("subtitles") or []) if n in ("film.srt", "film.vtt")]
    film_done = m.film.state == DONE and m.steps.get("assemble") == DONE and present("film.mp4")
    totals = stage_totals(m)
    data = {
        "id": m.id, "idea": m.idea, "status": m.status, "created": m.created, "updated": m.updated,
        "last_error": m.last_error, "review": m.review, "approved": m.approved,
        "backends": {kind: {"name": b.name, "options": b.options} for kind, b in m.backends.items()},
        "steps": dict(m.steps),
        "counts": {stage: dict(zip(("done", "total"), m.counts(stage))) for stage in SHOT_STAGES},
        "narrated": narrated,
        "story": None if story is None else {
            "title": story.title, "logline": story.logline, "synopsis": story.synopsis,
            "style": story.style,
            "characters": [{"name": c.name, "description": c.description} for c in story.characters]},
        "scenes": [] if scenes is None else [
            {"id": s.id, "order": s.order, "summary": s.summary, "setting": s.setting,
             "characters": list(s.characters)} for s in scenes.scenes],
        "problems": [p for p in (story_problem, scenes_problem, plan_problem) if p],
        "shots": shots,
        "cast": cast,
        "film": {"state": m.film.state if film_done else "todo", "seconds": m.film.seconds,
                 "url": media("film.mp4", m.film.sha256) if film_done else None,
                 # The player's track: none when the subtitles are burnt in (they would show twice).
                 "vtt": media("film.vtt", m.film.sha256)
                 if film_done and "film.vtt" in subtitles and present("film.vtt")
                 and m.film.info.get("subtitle_mode") != "burn" else None,
                 "vtt_file": media("film.vtt", m.film.sha256) if film_done and "film.vtt" in subtitles and present("film.vtt") else None,
                 "srt": media("film.srt", m.film.sha256) if film_done and "film.srt" in subtitles and present("film.srt") else None,
                 "sha256": m.film.sha256 if film_done else None},
        "ledger": [{"stage": key, "label": label, **totals[key]} for key, label in LEDGER_STAGES],
        "ledger_total": grand_total(totals),
        "verify": verify_summary(m),
    }
    data["film"]["version"] = _version(data["film"])
    data["summary_version"] = _version({k: v for k, v in data.items() if k not in ("shots", "film")})
    data["version"] = _version(data["summary_version"], data["film"]["version"], [s["version"] for s in shots])
    # what a session holds was redacted when written; a secret registered since, too (the rows: by shot_row)
    return {key: value if key == "shots" else redact_data(value) for key, value in data.items()}


def _version(*parts: Any) -> str:
    """A short digest of what a page shows, so a poller can tell what changed."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


__all__ = ["stage_totals", "grand_total", "ledger_lines", "session_data", "shot_row", "artifact_cost",
           "LEDGER_STAGES"]
