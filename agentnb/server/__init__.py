"""The server side: the servicer, its result pools, the launcher and the CLI."""

from agentnb.server.agent_server import AgentServer
from agentnb.server.launcher import RpcAgentServerLauncher
from agentnb.server.result_pool import LocalResultPool, ResultPool

__all__ = ["AgentServer", "LocalResultPool", "ResultPool", "RpcAgentServerLauncher"]
