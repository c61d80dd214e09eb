"""AgentBase: subclass it and override ``reply``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Self

from agentnb.message import Msg
from agentnb.rpc import audience
from agentnb.rpc.methods import async_func
from agentnb.rpc.rpc_meta import RpcMeta

if TYPE_CHECKING:
    from agentnb.models import ModelWrapper


class AgentBase(metaclass=RpcMeta):
    """An agent: a named object that answers messages.

    Override :meth:`reply`. ``agent(x)`` calls ``reply(x)``. Both are
    asynchronous on a distributed agent (they return an AsyncResult).

    Args:
        name: the agent's name (also how a re-attached proxy finds it).
        sys_prompt: an optional system prompt, kept as ``self.sys_prompt``.
        model_config_name: the name of a model configuration (see ``agentnb.init``):
            the agent gets ``self.model``, that model's wrapper, built by the process
            that builds the agent (the agent server, for a distributed agent).
        use_memory: keep the messages the agent observes in ``self.memory``.
    """

    def __init__(self, name: str, sys_prompt: str | None = None, model_config_name: str | None = None,
                 use_memory: bool = True, **kwargs: Any) -> None:
        self.name = name
        self.sys_prompt = sys_prompt
        self.model_config_name = model_config_name
        # Resolved here, so that a distributed agent whose config its server lacks fails at creation.
        self.model: ModelWrapper | None = None
        if model_config_name:
            from agentnb.models import load_model  # only agents with a model need the wrappers

            self.model = load_model(model_config_name)
        self.memory: list[Msg] | None = [] if use_memory else None

    @async_func
    def reply(self, x: Msg | None = None) -> Msg:
        """Answer the message ``x``. Subclasses override this."""
        raise NotImplementedError(f"{type(self).__name__} must override reply()")

    @async_func
    def observe(self, x: Msg | list[Msg] | None) -> None:
        """Remember ``x`` (when the agent has a memory) without answering.

        ``x`` may be an AsyncResult (or a list holding some): its value is
        remembered, once there. Asynchronous on a distributed agent: the caller
        does not wait, and the agent's later calls see ``x`` remembered (they run
        after it). In a message hub (``agentnb.msghub``) every participant
        observes what the others say.
        """
        if self.memory is None or x is None:
            return
        x = _values(x)
        self.memory.extend(x if isinstance(x, list) else [x])

    @async_func
    def __call__(self, x: Msg | None = None, *args: Any, **kwargs: Any) -> Msg:
        """Answer ``x`` (``reply``); in a message hub, the other participants observe the answer."""
        reply = self.reply(x, *args, **kwargs)
        if audience.LISTENERS:
            audience.spoke(id(self), self, reply)
        return reply

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    if TYPE_CHECKING:
        # RpcMeta gives every class this method when the class is made (see RpcMeta); declared here
        # for a type checker only, which sees the proxy it returns as an object of this class.
        def to_dist(self, host: str | None = None, port: int | str | None = None, **options: Any) -> Self:
            """Move this agent to an agent server; return the proxy to use from now on."""
            ...


def _values(x: Any) -> Any:
    """``x`` with the AsyncResults in it (and in its lists) replaced by their values."""
    results = sys.modules.get("agentnb.rpc.async_result")  # none can exist before it is loaded
    return x if results is None else results.resolve_results(x)
