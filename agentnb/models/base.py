"""ModelWrapper: the base of the callable model wrappers, on an HTTP client (httpx).

httpx is the ``models`` extra (``pip install 'agentnb[models]'``); it is
imported when a wrapper is built, so that ``import agentnb`` never needs it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agentnb.config import ModelConfig, ModelConfigError
from agentnb.errors import AgentnbError
from agentnb.message import Msg

_LOGGER = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_BACKOFF = 4.0
_ERROR_BODY_CHARS = 500
# A speaker's name as OpenAI's chat API accepts it (others, e.g. vLLM's, take the same).
_NAME_PATTERN = re.compile(r"[^A-Za-z0-9_-]+")
_NAME_MAX = 64
_NAMED_ROLES = frozenset({"system", "user", "assistant", "developer"})
COMMON_SETTINGS = frozenset({"config_name", "model_type", "api_key", "api_key_env", "headers", "timeout",
                             "max_retries"})


class ModelsExtraMissing(AgentnbError, ImportError):
    """The model wrappers need the ``models`` extra (httpx), and it is not installed."""


class ModelCallError(AgentnbError):
    """A model endpoint could not be reached or answered with an error.

    Attributes:
        status_code: the HTTP status of the answer, or None when there was none.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass
class ModelResponse:
    """What a model answered.

    Attributes:
        text: the answer's text.
        raw: the endpoint's whole JSON answer.
        usage: token counts, when the endpoint reports them.
    """

    text: str
    raw: Any = field(default=None, repr=False)
    usage: dict[str, Any] | None = None

    def __str__(self) -> str:
        return self.text


class Secret:
    """A string that never shows itself: not in a repr, a log line or a pickle."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value or None

    def get(self) -> str | None:
        """The secret itself (None when there is none)."""
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret(None)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled: model wrappers travel by their config name")


def httpx_module() -> Any:
    """The httpx module; ModelsExtraMissing says how to install it when it is missing."""
    try:
        import httpx
    except ImportError:
        raise ModelsExtraMissing(
            f"agentnb's model wrappers need the 'models' extra, which is not installed for {sys.executable}: "
            "pip install 'agentnb[models]' (it installs httpx)"
        ) from None
    return httpx


def resolve_api_key(config: ModelConfig) -> Secret:
    """The config's API key: ``api_key`` itself, or the environment variable named by ``api_key_env``."""
    if config.get("api_key"):
        return Secret(str(config["api_key"]))
    env_name = config.get("api_key_env")
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise ModelConfigError(
                f"model config {config.config_name!r} reads its API key from ${env_name}, which is not set in "
                f"process {os.getpid()} (set it in the environment the agent server starts in)"
            )
        return Secret(value)
    return Secret(None)


def speaker_name(name: Any) -> str | None:
    """``name`` as the ``name`` of a chat message: letters, digits, ``_`` and ``-``, at most
    64 (what OpenAI accepts); other characters become ``_``. None when nothing is left."""
    if not isinstance(name, str):
        return None
    cleaned = _NAME_PATTERN.sub("_", name.strip())[:_NAME_MAX]
    return cleaned if cleaned.strip("_") else None


def chat_messages(messages: Any, names: bool = False) -> list[dict[str, Any]]:
    """``messages`` as chat-completion messages: a string is one user message; a
    :class:`Msg` keeps its role and content (and, with ``names``, its speaker's name,
    see :func:`speaker_name`, so that several assistants of a debate stay apart);
    dicts are sent as they are."""
    if messages is None:
        return []
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping):
        messages = [messages]
    if not isinstance(messages, Iterable):
        raise TypeError(f"messages must be a string, a Msg, a dict or a list of them; got {type(messages).__name__}")
    out = []
    for message in messages:
        if isinstance(message, str):
            out.append({"role": "user", "content": message})
        elif isinstance(message, Msg):
            content = message.get("content")
            role = message.get("role") or "user"
            entry = {"role": role}
            name = speaker_name(message.get("name")) if names and role in _NAMED_ROLES else None
            if name:
                entry["name"] = name
            entry["content"] = content if isinstance(content, (str, list)) or content is None else str(content)
            out.append(entry)
        elif isinstance(message, Mapping):
            out.append(dict(message))
        elif message is not None:
            raise TypeError(f"a message must be a string, a Msg or a dict; got {type(message).__name__}")
    return out


