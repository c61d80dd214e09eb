"""agentnb: actors for Python agent programs, from a notebook or a script.

``MyAgent(...).to_dist()`` moves an agent to an agent server process, where
its calls run in parallel with every other agent's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The one place of the version: pyproject.toml reads it, servers report it (GetInfo) and each side
# checks the other's in the handshake (agentnb.wire.versions). CHANGELOG.md says what each version brought.
__version__ = "0.2.0"


from agentnb.errors import (
    AgentnbError,
    AgentNotFound,
    AgentServerError,
    AuthenticationError,
    DaemonError,
    DeadlockError,
    IntegrityError,
    RemoteError,
    SerializationError,
    ServerUnavailable,
    TaskCancelled,
    TaskNotFound,
    VersionMismatch,
)
from agentnb.lazy import lazy_exports

# Light; and imported here, so that ``agentnb.progress`` (``agentnb.timeline``) stays the function
# (a first import of the submodule later would rebind the name to it).
from agentnb.progress import TICKER, Progress, Ticker, progress, wait
from agentnb.timeline import STATE_COLOURS, CallRecord, Timeline, timeline
from agentnb.wire.states import CANCELLED, DONE, FAILED, FINAL_STATES, QUEUED, RUNNING, STATES

# The rest is imported on first use (PEP 562): a script pays for grpc, the
# model wrappers or the server side only when it uses them, and a child mode
# script can start its agent server before the client side is loaded.
_LAZY = {
    "AgentBase": "agentnb.agents",
    "ModelConfigError": "agentnb.config",
    "init": "agentnb.config",
    "Msg": "agentnb.message",
    "MsgHub": "agentnb.message_hub",
    "msghub": "agentnb.message_hub",
    "ModelCallError": "agentnb.models",
    "ModelResponse": "agentnb.models",
    "ModelsExtraMissing": "agentnb.models",
    "load_model": "agentnb.models",
    "AsyncResult": "agentnb.rpc.async_result",
    "cancel": "agentnb.rpc.async_result",
    "new_results": "agentnb.rpc.async_result",
    "watch_results": "agentnb.rpc.async_result",
    "RpcMeta": "agentnb.rpc.rpc_meta",
    "async_func": "agentnb.rpc.methods",
    "concurrent": "agentnb.rpc.methods",
    "sync_func": "agentnb.rpc.methods",
    "RpcObject": "agentnb.rpc.rpc_object",
    "set_watch": "agentnb.rpc.rpc_object",
    "wait_created": "agentnb.rpc.rpc_object",
    "to_dist": "agentnb.rpc.distribute",
    "create_many": "agentnb.rpc.batches",
    "call_many": "agentnb.rpc.batches",
    "RetryPolicy": "agentnb.rpc.call_policy",
    "Creations": "agentnb.rpc.creations",
    "failed_creations": "agentnb.rpc.creations",
    "watch_creations": "agentnb.rpc.creations",
    "clear_default_server": "agentnb.rpc.placement",
    "get_agent": "agentnb.rpc.placement",
    "list_agents": "agentnb.rpc.placement",
    "set_default_pool": "agentnb.rpc.placement",
    "set_default_server": "agentnb.rpc.placement",
    "ServerPool": "agentnb.rpc.server_pool",
    "ServerRecord": "agentnb.runtime_dir",
    "DaemonOptions": "agentnb.cluster",
    "DaemonRegistry": "agentnb.cluster",
    "ServerStatus": "agentnb.cluster",
    "default_server_name": "agentnb.cluster",
    "describe_server": "agentnb.cluster",
    "find_server": "agentnb.cluster",
    "list_servers": "agentnb.cluster",
    "scale_server": "agentnb.cluster",
    "server_calls": "agentnb.cluster",
    "server_logs": "agentnb.cluster",
    "start_pool": "agentnb.cluster",
    "start_server": "agentnb.cluster",
    "stop_server": "agentnb.cluster",
    "use_server": "agentnb.cluster",
    "RpcAgentServerLauncher": "agentnb.server.launcher",
}

if TYPE_CHECKING:  # what the names below are, for a type checker (they are imported on first use)
    from agentnb.agents import AgentBase
    from agentnb.cluster import (
        DaemonOptions,
        DaemonRegistry,
        ServerStatus,
        default_server_name,
        describe_server,
        find_server,
        list_servers,
        scale_server,
        server_calls,
        server_logs,
        start_pool,
        start_server,
        stop_server,
        use_server,
    )
    from agentnb.config import ModelConfigError, init
    from agentnb.message import Msg
    from agentnb.message_hub import MsgHub, msghub
    from agentnb.models import ModelCallError, ModelResponse, ModelsExtraMissing, load_model
    from agentnb.rpc.async_result import AsyncResult, cancel, new_results, watch_results
    from agentnb.rpc.batches import call_many, create_many
    from agentnb.rpc.call_policy import RetryPolicy
    from agentnb.rpc.creations import Creations, failed_creations, watch_creations
    from agentnb.rpc.distribute import to_dist
    from agentnb.rpc.methods import async_func, concurrent, sync_func
    from agentnb.rpc.placement import clear_default_server, get_agent, list_agents, set_default_pool, set_default_server
    from agentnb.rpc.rpc_meta import RpcMeta
    from agentnb.rpc.rpc_object import RpcObject, set_watch, wait_created
    from agentnb.rpc.server_pool import ServerPool
    from agentnb.runtime_dir import ServerRecord
    from agentnb.server.launcher import RpcAgentServerLauncher
else:
    __getattr__ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AgentBase",
    "AgentNotFound",
    "AgentServerError",
    "AgentnbError",
    "AsyncResult",
    "AuthenticationError",
    "CANCELLED",
    "CallRecord",
    "Creations",
    "DONE",
    "DaemonError",
    "DaemonOptions",
    "DaemonRegistry",
    "DeadlockError",
    "IntegrityError",
    "FAILED",
    "FINAL_STATES",
    "ModelCallError",
    "ModelConfigError",
    "ModelResponse",
    "ModelsExtraMissing",
    "Msg",
    "MsgHub",
    "Progress",
    "QUEUED",
    "RUNNING",
    "RemoteError",
    "RetryPolicy",
    "RpcAgentServerLauncher",
    "RpcMeta",
    "RpcObject",
    "STATES",
    "STATE_COLOURS",
    "SerializationError",
    "ServerPool",
    "ServerRecord",
    "ServerStatus",
    "ServerUnavailable",
    "TICKER",
    "TaskCancelled",
    "TaskNotFound",
    "Ticker",
    "Timeline",
    "VersionMismatch",
    "__version__",
    "async_func",
    "call_many",
    "cancel",
    "clear_default_server",
    "concurrent",
    "create_many",
    "default_server_name",
    "describe_server",
    "failed_creations",
    "find_server",
    "get_agent",
    "init",
    "list_agents",
    "list_servers",
    "load_ipython_extension",
    "load_model",
    "msghub",
    "new_results",
    "progress",
    "scale_server",
    "server_calls",
    "server_logs",
    "set_default_pool",
    "set_default_server",
    "set_watch",
    "start_pool",
    "start_server",
    "stop_server",
    "sync_func",
    "timeline",
    "to_dist",
    "unload_ipython_extension",
    "use_server",
    "wait",
    "wait_created",
    "watch_creations",
    "watch_results",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext agentnb``: hand over to the kernel extension."""
    import kernel_ext

    kernel_ext.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext agentnb``."""
    import kernel_ext

    kernel_ext.unload_ipython_extension(ipython)
