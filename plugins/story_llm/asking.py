"""Asking a chat model for one stage's answer and getting a usable one: a bad reply is sent
back with its error for repair (up to MAX_REPAIRS times), a reply cut off at the output limit
is never sent again as it was (``Truncated``), and a stage waiting for the model reports how
long it has waited. The writer says how to send one request (``ChatStoryWriter._chat``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from reelforge.errors import StageError
from reelforge.plugins.story_llm import prompts
from reelforge.plugins.story_llm.schemas import InvalidReply, parse_json_object

if TYPE_CHECKING:
    from reelforge.plugins.story_llm.chat import ChatStoryWriter, Reply

log = logging.getLogger("reelforge.story_llm")

T = TypeVar("T")

#: How many times a bad reply is sent back to the model with the error before giving up.
MAX_REPAIRS = 2
#: A bad reply longer than this is sent back for repair cut to this many characters.
MAX_ECHO = 32_000


class Truncated(Exception):
    """The model hit its output limit: the reply is cut off and cannot be repaired as is."""


def ask(writer: ChatStoryWriter, messages: list[dict[str, str]], stage: str,
        check: Callable[[dict[str, Any]], T], *, cap: int | None = None, job: Any = None,
        fraction: float = 0.0) -> T:
    """Ask, check the answer, and send errors back for repair up to MAX_REPAIRS times.
    An answer cut off at the output limit is never sent again as it was (Truncated)."""
    messages = list(messages)
    error = ""
    for attempt in range(MAX_REPAIRS + 1):
        reply = chat_waiting(writer, messages, stage, cap, job, fraction)
        writer._count(reply)
        if reply.truncated:
            raise Truncated()
        try:
            return check(parse_json_object(reply.content))
        except InvalidReply as exc:
            error = str(exc)
        if attempt < MAX_REPAIRS:
            log.warning("%s gave an unusable %s (%s); asking it to repair it (%d of %d)",
                        writer._who(), stage.replace("_", " "), error, attempt + 1, MAX_REPAIRS)
            echo = reply.content if len(reply.content) <= MAX_ECHO else \
                reply.content[:MAX_ECHO] + "\n[... cut: the reply was too long]"
            messages += [{"role": "assistant", "content": echo},
                         prompts.repair_message(error)]
    raise StageError(
        f"{writer._who()} gave no usable {stage.replace('_', ' ')} after {MAX_REPAIRS} repair "
        f"attempts: {error}. Try another model or a lower temperature, then "
        f"`reelforge resume`.")


def ask_whole(writer: ChatStoryWriter, messages: list[dict[str, str]], stage: str,
              check: Callable[[dict[str, Any]], T], *, cap: int | None = None, job: Any = None) -> T:
    """``ask`` for a whole stage's answer (a story, a scene graph): one cut off at the output
    limit cannot be asked for in parts, so it is a StageError naming the cap option."""
    try:
        return ask(writer, messages, stage, check, cap=cap, job=job)
    except Truncated:
        raise StageError(f"{writer._who()} cut off its {stage.replace('_', ' ')} at its output "
                         f"limit{cap_words(cap)}; {writer._raise_hint()}") from None


def chat_waiting(writer: ChatStoryWriter, messages: list[dict[str, str]], stage: str, cap: int | None,
                 job: Any, fraction: float) -> Reply:
    """``writer._chat``, telling ``job`` every ``wait_tick_s`` how long the model has been
    working, so a slow or runaway model is seen at work rather than as silence."""
    if job is None:
        return writer._chat(messages, stage, cap)
    answered = threading.Event()
    started = writer.clock()
    model = getattr(writer.options, "model", "") or writer.name

    def report() -> None:
        while not answered.wait(writer.wait_tick_s):
            try:
                job.progress(fraction, f"waiting {writer.clock() - started:.0f}s for {model}")
            except Exception as exc:  # an observer's bug must not cost the answer
                log.debug("progress report failed: %s", exc)
                return

    ticker = threading.Thread(target=report, name="reelforge-llm-wait", daemon=True)
    ticker.start()
    try:
        return writer._chat(messages, stage, cap)
    finally:
        answered.set()
        ticker.join()


def cap_words(cap: int | None) -> str:
    """The cap an answer was cut off at, for messages (" of 2,048 tokens"; "" for none)."""
    return f" of {cap:,} tokens" if cap else ""
