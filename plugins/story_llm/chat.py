"""The story writer both chat backends share: its options and their checks, the check of the
server before a run, and the three stages. A backend only says how to send one chat request
(``_chat``). Asking for a usable answer (the repair loop, cut-off replies) is in ``asking``,
planning the shots in batches in ``shot_batches``."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from reelforge.errors import ConfigError
from reelforge.plugins.story_llm import prompts, shot_batches
from reelforge.plugins.story_llm.asking import ask_whole
from reelforge.plugins.story_llm.schemas import check_scene_graph, check_story
from reelforge.plugins.story_llm.shot_batches import allocate, make_batches  # noqa: F401  (for tests)
from reelforge.records import SceneGraph, ShotPlan, Story
from reelforge.redact import mask_url_credentials, url_credentials

if TYPE_CHECKING:  # httpx is imported on first use, so `reelforge --help` stays fast
    from reelforge.plugins.story_llm.transport import JSONClient

log = logging.getLogger("reelforge.story_llm")

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

    def _count(self, reply: Reply) -> None:
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
        return ask_whole(self, messages, "story", check_story, cap=self.output_cap("story"), job=job)

    def build_scene_graph(self, story: Story, job: Any = None) -> SceneGraph:
        shots = self.options.shots
        scenes = self.options.scenes or max(1, min(shots, round(shots / 3)))
        scenes = min(scenes, shots)
        messages = prompts.scene_graph_messages(story, scenes=scenes, shots=shots)
        return ask_whole(self, messages, "scene_graph",
                         lambda data: check_scene_graph(data, max_scenes=shots, story=story),
                         cap=self.output_cap("scene_graph", scenes), job=job)

    def plan_shots(self, story: Story, scenes: SceneGraph, job: Any = None) -> ShotPlan:
        """Plan the shots, in parts when the plan is long. With a ``job`` (a
        reelforge.StageJob), each part is checkpointed as it arrives, so after a failure a
        resumed run asks only for the parts still missing (see ``shot_batches``)."""
        return shot_batches.plan_shots(self, story, scenes, job)

    # -- helpers ---------------------------------------------------------------------

    def _raise_hint(self) -> str:
        """What to do about an answer cut off at the output limit: the cap option, by name."""
        return (f"raise it with -o {self.name}.{self.cap_option}=N (0: no cap) or raise "
                f"{self.limit_hint}, then `reelforge resume`")

    def _who(self) -> str:
        model = getattr(self.options, "model", "")
        return f"{self.name} model {model!r}" if model else f"{self.name} model"
