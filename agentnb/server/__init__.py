"""The server side: the agent server and its servicer, its result stores, the launcher and the CLI.

Its names are imported on first use: a child server (``python -m
agentnb.server``) loads only what it runs.
"""

from __future__ import annotations

from agentnb.lazy import lazy_exports

__all__ = ["AgentServer", "LocalResultStore", "ResultStore", "RpcAgentServerLauncher"]

_LAZY = {
    "AgentServer": "agentnb.server.agent_server",
    "LocalResultStore": "agentnb.server.result_store",
    "ResultStore": "agentnb.server.result_store",
    "RpcAgentServerLauncher": "agentnb.server.launcher",
}


__getattr__ = lazy_exports(__name__, _LAZY)
