"""`reelforge shots list` and `reelforge shots show`: a session's shots on the command line
(what `shots edit` changes, and what came of it: states, seeds, takes, files, real lengths)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from reelforge.cli.core import _load_config, _output_dir_option, _resolve_output_dir, _width
from reelforge.cli.creator import shots

#: A shot's stages: the name in the meta and in messages -> the stage folder.
_STAGES = (("image", "images"), ("narration", "narration"), ("video", "videos"))


def _load(session_id: str, output_dir: Path | None, config_path: Path | None):
    """The session (read-only) and its shot plan (None before the plan is made)."""
    from reelforge.errors import SessionCorruptError
    from reelforge.store import listing
    from reelforge.store.sessions import SessionStore

    store = SessionStore(_resolve_output_dir(output_dir, _load_config(config_path)))
    session = store.load(listing.resolve_session_id(store, session_id))
    try:
        plan = session.read_step_output("shots")
    except SessionCorruptError as exc:
        raise click.ClickException(str(exc)) from None
    return session, plan


def _shot_row(session, st, shot) -> dict[str, Any]:
    """What `shots list --json` says about one shot (``shot``: its plan record, or None)."""
    from reelforge.media.checks import clip_seconds

    clip = clip_seconds(session.path, st.video)
    return {"shot": st.id, "status": st.indicator,
            "duration_s": shot.duration_s if shot is not None else None,
            "clip_s": None if clip is None else round(clip, 2),
            "seed": shot.seed if shot is not None else None,
            "takes": sum(len(st.artifact(folder).takes) for _, folder in _STAGES),
            "image_prompt": shot.image_prompt if shot is not None else None}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@shots.command("list")
@click.argument("session_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_output_dir_option
def shots_list(session_id: str, as_json: bool, output_dir: Path | None, config_path: Path | None) -> None:
    """One line per shot of session ID: number, status, length planned/real (the clip lasts
    at least its line), seed, number of takes, and the start of its image prompt."""
    import json

    from reelforge.redact import for_terminal, redact_data

    session, plan = _load(session_id, output_dir, config_path)
    planned = {s.id: s for s in plan.shots} if plan is not None else {}
    rows = redact_data([_shot_row(session, st, planned.get(st.id)) for st in session.meta.shots])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"Session {session.id} has no shots yet (its shots step is "
                   f"{session.meta.steps.get('shots', 'todo')}).")
        return
    width = _width()
    digits = max(4, len(str(max(r["shot"] for r in rows))))
    head = f"{'SHOT':>{digits}}  {'STATUS':<8} {'PLANNED':>7} {'CLIP':>6}  {'SEED':>10}  {'TAKES':>5}  PROMPT"
    click.echo(head)
    for r in rows:
        line = (f"{r['shot']:>{digits}}  {'[' + r['status'] + ']':<8} {_seconds(r['duration_s']) + ' s':>7} "
                f"{_seconds(r['clip_s']) + ' s':>6}  {'-' if r['seed'] is None else r['seed']:>10}  {r['takes']:>5}  ")
        prompt = for_terminal(" ".join((r["image_prompt"] or "").split()), newlines=False)
        room = max(10, width - len(line))
        click.echo(line + (prompt if len(prompt) <= room else prompt[: room - 1] + "…"))
    click.echo(f"One shot in full: reelforge shots show {session.id} N")


def shot_details(session, st, shot) -> dict[str, Any]:
    """Everything `shots show` tells about one shot: its plan record (prompts, narration,
    seed...), its real clip length, and per stage its file, takes and replaced files."""
    from reelforge.records import unstructure
    from reelforge.store.replaced import replaced_files

    replaced = replaced_files(session)
    data: dict[str, Any] = {"shot": st.id, "status": st.indicator,
                            "plan": unstructure(shot) if shot is not None else None,
                            "clip_s": _shot_row(session, st, shot)["clip_s"], "stages": {}}
    for name, folder in _STAGES:
        art = st.artifact(folder)
        prefix = f"shot_{st.id:03d}."
        data["stages"][name] = {
            "state": art.state, "path": art.path if art.state == "done" else None, "size": art.size,
            "seed": art.seed, "backend": art.backend, "attempts": art.attempts, "pinned": art.pinned,
            "last_error": art.last_error,
            "takes": [{"n": t.get("n"), "path": t.get("path"), "size": t.get("size"), "seed": t.get("seed"),
                       "backend": t.get("backend"), "rejected": bool(t.get("rejected")),
                       "prompt": t.get("prompt")} for t in art.takes],
            "replaced": [{"path": f.path, "size": f.size} for f in replaced
                         if f.path.startswith(f"{folder}/") and Path(f.path).name.startswith(prefix)]}
    return data


@shots.command("show")
@click.argument("session_id", metavar="ID")
@click.argument("shot_id", metavar="N", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_output_dir_option
def shots_show(session_id: str, shot_id: int, as_json: bool, output_dir: Path | None,
               config_path: Path | None) -> None:
    """Shot N of session ID in full: its prompts, narration, lengths and seed (from
    shots.json), and for its image, voice and clip the file with its size, the takes and
    the replaced files."""
    import json

    from reelforge.cli.support import human_size
    from reelforge.redact import for_terminal, redact_data

    session, plan = _load(session_id, output_dir, config_path)
    try:
        st = session.shot_state(shot_id)
    except KeyError:
        ids = [s.id for s in session.meta.shots]
        have = f"shots 1-{max(ids)}" if ids == list(range(1, len(ids) + 1)) and ids else \
            (", ".join(map(str, ids)) or "none yet")
        raise click.UsageError(f"no shot {shot_id} in {session.id} ({have})") from None
    shot = next((s for s in plan.shots if s.id == shot_id), None) if plan is not None else None
    data = redact_data(shot_details(session, st, shot))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return

    def text(value: Any) -> str:
        return for_terminal(str(value), newlines=False)

    click.echo(f"Shot {shot_id} of {session.id} [{st.indicator}]")
    fields = dict(data["plan"] or {})
    fields.pop("id", None)
    if "duration_s" in fields:
        fields["duration_s"] = f"{fields['duration_s']:g} s planned, " + (
            f"clip {data['clip_s']:g} s" if data["clip_s"] is not None else "no clip yet")
    for key, value in fields.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        click.echo(f"  {key}: {text(value) if value not in ('', None) else '-'}")
    for name, row in data["stages"].items():
        size = f" ({human_size(row['size'])})" if row["path"] and row["size"] is not None else ""
        pin = ", chosen" if row["pinned"] else ""
        click.echo(f"{name}: {text(row['path'] or '-')}{size} [{row['state']}] seed {row['seed']} "
                   f"{text(row['backend'] or '-')}{pin}")
        if row["state"] == "failed" and row["last_error"]:
            click.echo(f"  error: {text(row['last_error'])}")
        for t in row["takes"]:
            size = f" ({human_size(t['size'])})" if t["size"] is not None else ""
            note = ", rejected" if t["rejected"] else ""
            click.echo(f"  take {t['n']}: {text(t['path'])}{size} seed {t['seed']}{note}")
        for f in row["replaced"]:
            click.echo(f"  replaced: {text(f['path'])} ({human_size(f['size'])})")
    click.echo(f"Edit it with: reelforge shots edit {session.id} {shot_id} --image-prompt \"...\"")
