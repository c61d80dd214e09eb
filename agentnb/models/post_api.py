"""PostAPIModel: a plain JSON POST to a URL, with headers and a body template."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from agentnb.config import ModelConfig, ModelConfigError
from agentnb.message import Msg
from agentnb.models.base import ModelCallError, ModelResponse, ModelWrapper, chat_messages

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_BODY: dict[str, Any] = {"input": "{input}"}


def fill_template(template: Any, values: Mapping[str, Any]) -> Any:
    """``template`` (nested dicts, lists and strings) with ``{name}`` placeholders filled from ``values``.

    A string that is one placeholder alone becomes the value itself (a list or
    a number stays one); placeholders inside longer strings become text.

    Raises:
        KeyError: a placeholder has no value.
    """
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    if isinstance(template, Mapping):
        return {key: fill_template(value, values) for key, value in template.items()}
    if isinstance(template, (list, tuple)):
        return [fill_template(value, values) for value in template]
    return template


def _json_value(value: Any) -> Any:
    """Msg objects (or lists of them) as chat messages; anything else as it is."""
    if isinstance(value, Msg):
        return chat_messages(value)[0]
    if isinstance(value, list) and any(isinstance(v, Msg) for v in value):
        return chat_messages(value)
    return value


class PostAPIModel(ModelWrapper):
    """``model_type: "post_api"``: POST a JSON body to ``api_url`` and read the answer.

    Settings: ``api_url`` (required), ``headers`` (their values may use
    ``{api_key}``), ``body`` (the JSON template; default ``{"input": "{input}"}``),
    ``response_path`` (where the text is in the JSON answer, dotted, e.g.
    ``choices.0.text``; default: the whole answer), ``api_key`` or
    ``api_key_env``, ``timeout`` and ``max_retries``.

    ``model("hello", temperature=0.1)`` fills the template's ``{input}`` with
    ``"hello"`` and ``{temperature}`` with ``0.1``; a string that is a placeholder
    alone takes the value as it is (a number, a list, a dict).
    """

    model_type: ClassVar[str] = "post_api"
    settings: ClassVar[frozenset[str]] = frozenset({"api_url", "body", "response_path"})
    required: ClassVar[tuple[str, ...]] = ("api_url",)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.api_url: str = config["api_url"]
        self.body: Any = config.get("body", DEFAULT_BODY)
        self.response_path: list[str] = str(config["response_path"]).split(".") if config.get("response_path") else []
        self._header_templates: dict[str, str] = dict(config.get("headers") or {})

    @classmethod
    def check_config(cls, config: ModelConfig) -> ModelConfig:
        config = super().check_config(config)
        for value in (config.get("headers") or {}).values():
            for name in _PLACEHOLDER.findall(value):
                if name != "api_key":
                    raise ModelConfigError(f"model config {config.config_name!r}: header placeholder {{{name}}} "
                                           "is unknown (only {api_key} is filled in headers)")
        return config

    def __call__(self, input: Any = None, **fields: Any) -> ModelResponse:
        """POST the body template filled with ``input`` and ``fields``.

        Raises:
            TypeError: the template has a placeholder with no value.
            ModelCallError: the endpoint failed, or its answer has nothing at ``response_path``.
        """
        values = {name: _json_value(value) for name, value in {"input": input, **fields}.items()}
        try:
            body = fill_template(self.body, values)
        except KeyError as exc:
            raise TypeError(f"model {self.config_name!r}: its body template needs a value for {exc.args[0]!r}, "
                            f"e.g. model(..., {exc.args[0]}=...)") from None
        raw = self._post(self.api_url, body, self._headers())
        return ModelResponse(text=self._text(raw), raw=raw)

    def _headers(self) -> dict[str, str]:
        key = self._api_key.get() or ""
        return {name: value.replace("{api_key}", key) for name, value in self._header_templates.items()}

    def _text(self, raw: Any) -> str:
        value = raw
        for step in self.response_path:
            try:
                value = value[int(step)] if isinstance(value, list) else value[step]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ModelCallError(f"model {self.config_name!r}: the answer of {self.api_url} has nothing at "
                                     f"{'.'.join(self.response_path)!r}: {self._hide(str(raw)[:300])}") from None
        if isinstance(value, str):
            return value
        import json

        return json.dumps(value)

    def _describe(self) -> str:
        return f" url={self.api_url!r}"
