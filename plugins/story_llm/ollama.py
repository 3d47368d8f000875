"""The ``ollama`` story writer: Ollama's own ``/api/chat`` with ``format`` set to the JSON
schema of each stage."""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

import attrs

from reelforge import hookimpl
from reelforge.errors import ServiceError
from reelforge.redact import register_secret

from reelforge.plugins.story_llm.chat import ChatStoryWriter, PlanOptions, Reply
from reelforge.plugins.story_llm.schemas import SCHEMAS

log = logging.getLogger("reelforge.story_llm")


def _about_format(body: str) -> bool:
    # Before 0.5: 400 'json: cannot unmarshal object into Go struct field ChatRequest.format
    # of type string'; later, for a schema it cannot use: 'invalid JSON schema in format'.
    return "format" in body.lower()


def _refused_format(status: int, body: str) -> bool:
    return status == 500 and "invalid" in body.lower() and _about_format(body)


@attrs.frozen
class OllamaOptions(PlanOptions):
    """Options of the ``ollama`` story writer (plus the planning options it shares with openai)."""

    base_url: str = "http://127.0.0.1:11434"
    "Where Ollama listens; /api/chat is appended."
    model: str = "llama3.1"
    "A model you have pulled (`ollama pull llama3.1`)."
    num_ctx: int = 8192
    "Context window in tokens. Ollama's own default is small enough to cut a shot plan short."
    num_predict: int | None = None
    "Cap on tokens per answer (options.num_predict). Unset: a cap fitted to each stage (story 2048; scenes 256 + 160 a scene; shots 256 + 320 a shot asked for); 0: no cap, Ollama's default."
    api_key_env: str = ""
    "An environment variable holding a key, for an Ollama behind an authenticating proxy or ollama.com (sent as a Bearer token; never saved). Empty: no key is sent."


class OllamaStory(ChatStoryWriter):
    """Writes the story, scene graph and shot plan with a model served by Ollama."""

    name: ClassVar[str] = "ollama"
    Options: ClassVar[type] = OllamaOptions
    label: ClassVar[str] = "Ollama"
    limit_hint: ClassVar[str] = "the num_ctx option (the context window)"
    cap_option: ClassVar[str] = "num_predict"
    key_hint: ClassVar[str] = "an environment variable named by -o ollama.api_key_env=VAR"

    def __init__(self, options: OllamaOptions | None = None):
        super().__init__(options)
        # Ollama before 0.5 takes only format="json"; switched on its first refusal.
        self._schema_format = True
        self._headers()  # a key is registered as a secret before anything can echo it

    models_path: ClassVar[str] = "/api/tags"

    @property
    def model_hint(self) -> str:  # type: ignore[override]
        return f"Run `ollama pull {self.options.model}`, or pick one with -o ollama.model=NAME"

    def _listed_models(self, data: dict[str, Any]) -> set[str] | None:
        models = data.get("models")
        if not isinstance(models, list):
            return None
        names = set()
        for m in models:
            if isinstance(m, dict):
                names.update(v for v in (m.get("name"), m.get("model")) if isinstance(v, str))
        return names

    @staticmethod
    def _has_model(model: str, names: set[str]) -> bool:
        # "llama3.1" is "llama3.1:latest" to Ollama
        return model in names or (":" not in model and f"{model}:latest" in names)

    def _headers(self) -> dict[str, str]:
        env = self.options.api_key_env
        key = os.environ.get(env, "").strip() if env else ""
        register_secret(key)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _payload(self, messages: list[dict[str, str]], stage: str, cap: int | None = None) -> dict[str, Any]:
        opts = self.options
        options: dict[str, Any] = {"temperature": opts.temperature, "num_ctx": opts.num_ctx}
        if opts.seed is not None:
            options["seed"] = opts.seed
        if cap:
            options["num_predict"] = cap
        return {
            "model": opts.model,
            "messages": messages,
            "stream": False,
            "format": SCHEMAS[stage] if self._schema_format else "json",
            "options": options,
        }

    def _chat(self, messages: list[dict[str, str]], stage: str, cap: int | None = None) -> Reply:
        from reelforge.plugins.story_llm.transport import BadRequest, preview

        while True:
            try:
                data = self._http().post("/api/chat", self._payload(messages, stage, cap),
                                         refused=_refused_format)
                break
            except BadRequest as exc:
                if not self._schema_format or not _about_format(exc.body):
                    raise
                log.warning("Ollama at %s refused a JSON schema as format (%s: %s); using format=json",
                            self.options.base_url, exc.status_code, exc.server_message)
                self._schema_format = False
        message = data.get("message")
        if not isinstance(message, dict):
            raise ServiceError(f"Ollama at {self.options.base_url} answered without a message: "
                               f"{preview(data)}")
        if data.get("done") is False:
            raise ServiceError(f"Ollama at {self.options.base_url} sent an unfinished answer "
                               f"although streaming was off")
        reason = data.get("done_reason")
        reason = reason if isinstance(reason, str) else None
        log.debug("%s: done_reason=%s prompt_eval_count=%s eval_count=%s", self._who(), reason,
                  data.get("prompt_eval_count"), data.get("eval_count"))
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise ServiceError(f"Ollama at {self.options.base_url} answered with content that is "
                               f"not text: {preview(content)}")
        return Reply(content=content, finish_reason=reason, prompt_tokens=data.get("prompt_eval_count"),
                     completion_tokens=data.get("eval_count"))


@hookimpl
def register_story_llms(register):
    register(OllamaStory)
