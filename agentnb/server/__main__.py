"""``python -m agentnb.server [start] [options]``: run an agent server."""

import sys

from agentnb.server.cli import main

sys.exit(main(prog="python -m agentnb.server"))
