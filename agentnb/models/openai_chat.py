"""OpenAIChatModel: any OpenAI-compatible ``/chat/completions`` endpoint."""

from __future__ import annotations

from typing import Any, ClassVar

from agentnb.config import ModelConfig, ModelConfigError
from agentnb.models.base import ModelCallError, ModelResponse, ModelWrapper, chat_messages

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIChatModel(ModelWrapper):
    """``model_type: "openai_chat"``: chat completions from an OpenAI-compatible server
    (OpenAI, vLLM, llama.cpp, Ollama, LiteLLM, ...).

    Settings: ``model`` (required; ``model_name`` is the same), ``base_url``
    (default ``https://api.openai.com/v1``; the request goes to
    ``{base_url}/chat/completions``), ``api_key`` or ``api_key_env`` (the name of
    the environment variable holding it), ``organization``, ``headers``,
    ``generate_args`` (e.g. ``{"temperature": 0.2, "max_tokens": 256}``),
    ``timeout`` (s, default 60) and ``max_retries`` (default 2).

    Call it with a string, a :class:`~agentnb.Msg`, a dict or a list of them;
    keyword arguments override ``generate_args`` for that call::

        answer = model([{"role": "system", "content": "Be brief."}, "What is an actor?"], temperature=0)
        answer.text
    """

    model_type: ClassVar[str] = "openai_chat"
    settings: ClassVar[frozenset[str]] = frozenset({"model", "model_name", "base_url", "organization",
                                                    "generate_args"})

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.model: str = config.get("model") or config["model_name"]
        self.base_url: str = str(config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.generate_args: dict[str, Any] = dict(config.get("generate_args") or {})
        self._organization = config.get("organization")
        self._extra_headers: dict[str, str] = dict(config.get("headers") or {})

    @classmethod
    def check_config(cls, config: ModelConfig) -> ModelConfig:
        config = super().check_config(config)
        if not (config.get("model") or config.get("model_name")):
            raise ModelConfigError(f"model config {config.config_name!r} (openai_chat) needs 'model'")
        if not isinstance(config.get("generate_args", {}), dict):
            raise ModelConfigError(f"model config {config.config_name!r}: 'generate_args' must be a dict")
        return config

    def __call__(self, messages: Any, **generate_args: Any) -> ModelResponse:
        """Ask the model; return its first choice.

        Args:
            messages: a string (one user message), a Msg, a dict, or a list of them.
            **generate_args: settings for this call (temperature, max_tokens, ...).
        Raises:
            ModelCallError: the endpoint failed or answered without a choice.
        """
        body = {**self.generate_args, **generate_args, "model": self.model, "messages": chat_messages(messages)}
        raw = self._post(self.url, body, self._headers())
        try:
            message = raw["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise ModelCallError(f"model {self.config_name!r}: {self.url} answered without choices[0].message: "
                                 f"{self._hide(str(raw)[:300])}") from None
        content = message.get("content") if isinstance(message, dict) else None
        return ModelResponse(text=content or "", raw=raw, usage=raw.get("usage"))

    def _headers(self) -> dict[str, str]:
        headers = dict(self._extra_headers)
        key = self._api_key.get()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if self._organization:
            headers["OpenAI-Organization"] = str(self._organization)
        return headers

    def _describe(self) -> str:
        return f" model={self.model!r} url={self.url!r}"
