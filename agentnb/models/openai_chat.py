"""OpenAIChatModel: any OpenAI-compatible ``/chat/completions`` endpoint."""

from __future__ import annotations

from typing import Any, ClassVar

from agentnb.config import ModelConfig, ModelConfigError
from agentnb.models.base import ModelCallError, ModelResponse, ModelWrapper, chat_messages

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The seed's configs pass these to the OpenAI client as ``client_args``: each becomes
# this wrapper's setting of the same meaning (default_headers: headers).
CLIENT_ARGS = {"base_url": "base_url", "api_key": "api_key", "organization": "organization",
               "timeout": "timeout", "max_retries": "max_retries", "default_headers": "headers"}


def merge_client_args(config: ModelConfig) -> ModelConfig:
    """``config`` with its ``client_args`` (the seed's form) turned into this wrapper's settings.

    Raises:
        ModelConfigError: ``client_args`` is not a dict, has an argument this wrapper
            does not support, or says otherwise than a setting given beside it.
    """
    client_args = config.get("client_args")
    if client_args is None:
        return config
    name = config.get("config_name")
    if not isinstance(client_args, dict):
        raise ModelConfigError(f"model config {name!r}: 'client_args' must be a dict")
    unknown = sorted(set(client_args) - set(CLIENT_ARGS))
    if unknown:
        raise ModelConfigError(f"model config {name!r}: client_args {', '.join(map(repr, unknown))} are not "
                               f"supported; client_args may have {', '.join(CLIENT_ARGS)}")
    merged = ModelConfig({key: value for key, value in config.items() if key != "client_args"})
    for arg, value in client_args.items():
        setting = CLIENT_ARGS[arg]
        if setting in merged and merged[setting] != value:
            raise ModelConfigError(f"model config {name!r}: {setting!r} is given twice, differently (beside "
                                   f"client_args and as client_args {arg!r}); give it once")
        merged[setting] = value
    return merged


class OpenAIChatModel(ModelWrapper):
    """``model_type: "openai_chat"``: chat completions from an OpenAI-compatible server
    (OpenAI, vLLM, llama.cpp, Ollama, LiteLLM, ...).

    Settings: ``model`` (required; ``model_name`` is the same), ``base_url``
    (default ``https://api.openai.com/v1``; the request goes to
    ``{base_url}/chat/completions``), ``api_key`` or ``api_key_env`` (the name of
    the environment variable holding it), ``organization``, ``headers``,
    ``generate_args`` (e.g. ``{"temperature": 0.2, "max_tokens": 256}``),
    ``timeout`` (s, default 60), ``max_retries`` (default 2) and ``send_names``
    (default true: a message's ``name`` goes with it, see :func:`chat_messages`).
    The seed's ``client_args`` (``base_url``, ``api_key``, ``organization``,
    ``timeout``, ``max_retries``, ``default_headers``) are read as these settings.

    Call it with a string, a :class:`~agentnb.Msg`, a dict or a list of them;
    keyword arguments override ``generate_args`` for that call::

        answer = model([{"role": "system", "content": "Be brief."}, "What is an actor?"], temperature=0)
        answer.text
    """

    model_type: ClassVar[str] = "openai_chat"
    settings: ClassVar[frozenset[str]] = frozenset({"model", "model_name", "base_url", "organization",
                                                    "generate_args", "client_args", "send_names"})

    def __init__(self, config: ModelConfig) -> None:
        config = merge_client_args(ModelConfig(config))
        super().__init__(config)
        self.model: str = config.get("model") or config["model_name"]
        self.base_url: str = str(config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.generate_args: dict[str, Any] = dict(config.get("generate_args") or {})
        self._organization = config.get("organization")
        self._extra_headers: dict[str, str] = dict(config.get("headers") or {})
        self.send_names = bool(config.get("send_names", True))

    @classmethod
    def check_config(cls, config: ModelConfig) -> ModelConfig:
        config = super().check_config(merge_client_args(config))
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
        body = {**self.generate_args, **generate_args, "model": self.model,
                "messages": chat_messages(messages, names=self.send_names)}
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
