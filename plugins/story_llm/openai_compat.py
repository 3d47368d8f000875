"""The ``openai`` story writer: any server speaking OpenAI's chat-completions API
(OpenAI itself, llama.cpp's server, vLLM, LM Studio, ...)."""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs

from reelforge import hookimpl
from reelforge.errors import ConfigError, ServiceError
from reelforge.redact import register_secret

from reelforge.plugins.story_llm.chat import ChatStoryWriter, PlanOptions, Reply
from reelforge.plugins.story_llm.schemas import SCHEMAS

log = logging.getLogger("reelforge.story_llm")

JSON_MODES = ("json_schema", "json_object", "none")


@attrs.frozen
class OpenAIOptions(PlanOptions):
    """Options of the ``openai`` story writer (plus the planning options it shares with ollama)."""

    base_url: str = "https://api.openai.com/v1"
    "The API root; /chat/completions is appended. For llama.cpp or vLLM: http://HOST:PORT/v1."
    model: str = "gpt-4o-mini"
    "The model name the server knows."
    api_key_env: str = "OPENAI_API_KEY"
    "The environment variable holding the API key (sent as a Bearer token; never saved)."
    max_tokens: int | None = None
    "Cap on tokens per answer (max_tokens in the request). Unset: a cap fitted to each stage (story 2048; scenes 256 + 160 a scene; shots 256 + 320 a shot asked for); 0: no cap, the server's default."
    json_mode: str = "json_schema"
    "How to ask for JSON: json_schema (strict), json_object, or none (prompt only). A server "
    "that refuses json_schema is asked again with json_object automatically."


def _about_response_format(body: str) -> bool:
    text = body.lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object",
                                         "structured output", "grammar"))


def _refused_response_format(status: int, body: str) -> bool:
    # Old llama.cpp servers answer 500 'response_format type must be one of "text" or
    # "json_object", but got: json_schema'; retrying that cannot help.
    return status == 500 and _about_response_format(body)


class OpenAIStory(ChatStoryWriter):
    """Writes the story, scene graph and shot plan with an OpenAI-compatible chat model."""

    name: ClassVar[str] = "openai"
    Options: ClassVar[type] = OpenAIOptions
    label: ClassVar[str] = "OpenAI-compatible server"
    limit_hint: ClassVar[str] = "the server's context size"
    cap_option: ClassVar[str] = "max_tokens"
    key_hint: ClassVar[str] = ("the environment variable named by openai.api_key_env "
                               "(OPENAI_API_KEY by default)")

    def __init__(self, options: OpenAIOptions | None = None):
        super().__init__(options)
        if self.options.json_mode not in JSON_MODES:
            raise ConfigError(f"openai.json_mode must be one of {', '.join(JSON_MODES)}, "
                              f"got {self.options.json_mode!r}")
        self._mode = self.options.json_mode
        # Checked now, so a missing key stops `reelforge run` before a session is created.
        self._api_key()

    models_path: ClassVar[str] = "/models"
    model_hint: ClassVar[str] = "Pick one with -o openai.model=NAME"
    base_url_hint: ClassVar[str] = ", which for most servers ends in /v1"

    def _listed_models(self, data: dict[str, Any]) -> set[str] | None:
        entries = data.get("data")
        if not isinstance(entries, list):
            return None
        entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
        # llama.cpp with one model loaded lists it (owned_by "llamacpp", no "status") and
        # serves it whatever model name a request gives; its router mode lists a status.
        if entries and all(e.get("owned_by") == "llamacpp" and "status" not in e for e in entries):
            return None
        names = {e["id"] for e in entries}
        for e in entries:
            aliases = e.get("aliases")
            names.update(a for a in (aliases if isinstance(aliases, list) else []) if isinstance(a, str))
        return names

    def _api_key(self) -> str:
        """The key from the environment ('' for a local server that needs none)."""
        env = self.options.api_key_env
        key = os.environ.get(env, "").strip() if env else ""
        register_secret(key)  # masked from here on in every message, log and file
        if not key and urlsplit(self.options.base_url).hostname == "api.openai.com":
            raise ConfigError(
                f"the openai story writer needs an API key: set the environment variable "
                f"{env or 'OPENAI_API_KEY'} (or point base_url at a local server, e.g. "
                f"-o openai.base_url=http://127.0.0.1:8080/v1)")
        return key

    def _headers(self) -> dict[str, str]:
        key = self._api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _payload(self, messages: list[dict[str, str]], stage: str, cap: int | None = None) -> dict[str, Any]:
        opts = self.options
        payload: dict[str, Any] = {"model": opts.model, "messages": messages,
                                   "temperature": opts.temperature}
        if opts.seed is not None:
            payload["seed"] = opts.seed
        if cap:
            payload["max_tokens"] = cap
        if self._mode == "json_schema":
            payload["response_format"] = {"type": "json_schema", "json_schema": {
                "name": stage, "strict": True, "schema": SCHEMAS[stage]}}
        elif self._mode == "json_object":
            payload["response_format"] = {"type": "json_object"}
        return payload

    def _chat(self, messages: list[dict[str, str]], stage: str, cap: int | None = None) -> Reply:
        from reelforge.plugins.story_llm.transport import BadRequest

        while True:
            try:
                data = self._http().post("/chat/completions", self._payload(messages, stage, cap),
                                         refused=_refused_response_format)
                break
            except BadRequest as exc:
                if self._mode == "none" or not _about_response_format(exc.body):
                    raise
                fallback = "json_object" if self._mode == "json_schema" else "none"
                log.warning("%s does not take response_format %s (%s: %s); using %s from now on",
                            self.options.base_url, self._mode, exc.status_code, exc.server_message,
                            fallback)
                self._mode = fallback
        return self._reply(data)

    def _reply(self, data: dict[str, Any]) -> Reply:
        from reelforge.plugins.story_llm.transport import preview

        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ServiceError(f"{self.label} at {self.options.base_url} answered without choices: "
                               f"{preview(data)}")
        choice = choices[0]
        message = choice.get("message") or {}
        if not isinstance(message, dict):
            raise ServiceError(f"{self.label} at {self.options.base_url} answered with a message "
                               f"that is not an object: {preview(message)}")
        finish = choice.get("finish_reason")
        finish = finish if isinstance(finish, str) else None
        if message.get("refusal"):
            raise ServiceError(f"{self._who()} refused: {preview(message['refusal'], 500)}")
        if finish == "content_filter":
            raise ServiceError(f"{self._who()}'s answer was stopped by the server's content filter; "
                               f"rephrase the idea and run again")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        log.debug("%s: finish_reason=%s prompt_tokens=%s completion_tokens=%s", self._who(),
                  finish, usage.get("prompt_tokens"), usage.get("completion_tokens"))
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise ServiceError(f"{self.label} at {self.options.base_url} answered with content that "
                               f"is not text: {preview(content)}")
        return Reply(content=content, finish_reason=finish, prompt_tokens=usage.get("prompt_tokens"),
                     completion_tokens=usage.get("completion_tokens"))


@hookimpl
def register_story_llms(register):
    register(OpenAIStory)