class ModelWrapper:
    """A callable model built from a model configuration.

    Subclasses set :attr:`model_type`, :attr:`settings` (the keys their config
    may have) and :attr:`required`, and implement ``__call__``. A wrapper is
    pickled as its config name: it is rebuilt from the configurations of the
    process that unpickles it, so its API key never travels.

    Args:
        config: the model configuration.
    Raises:
        ModelConfigError: a wrong setting, or an API key variable that is not set.
        ModelsExtraMissing: httpx is not installed.
    """

    model_type: ClassVar[str] = ""
    settings: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ModelConfig) -> None:
        config = self.check_config(ModelConfig(config))
        httpx = httpx_module()
        self.config_name: str = config.config_name
        self.timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        self.max_retries = int(config.get("max_retries", DEFAULT_MAX_RETRIES))
        self._api_key = resolve_api_key(config)
        self._client = httpx.Client(timeout=self.timeout)

    @classmethod
    def check_config(cls, config: ModelConfig) -> ModelConfig:
        """Return ``config`` if it suits this model type; ModelConfigError names what is wrong."""
        name = config.get("config_name")
        unknown = sorted(set(config) - cls.settings - COMMON_SETTINGS)
        if unknown:
            allowed = ", ".join(sorted((cls.settings | COMMON_SETTINGS) - {"config_name", "model_type"}))
            raise ModelConfigError(f"model config {name!r} ({cls.model_type}) has unknown setting(s) "
                                   f"{', '.join(map(repr, unknown))}; its settings are: {allowed}")
        missing = [key for key in cls.required if not config.get(key)]
        if missing:
            raise ModelConfigError(f"model config {name!r} ({cls.model_type}) needs {', '.join(map(repr, missing))}")
        headers = config.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ModelConfigError(f"model config {name!r}: 'headers' must be a dict of strings")
        for key in ("timeout", "max_retries"):
            value = config.get(key)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ModelConfigError(f"model config {name!r}: {key!r} must be a number of at least 0")
        return config

    def __call__(self, *args: Any, **kwargs: Any) -> ModelResponse:
        raise NotImplementedError

    def _post(self, url: str, body: Any, headers: dict[str, str]) -> Any:
        """POST ``body`` as JSON and return the JSON answer, retrying what a retry may cure."""
        httpx = httpx_module()
        attempt = 0
        while True:
            try:
                response = self._client.post(url, json=body, headers=headers)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise ModelCallError(f"model {self.config_name!r}: cannot reach {url}: "
                                         f"{self._hide(str(exc)) or type(exc).__name__}") from None
            else:
                if response.status_code < 400:
                    return self._json(response, url)
                if response.status_code not in RETRY_STATUS or attempt >= self.max_retries:
                    detail = self._hide(response.text[:_ERROR_BODY_CHARS])
                    raise ModelCallError(f"model {self.config_name!r}: {url} answered HTTP {response.status_code}: "
                                         f"{detail}", response.status_code)
            attempt += 1
            backoff = min(_MAX_BACKOFF, 0.5 * 2 ** (attempt - 1))
            _LOGGER.info("model %r: retrying %s in %.1f s (attempt %d)", self.config_name, url, backoff, attempt + 1)
            time.sleep(backoff)  # back-off before a retry, as every API client does

    def _json(self, response: Any, url: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ModelCallError(f"model {self.config_name!r}: {url} answered with something that is not JSON: "
                                 f"{self._hide(response.text[:_ERROR_BODY_CHARS])!r}", response.status_code) from None

    def _hide(self, text: str) -> str:
        """``text`` with the API key blotted out (an endpoint may quote it back in an error)."""
        key = self._api_key.get()
        return text.replace(key, "***") if key else text

    def close(self) -> None:
        """Close the HTTP connections this wrapper keeps open."""
        self._client.close()

    def __enter__(self) -> ModelWrapper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        from agentnb.models.registry import load_model

        return (load_model, (self.config_name,))

    def _describe(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} config={self.config_name!r}{self._describe()}>"
