"""The seed's independent agent server for ``dist_main.py``.

    python agentnb/examples/dist_server.py [--port 12345]
    python agentnb/examples/dist_main.py --host localhost --port 12345

It serves until Ctrl-C (or SIGTERM). The server records its token in this
user's runtime directory, so ``dist_main.py`` run by the same user finds it.
"""

from __future__ import annotations

import argparse

import agentnb
from agentnb import RpcAgentServerLauncher

try:
    # Run as a script: dist_main.py is beside this file (a checker reads it as agentnb.examples.dist_main).
    from dist_main import WebAgent  # type: ignore[import-not-found]
except ImportError:  # imported as agentnb.examples.dist_server
    from agentnb.examples.dist_main import WebAgent

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the agent server of the web-agent example.")
    parser.add_argument("--port", type=int, default=12345, help="port to listen on (default: 12345)")
    args = parser.parse_args()
    agentnb.init(
        # model_configs=...  # model configurations, if the agents need any
    )
    assistant_server_launcher = RpcAgentServerLauncher(
        host="localhost",
        port=args.port,
        custom_agent_classes=[WebAgent],
    )
    assistant_server_launcher.launch(in_subprocess=False)
    print(f"agent server listening on localhost:{assistant_server_launcher.port}", flush=True)
    assistant_server_launcher.wait_until_terminate()
