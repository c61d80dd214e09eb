"""The server side: the servicer, its result pools, the launcher and the CLI.

Its names are imported on first use: a child server (``python -m
agentnb.server``) loads only what it runs.
"""

from __future__ import annotations

from agentnb import lazy_exports

# A server that cannot start writes this and its error as JSON on its ready pipe
# (``--ready-fd``) instead of its port. Here, not in the CLI, so that the
# process reading the pipe needs no more than this package's ``__init__``.
START_ERROR_PREFIX = "error "

__all__ = ["AgentServer", "LocalResultPool", "ResultPool", "RpcAgentServerLauncher"]

_LAZY = {
    "AgentServer": "agentnb.server.agent_server",
    "LocalResultPool": "agentnb.server.result_pool",
    "ResultPool": "agentnb.server.result_pool",
    "RpcAgentServerLauncher": "agentnb.server.launcher",
}


__getattr__ = lazy_exports(__name__, _LAZY)
