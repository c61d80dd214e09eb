"""Model types by name, and ``load_model(config_name)``."""

from __future__ import annotations

import threading

from agentnb.config import ModelConfig, ModelConfigError, get_model_config
from agentnb.models.base import ModelWrapper
from agentnb.models.openai_chat import OpenAIChatModel
from agentnb.models.post_api import PostAPIModel

_lock = threading.Lock()
_model_types: dict[str, type[ModelWrapper]] = {
    OpenAIChatModel.model_type: OpenAIChatModel,
    PostAPIModel.model_type: PostAPIModel,
}


def register_model_type(cls: type[ModelWrapper]) -> type[ModelWrapper]:
    """Make ``cls`` (a ModelWrapper subclass with a ``model_type``) loadable by
    configs of its ``model_type``. Usable as a class decorator.

    The class must be known in the process that loads the model: on an agent
    server, import it with ``--agent-module`` (or define it where the agent's
    class comes from).
    """
    if not (isinstance(cls, type) and issubclass(cls, ModelWrapper) and cls.model_type):
        raise TypeError("register_model_type needs a ModelWrapper subclass with a model_type")
    with _lock:
        _model_types[cls.model_type] = cls
    return cls


def model_types() -> list[str]:
    """The model types known to this process."""
    with _lock:
        return sorted(_model_types)


def check_config(config: ModelConfig) -> ModelConfig:
    """Check the settings of a config whose model type is known here; others pass
    (their type may be registered later) and fail in :func:`load_model`."""
    with _lock:
        cls = _model_types.get(config.model_type)
    return cls.check_config(config) if cls is not None else config


def load_model(config_name: str) -> ModelWrapper:
    """The model wrapper of configuration ``config_name`` (see :func:`agentnb.init`).

    Raises:
        ModelConfigError: no such configuration in this process, an unknown
            model type, a wrong setting, or an unset API key variable.
        ModelsExtraMissing: httpx (``pip install 'agentnb[models]'``) is not installed.
    """
    config = get_model_config(config_name)
    with _lock:
        cls = _model_types.get(config.model_type)
    if cls is None:
        raise ModelConfigError(f"model config {config_name!r} has model_type {config.model_type!r}, which is unknown "
                               f"here (known: {', '.join(model_types())})")
    return cls(config)
