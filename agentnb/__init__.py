"""agentnb: actors for Python agent programs, from a notebook or a script.

``MyAgent(...).to_dist()`` moves an agent to an agent server process, where
its calls run in parallel with every other agent's.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from agentnb.agents import AgentBase
from agentnb.config import ModelConfigError, init
from agentnb.errors import (
    AgentnbError,
    AgentNotFound,
    AgentServerError,
    AuthenticationError,
    DeadlockError,
    RemoteError,
    SerializationError,
    ServerUnavailable,
    TaskCancelled,
    TaskNotFound,
)
from agentnb.message import Msg
from agentnb.models import ModelCallError, ModelResponse, ModelsExtraMissing, load_model
from agentnb.progress import Progress, progress, wait
from agentnb.rpc import AsyncResult, RpcMeta, RpcObject, async_func, sync_func
from agentnb.rpc.placement import clear_default_server, get_agent, list_agents, set_default_pool, set_default_server
from agentnb.rpc.rpc_object import set_watch
from agentnb.rpc.server_pool import ServerPool, start_pool
from agentnb.server import RpcAgentServerLauncher

__all__ = [
    "AgentBase",
    "AgentNotFound",
    "AgentServerError",
    "AgentnbError",
    "AsyncResult",
    "AuthenticationError",
    "DeadlockError",
    "ModelCallError",
    "ModelConfigError",
    "ModelResponse",
    "ModelsExtraMissing",
    "Msg",
    "Progress",
    "RemoteError",
    "RpcAgentServerLauncher",
    "RpcMeta",
    "RpcObject",
    "ServerPool",
    "SerializationError",
    "ServerUnavailable",
    "TaskCancelled",
    "TaskNotFound",
    "__version__",
    "async_func",
    "clear_default_server",
    "get_agent",
    "init",
    "list_agents",
    "load_model",
    "load_ipython_extension",
    "progress",
    "set_default_pool",
    "set_default_server",
    "set_watch",
    "start_pool",
    "sync_func",
    "unload_ipython_extension",
    "wait",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext agentnb``: hand over to the kernel extension."""
    import kernel_ext

    kernel_ext.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext agentnb``."""
    import kernel_ext

    kernel_ext.unload_ipython_extension(ipython)
