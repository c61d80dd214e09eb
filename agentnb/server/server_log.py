"""The server's log: one line per event (time, level, message), on the server's standard output.

Every module of the server logs to a logger of the ``agentnb.server`` hierarchy;
``--log-level`` sets the level of ``agentnb`` (INFO unless told). At INFO the log
has the server's start and stop (and why), its clients coming and going, agents
created and deleted, and every call that failed or was cancelled (see
:mod:`agentnb.server.call_events`); DEBUG adds every successful call. Other
code's records (an agent's own ``logging``, libraries) appear from WARNING up,
and at DEBUG all of them (e.g. a model client's HTTP requests).

A daemon's standard output and error go to its log file, so the log is written
once, to standard output: a print of an agent's code and the server's lines
stay in the order they happened.
"""

from __future__ import annotations

import logging
import sys

from agentnb.launch.command import check_log_level

LINE_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SERVER_LOGGER = "agentnb.server"


def line_formatter() -> logging.Formatter:
    """The format of a server log's lines: ``2025-01-31 14:02:03.456 INFO message``."""
    return logging.Formatter(LINE_FORMAT, TIME_FORMAT)


def configure_process_log(level: str) -> None:
    """Make this process's log the server's: its lines on standard output, agentnb's at ``level``.

    For a process that is only a server (``python -m agentnb.server``). Raises
    ValueError for a level not in :data:`agentnb.launch.command.LOG_LEVELS`.
    """
    level = check_log_level(level)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(line_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level)
    root.setLevel(numeric if numeric == logging.DEBUG else max(logging.WARNING, numeric))
    logging.getLogger("agentnb").setLevel(level)


def configure_server_log(level: str) -> None:
    """Log the ``agentnb.server`` records of this process at ``level`` (a server in a process of its user).

    The process's own logging is left as it is; when it has none (no handler
    anywhere), the server's lines go to standard error in the server log's format.
    """
    level = check_log_level(level)
    logger = logging.getLogger(SERVER_LOGGER)
    logger.setLevel(level)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(line_formatter())
        logger.addHandler(handler)
