"""A shot's subject and the film's look, kept apart.

A shot's ``image_prompt`` says what is in the picture (subject, action, framing); its look
(palette, lens, light, grain) is the story's ``style``, or the shot's own ``look`` where it
has one. The runner hands every backend the shot with ``look`` filled in (see
:func:`resolve`), and the backend applies it when it builds its prompt (:func:`compose`):
editing a shot's image prompt then changes what is in the picture and nothing else.

Shots planned before the two were kept apart carry the style inside their image prompt.
:func:`compose` leaves such a prompt as it is (the look is not added twice), so an old
shot is asked for exactly what it was asked for before, and its fingerprint does not change.
"""

from __future__ import annotations

import re

import attrs

from reelforge.records import Shot, Story

#: The label the chat planner put before the style in prompts written before looks were kept apart.
_LABEL = r"(?:style\s*:\s*)?"


def film_look(story: Story | None) -> str:
    """The film's look: the story's style bible ("" when there is no story yet)."""
    return story.style.strip() if story is not None else ""


def look_of(shot: Shot, film: str) -> str:
    """The look ``shot`` is made with: its own, else the film's."""
    return shot.look.strip() or film.strip()


def resolve(shot: Shot, film: str) -> Shot:
    """``shot`` as a backend gets it: ``look`` filled in with the look it is made with. A
    shot planned before looks were kept apart, whose image prompt still carries the film's
    style, has that style taken out of its prompt when it has a look of its own."""
    own = shot.look.strip()
    if own and carries(shot.image_prompt, film) and not carries(shot.image_prompt, own):
        return attrs.evolve(shot, image_prompt=without(shot.image_prompt, film), look=own)
    look = own or film.strip()
    return shot if look == shot.look else attrs.evolve(shot, look=look)


def _core(look: str) -> str:
    return " ".join(look.split()).rstrip(".").strip()


def carries(prompt: str, look: str) -> bool:
    """Whether ``prompt`` already holds ``look`` word for word (whole words; case and spacing aside)."""
    core = _core(look).casefold()
    text = " ".join(prompt.split()).casefold()
    return bool(core) and core in text and re.search(rf"(?<!\w){re.escape(core)}(?!\w)", text) is not None


def compose(subject: str, look: str) -> str:
    """The positive prompt a backend sends: the subject, then the look. A subject that
    already holds the look word for word (a shot planned before looks were kept apart) is
    returned as it is, so the look is never there twice."""
    core = _core(look)
    if not core or carries(subject, core):
        return subject  # as it is, to the character: an old shot's fingerprint depends on it
    text = subject.strip()
    if not text:
        return core
    return f"{text} {core}" if text.endswith((".", ";", ":")) else f"{text}, {core}"


def without(prompt: str, look: str) -> str:
    """``prompt`` with ``look`` (written word for word in it, maybe after "Style:") taken
    out, and the commas or full stops around it tidied. A prompt without it is returned as it is."""
    core = _core(look)
    if not core or not carries(prompt, core):
        return prompt
    words = r"\s+".join(re.escape(w) for w in core.split())
    text = re.sub(rf"{_LABEL}{words}\.?", "\x00", " ".join(prompt.split()), count=1, flags=re.IGNORECASE)
    before, after = text.split("\x00", 1)
    before, after = before.rstrip(" ,;"), after.lstrip(" ,;")
    if before.endswith(".") or not after:
        joined = f"{before} {after}".strip()
    elif not before:
        joined = after
    elif after.startswith("."):
        joined = before + after
    else:
        joined = f"{before}, {after}"
    return joined.strip(" ,;")


def restyle(session, style: str) -> tuple[str, int]:
    """Change the film's look of an opened (locked) ``session`` to ``style``: the story's
    style in story.json. Shots planned before looks were kept apart hold the old style in
    their image prompt: it is taken out of them first (else they would carry both looks);
    those with a look of their own are made as before.
    Returns the old look and how many shots take the film's look (those a resume remakes;
    -1 when ``style`` is the film's look already: then nothing is written)."""
    from reelforge.errors import ConfigError, SessionError

    story = session.read_step_output("story")
    if story is None:
        raise SessionError(f"session {session.id} has no story yet; run it first")
    style = " ".join(style.split())
    try:
        restyled = attrs.evolve(story, style=style)
    except ValueError as exc:
        raise ConfigError(f"style: {exc}") from None
    old = film_look(story)
    if " ".join(old.split()) == style:
        return old, -1  # no change: nothing written (an old shot's prompt keeps its style)
    plan = session.read_step_output("shots")
    following = 0
    if plan is not None:
        shots = []
        for shot in plan.shots:
            following += not shot.look.strip()
            # (A shot with a look of its own was already made without the old style: see
            # resolve(). Taking it out of the prompt keeps it so once the story forgets it.)
            if carries(shot.image_prompt, old):
                shot = attrs.evolve(shot, image_prompt=without(shot.image_prompt, old))
            shots.append(shot)
        if tuple(shots) != plan.shots:
            # The shots first: a crash between the two writes leaves prompts without the old
            # style and the old style in story.json, which this call, made again, finishes.
            session.save_step_output("shots", attrs.evolve(plan, shots=tuple(shots)))
    session.save_step_output("story", restyled)
    return old, following
