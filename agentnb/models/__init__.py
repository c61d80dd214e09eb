"""Model wrappers: callables built from the model configurations given to ``agentnb.init``.

``agentnb.load_model(name)`` returns one; ``AgentBase(name, model_config_name=...)``
puts one on the agent as ``self.model``. Two model types: ``openai_chat``
(:class:`OpenAIChatModel`) and ``post_api`` (:class:`PostAPIModel`). They run on
httpx, the ``models`` extra: ``pip install 'agentnb[models]'``.
"""

from agentnb.models.base import ModelCallError, ModelResponse, ModelsExtraMissing, ModelWrapper, Secret
from agentnb.models.openai_chat import OpenAIChatModel
from agentnb.models.post_api import PostAPIModel
from agentnb.models.registry import load_model, model_types, register_model_type

__all__ = [
    "ModelCallError",
    "ModelResponse",
    "ModelWrapper",
    "ModelsExtraMissing",
    "OpenAIChatModel",
    "PostAPIModel",
    "Secret",
    "load_model",
    "model_types",
    "register_model_type",
]
