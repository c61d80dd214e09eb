"""The IPython side of agentnb: %agent_server magics, the daemon manager, widgets."""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    """Register agentnb's magics (``%load_ext agentnb``)."""


def unload_ipython_extension(ipython: Any) -> None:
    """Undo :func:`load_ipython_extension`."""
