"""The server side: the agent server and its servicer, its result stores, the launcher and the CLI.

Its names are imported on first use: a child server (``python -m
agentnb.server``) loads only what it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentnb.lazy import lazy_exports

__all__ = ["AgentServer", "LocalResultStore", "ResultStore", "RpcAgentServerLauncher"]

_LAZY = {
    "AgentServer": "agentnb.server.agent_server",
    "LocalResultStore": "agentnb.server.result_store",
    "ResultStore": "agentnb.server.result_store",
    "RpcAgentServerLauncher": "agentnb.server.launcher",
}


if TYPE_CHECKING:  # what the names below are, for a type checker (they are imported on first use)
    from agentnb.server.agent_server import AgentServer
    from agentnb.server.launcher import RpcAgentServerLauncher
    from agentnb.server.result_store import LocalResultStore, ResultStore
else:
    __getattr__ = lazy_exports(__name__, _LAZY)
