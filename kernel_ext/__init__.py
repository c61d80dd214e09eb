"""The IPython side of agentnb: the ``%agent_server`` magic, the daemon manager,
and prompt interrupts of cells that ``await``.

``%load_ext agentnb`` (see :func:`agentnb.load_ipython_extension`) lands in
:func:`load_ipython_extension` here. The daemon manager,
:class:`DaemonRegistry`, does not need IPython and can be used from any
Python program.
"""

from __future__ import annotations

from typing import Any

from kernel_ext.daemon_options import DaemonError, DaemonOptions
from kernel_ext.daemons import DaemonRegistry, DaemonStatus
from kernel_ext.loop_waker import LoopWaker

__all__ = [
    "DaemonError",
    "DaemonOptions",
    "DaemonRegistry",
    "DaemonStatus",
    "load_ipython_extension",
    "registry",
    "unload_ipython_extension",
]

_MAGIC_NAME = "agent_server"
_registry: DaemonRegistry | None = None
_waker = LoopWaker()


def registry() -> DaemonRegistry:
    """This process's daemon registry (the one ``%agent_server`` uses)."""
    global _registry
    if _registry is None:
        _registry = DaemonRegistry()
    return _registry


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%agent_server`` and make interrupts stop awaiting cells promptly
    (``%load_ext agentnb``; loading twice is harmless)."""
    from kernel_ext.magics import AgentServerMagics

    ipython.register_magics(AgentServerMagics(ipython, registry()))
    _waker.unregister(ipython)
    _waker.register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove ``%agent_server`` (``%unload_ext agentnb``).

    Daemons keep running, and agents keep going to the default daemon chosen
    before: only the magic goes away.
    """
    manager = ipython.magics_manager
    manager.magics["line"].pop(_MAGIC_NAME, None)
    manager.registry.pop("AgentServerMagics", None)
    _waker.unregister(ipython)
