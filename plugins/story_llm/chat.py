"""The story writer both chat backends share: the three stages, the repair loop and shot
planning in batches. A backend only says how to send one chat request (``_chat``)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar, TypeVar

import attrs

from reelforge.errors import ConfigError, StageError
from reelforge.records import SceneGraph, ShotPlan, Story, converter, structure
from reelforge.redact import mask_url_credentials, url_credentials

from reelforge.plugins.story_llm import prompts
from reelforge.plugins.story_llm.prompts import ShotBatch
from reelforge.plugins.story_llm.schemas import (
    InvalidReply,
    ShotDraft,
    check_scene_graph,
    check_shot_batch,
    check_story,
    finish_plan,
    parse_json_object,
)

if TYPE_CHECKING:  # httpx is imported on first use, so `reelforge --help` stays fast
    from reelforge.plugins.story_llm.transport import JSONClient

log = logging.getLogger("reelforge.story_llm")

T = TypeVar("T")

#: How many times a bad reply is sent back to the model with the error before giving up.
MAX_REPAIRS = 2
#: A bad reply longer than this is sent back for repair cut to this many characters.
MAX_ECHO = 32_000

#: The output cap each stage's answer gets by default, in tokens: (fixed part, per item),
#: the items being the scenes of a scene graph and the shots of a shot-plan request. Room
#: for a good answer several times over, yet a model looping on itself stops within
#: seconds to minutes instead of running to the end of its context (and its timeout).
DEFAULT_CAPS = {"story": (2048, 0), "scene_graph": (256, 160), "shot_plan": (256, 320)}
#: How often, in seconds, a stage waiting for the model reports how long it has waited.
WAIT_TICK_S = 1.0

#: (option, smallest, largest) for the numeric options every chat writer has; a value
#: outside is a ConfigError naming the option (None: no bound on that side).
_BOUNDS = (
    ("shots", 1, 10_000),
    ("target_seconds", 0.1, 86_400.0),
    ("scenes", 0, 10_000),
    ("batch_shots", 1, 200),
    ("temperature", 0.0, 5.0),
    ("timeout", 0.1, 86_400.0),
    ("max_answer_mib", 0.01, 1024.0),
    ("num_ctx", 1, 10_000_000),
    ("max_tokens", 0, 10_000_000),
    ("num_predict", 0, 10_000_000),
)


@attrs.frozen
class PlanOptions:
    """Options every chat story writer has: what film to plan, and how to ask for it."""

    shots: int = 7
    "How many shots the film has."
    target_seconds: float = 30.0
    "The film's length; shot durations are scaled to add up to it."
    scenes: int = 0
    "How many scenes to ask for; 0 picks about one scene per three shots."
    batch_shots: int = 12
    "Longer shot plans are asked for in parts of at most this many shots."
    temperature: float = 0.7
    "Sampling temperature."
    seed: int | None = None
    "Sampling seed, where the server supports one; also the base of the shots' seeds."
    timeout: float = 300.0
    "Seconds one answer may take in all, however the server trickles it (local models can be slow)."
    max_answer_mib: float = 8.0
    "Largest answer read from the server, in MiB; a longer one is refused as it streams in."
    check_server: bool = True
    "Before a run, check that the server answers and has the model (one cheap GET of its model list); off for a server without one."


@attrs.frozen
class Reply:
    """One chat answer, reduced to what the stages need."""

    content: str
    "The message text (should be JSON)."
    finish_reason: str | None
    "Why the model stopped: 'stop', 'length', ... (OpenAI finish_reason, Ollama done_reason)."
    prompt_tokens: int | None = None
    "Tokens the server counted in the request (OpenAI usage.prompt_tokens, Ollama prompt_eval_count)."
    completion_tokens: int | None = None
    "Tokens it generated (OpenAI usage.completion_tokens, Ollama eval_count)."

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class Truncated(Exception):
    """The model hit its output limit: the reply is cut off and cannot be repaired as is."""


def allocate(graph: SceneGraph, shots: int) -> list[tuple[str, int]]:
    """Spread ``shots`` evenly over the scenes in order (earlier scenes get the remainder)."""
    base, extra = divmod(shots, len(graph.scenes))
    parts = [(scene.id, base + (1 if i < extra else 0)) for i, scene in enumerate(graph.scenes)]
    return [(sid, n) for sid, n in parts if n]


def make_batches(parts: list[tuple[str, int]], size: int) -> list[ShotBatch]:
    """Cut the per-scene allocation into requests of at most ``size`` shots, in film order."""
    batches: list[ShotBatch] = []
    current: list[tuple[str, int]] = []
    filled = 0
    first_id = 1
    for scene_id, n in parts:
        while n:
            take = min(n, size - filled)
            current.append((scene_id, take))
            filled += take
            n -= take
            if filled == size:
                batches.append(ShotBatch(first_id, tuple(current)))
                first_id += filled
                current, filled = [], 0
    if current:
        batches.append(ShotBatch(first_id, tuple(current)))
    return batches


class ChatStoryWriter:
    """Base class of the chat-completion story writers (see the module docstring)."""

    name: ClassVar[str]
    Options: ClassVar[type]
    #: Names the server in messages, e.g. "OpenAI-compatible server".
    label: ClassVar[str] = "LLM server"
    #: What else to raise when a reply is cut off, e.g. "the server's context size".
    limit_hint: ClassVar[str] = "the output token limit"
    #: The option capping each answer's tokens (unset: DEFAULT_CAPS; 0: no cap).
    cap_option: ClassVar[str] = "max_tokens"
    #: Seconds between the reports of a stage waiting for the model (tests shorten it).
    wait_tick_s: float = WAIT_TICK_S
    #: The clock the waiting reports count seconds with (tests replace it).
    clock: ClassVar[Callable[[], float]] = staticmethod(time.monotonic)

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()
        self._client: JSONClient | None = None
        self._usage: dict[str, int] = {}
        self.check_options()

    def take_usage(self) -> dict[str, int]:
        """Tokens used since the last call (the runner's cost ledger asks after each step)."""
        usage, self._usage = self._usage, {}
        return usage

    def _count(self, reply: "Reply") -> None:
        for key in ("prompt_tokens", "completion_tokens"):
            value = getattr(reply, key)
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
                self._usage[key] = self._usage.get(key, 0) + value
        self._usage["requests"] = self._usage.get("requests", 0) + 1

    #: Where to put a key instead of the URL (said when base_url carries credentials).
    key_hint: ClassVar[str] = "the environment variable named by the api_key_env option"

    def check_options(self) -> None:
        """Refuse option values that cannot work, naming the option (a ConfigError)."""
        for field, low, high in _BOUNDS:
            if not hasattr(self.options, field):
                continue
            value = getattr(self.options, field)
            if value is None and field == self.cap_option:
                continue  # unset: a cap fitted to each stage
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not low <= value <= high:
                raise ConfigError(f"{self.name}.{field} must be from {low:g} to {high:g}, "
                                  f"got {value!r}")
        from reelforge.records import MAX_DURATION_S

        if self.options.target_seconds > self.options.shots * MAX_DURATION_S:
            raise ConfigError(f"{self.name}.target_seconds: {self.options.target_seconds:g}s for "
                              f"{self.options.shots} shots is more than {MAX_DURATION_S:g}s a shot")
        base_url = getattr(self.options, "base_url", "")
        carried = url_credentials(base_url)
        if carried:
            # the options are saved with the session (a resume reuses them): no secrets there
            raise ConfigError(
                f"{self.name}.base_url {mask_url_credentials(base_url)} carries {carried}; "
                f"URLs are saved with the session, so pass it without them and put "
                f"the key in {self.key_hint} (sent as a Bearer token)")

    # -- before a run ------------------------------------------------------------------

    #: The model list (GET, relative to base_url) and the field of each entry naming a model.
    models_path: ClassVar[str] = "/models"
    #: What to tell a user whose model is missing.
    model_hint: ClassVar[str] = "set the model option"

    def preflight(self) -> None:
        """Before a run (the runner calls it before creating a session): one GET of the
        server's model list proves that it is there and speaks the API; a 401/403 says to
        check the key, a 404 to check base_url, and a model the server does not list is
        named with those it offers. A busy server (429, 5xx) is let through: the run's
        requests retry it. Off with the check_server option."""
        if not getattr(self.options, "check_server", True):
            return
        from reelforge.errors import ServiceError

        http = self._http()
        where = f"{self.label} at {self.options.base_url}"
        status, data, words = http.get(self.models_path, timeout=10.0)
        if status in (401, 403):
            raise ServiceError(f"{where} answered {status} to GET {self.models_path}: {words}; check "
                               f"the API key ({self.key_hint})", status_code=status)
        if status == 404:
            raise ServiceError(f"{where} answered 404 to GET {self.models_path}: {words}; check "
                               f"base_url (the API root{self.base_url_hint})", status_code=404)
        if status == 429 or status >= 500:
            log.info("%s answered %s to GET %s; going on (the run's requests retry it)", where,
                     status, self.models_path)
            return
        if status != 200 or not isinstance(data, dict):
            raise ServiceError(f"{where} answered GET {self.models_path} with "
                               f"{'HTTP ' + str(status) if status != 200 else 'something that is not a JSON object'}"
                               f"{': ' + words if words else ''}; is base_url the API root{self.base_url_hint}?",
                               status_code=status)
        names = self._listed_models(data)
        if names is None:
            return  # no list, or a server that serves whatever model it has loaded
        if not self._has_model(self.options.model, names):
            shown = ", ".join(sorted(names)[:20]) + (" ..." if len(names) > 20 else "")
            raise ServiceError(f"{where} has no model {self.options.model!r}"
                               + (f"; it offers: {shown}" if names else "; it lists no models")
                               + f". {self.model_hint}")

    #: Said after "the API root" when base_url looks wrong.
    base_url_hint: ClassVar[str] = ""

    def _listed_models(self, data: dict[str, Any]) -> set[str] | None:
        """The model names in a model list answer, or None when it names none we can trust."""
        return None

    @staticmethod
    def _has_model(model: str, names: set[str]) -> bool:
        return model in names

    # -- to implement ----------------------------------------------------------------

    def _chat(self, messages: list[dict[str, str]], stage: str, cap: int | None = None) -> Reply:
        """Send one chat request asking for JSON matching ``schemas.SCHEMAS[stage]``, its
        answer capped at ``cap`` tokens (None: no cap sent)."""
        raise NotImplementedError

    def output_cap(self, stage: str, items: int = 0) -> int | None:
        """The output cap for one request of ``stage`` asking for ``items`` scenes or shots:
        the cap option when set (0: none), else DEFAULT_CAPS."""
        value = getattr(self.options, self.cap_option, None)
        if value is not None:
            return int(value) or None
        fixed, per_item = DEFAULT_CAPS[stage]
        return fixed + per_item * max(0, items)

    def _headers(self) -> dict[str, str]:
        """Extra HTTP headers for every request (e.g. Authorization)."""
        return {}

    def _http(self) -> JSONClient:
        """The HTTP client, made on first use (httpx is imported lazily)."""
        if self._client is None:
            from reelforge.plugins.story_llm.transport import JSONClient

            self._client = JSONClient(self.options.base_url, label=self.label,
                                      timeout=self.options.timeout, headers=self._headers(),
                                      max_answer=int(self.options.max_answer_mib * 1024 * 1024))
        return self._client

    def close(self) -> None:
        """Release the HTTP client, if any."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- the three stages ------------------------------------------------------------

    def write_story(self, idea: str, job: Any = None) -> Story:
        """``job`` (a reelforge.StageJob), when given, hears how long the model is taking."""
        messages = prompts.story_messages(idea, shots=self.options.shots,
                                          target_seconds=self.options.target_seconds)
        return self._ask_whole(messages, "story", check_story, cap=self.output_cap("story"), job=job)

    def build_scene_graph(self, story: Story, job: Any = None) -> SceneGraph:
        shots = self.options.shots
        scenes = self.options.scenes or max(1, min(shots, round(shots / 3)))
        scenes = min(scenes, shots)
        messages = prompts.scene_graph_messages(story, scenes=scenes, shots=shots)
        return self._ask_whole(messages, "scene_graph",
                               lambda data: check_scene_graph(data, max_scenes=shots, story=story),
                               cap=self.output_cap("scene_graph", scenes), job=job)

    def plan_shots(self, story: Story, scenes: SceneGraph, job: Any = None) -> ShotPlan:
        """Plan the shots, in parts when the plan is long. With a ``job`` (a
        reelforge.StageJob), each part is checkpointed as it arrives, so after a failure a
        resumed run asks only for the parts still missing."""
        if not scenes.scenes:
            raise StageError("the scene graph has no scenes; rerun the scene_graph stage")
        total = self.options.shots
        parts = allocate(scenes, total)
        if len(parts) < len(scenes.scenes):
            log.warning("%d shots for %d scenes: scene(s) %s get no shot", total, len(scenes.scenes),
                        ", ".join(s.id for s in scenes.scenes[len(parts):]))
        size = self.options.batch_shots
        batches = [ShotBatch(1, tuple(parts))] if total <= size else make_batches(parts, size)
        if len(batches) > 1:
            log.info("asking for %d shots in %d parts", total, len(batches))
        # Saved parts count only for the same story, scenes and options.
        plan_key = hashlib.sha256(json.dumps(
            [converter.unstructure(story), converter.unstructure(scenes),
             converter.unstructure(self.options)], sort_keys=True, default=str).encode()).hexdigest()[:16]
        saved: dict[str, Any] = {}
        if job is not None and job.checkpoint.get("plan_key") == plan_key:
            saved = dict(job.checkpoint.get("parts") or {})
        drafts: list[ShotDraft] = []
        for n, batch in enumerate(batches, start=1):
            key = str(batch.first_id)
            if key in saved:
                part = [structure(d, ShotDraft, f"checkpoint part {key}") for d in saved[key]]
                log.info("shots %d-%d: reusing the part saved by an earlier run", batch.first_id, batch.last_id)
            else:
                part = self._plan_batch(story, scenes, batch, total, drafts,
                                        job=job, fraction=(n - 1) / len(batches))
                if job is not None:
                    saved[key] = converter.unstructure(part)
                    job.save_checkpoint(plan_key=plan_key, parts=saved)
            drafts += part
            if job is not None:
                job.progress(n / len(batches), f"shots {batch.first_id}-{batch.last_id} of {total}")
        if len(drafts) != total:  # guards the batching arithmetic, never the model
            raise StageError(f"planned {len(drafts)} shots instead of {total}")
        return finish_plan(drafts, story, base_seed=self.options.seed,
                           target_seconds=self.options.target_seconds)

    # -- helpers ---------------------------------------------------------------------

    def _plan_batch(self, story: Story, graph: SceneGraph, batch: ShotBatch, total: int,
                    before: list[ShotDraft], *, job: Any = None, fraction: float = 0.0) -> list[ShotDraft]:
        previous = [f"{n}. [{d.scene_id}] {d.description}" for n, d in enumerate(before, 1)][-3:]
        messages = prompts.shot_messages(story, graph, batch, total_shots=total,
                                         target_seconds=self.options.target_seconds,
                                         previous=previous)
        cap = self.output_cap("shot_plan", batch.count)
        try:
            return self._ask(messages, "shot_plan", lambda data: check_shot_batch(
                data, count=batch.count, scene_ids=batch.scene_ids), cap=cap, job=job, fraction=fraction)
        except Truncated:
            if batch.count == 1:
                raise StageError(
                    f"{self._who()} cut off its answer for shot {batch.first_id} at its output "
                    f"limit{self._cap_words(cap)}; {self._raise_hint()}") from None
            # Never keep a cut-off list: ask for the two halves separately instead.
            first, second = batch.halves()
            log.info("the answer for shots %d-%d was cut off at the output limit; asking for "
                     "%d-%d and %d-%d separately", batch.first_id, batch.last_id,
                     first.first_id, first.last_id, second.first_id, second.last_id)
            head = self._plan_batch(story, graph, first, total, before, job=job, fraction=fraction)
            return head + self._plan_batch(story, graph, second, total, before + head,
                                           job=job, fraction=fraction)

    def _ask_whole(self, messages: list[dict[str, str]], stage: str,
                   check: Callable[[dict[str, Any]], T], *, cap: int | None = None, job: Any = None) -> T:
        try:
            return self._ask(messages, stage, check, cap=cap, job=job)
        except Truncated:
            raise StageError(f"{self._who()} cut off its {stage.replace('_', ' ')} at its output "
                             f"limit{self._cap_words(cap)}; {self._raise_hint()}") from None

    @staticmethod
    def _cap_words(cap: int | None) -> str:
        return f" of {cap:,} tokens" if cap else ""

    def _raise_hint(self) -> str:
        """What to do about an answer cut off at the output limit: the cap option, by name."""
        return (f"raise it with -o {self.name}.{self.cap_option}=N (0: no cap) or raise "
                f"{self.limit_hint}, then `reelforge resume`")

    def _chat_waiting(self, messages: list[dict[str, str]], stage: str, cap: int | None,
                      job: Any, fraction: float) -> Reply:
        """``_chat``, telling ``job`` every ``wait_tick_s`` how long the model has been
        working, so a slow or runaway model is seen at work rather than as silence."""
        if job is None:
            return self._chat(messages, stage, cap)
        answered = threading.Event()
        started = self.clock()
        model = getattr(self.options, "model", "") or self.name

        def report() -> None:
            while not answered.wait(self.wait_tick_s):
                try:
                    job.progress(fraction, f"waiting {self.clock() - started:.0f}s for {model}")
                except Exception as exc:  # an observer's bug must not cost the answer
                    log.debug("progress report failed: %s", exc)
                    return

        ticker = threading.Thread(target=report, name="reelforge-llm-wait", daemon=True)
        ticker.start()
        try:
            return self._chat(messages, stage, cap)
        finally:
            answered.set()
            ticker.join()

    def _ask(self, messages: list[dict[str, str]], stage: str,
             check: Callable[[dict[str, Any]], T], *, cap: int | None = None, job: Any = None,
             fraction: float = 0.0) -> T:
        """Ask, check the answer, and send errors back for repair up to MAX_REPAIRS times.
        An answer cut off at the output limit is never sent again as it was (Truncated)."""
        messages = list(messages)
        error = ""
        for attempt in range(MAX_REPAIRS + 1):
            reply = self._chat_waiting(messages, stage, cap, job, fraction)
            self._count(reply)
            if reply.truncated:
                raise Truncated()
            try:
                return check(parse_json_object(reply.content))
            except InvalidReply as exc:
                error = str(exc)
            if attempt < MAX_REPAIRS:
                log.warning("%s gave an unusable %s (%s); asking it to repair it (%d of %d)",
                            self._who(), stage.replace("_", " "), error, attempt + 1, MAX_REPAIRS)
                echo = reply.content if len(reply.content) <= MAX_ECHO else \
                    reply.content[:MAX_ECHO] + "\n[... cut: the reply was too long]"
                messages += [{"role": "assistant", "content": echo},
                             prompts.repair_message(error)]
        raise StageError(
            f"{self._who()} gave no usable {stage.replace('_', ' ')} after {MAX_REPAIRS} repair "
            f"attempts: {error}. Try another model or a lower temperature, then "
            f"`reelforge resume`.")

    def _who(self) -> str:
        model = getattr(self.options, "model", "")
        return f"{self.name} model {model!r}" if model else f"{self.name} model"
