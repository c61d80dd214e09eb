"""The IPython side of agentnb: the ``%agent_server`` magic, the daemon manager,
live widgets for AsyncResults, and prompt interrupts of cells that ``await``.

``%load_ext agentnb`` (see :func:`agentnb.load_ipython_extension`) lands in
:func:`load_ipython_extension` here. The daemon manager,
:class:`DaemonRegistry`, does not need IPython and can be used from any
Python program.
"""

from __future__ import annotations

import logging
from typing import Any

from agentnb.rpc.rpc_object import set_watch
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

_LOGGER = logging.getLogger(__name__)
_MAGIC_NAME = "agent_server"
_KERNEL_SHELL = "ZMQInteractiveShell"  # ipykernel's: the one with a widget frontend
_registry: DaemonRegistry | None = None
_waker = LoopWaker()


def registry() -> DaemonRegistry:
    """This process's daemon registry (the one ``%agent_server`` uses)."""
    global _registry
    if _registry is None:
        _registry = DaemonRegistry()
    return _registry


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%agent_server``, make interrupts stop awaiting cells promptly,
    have async calls report when they are queued and running
    (:func:`agentnb.set_watch`), and, in a Jupyter kernel, show AsyncResults
    and progress as live widgets (``%load_ext agentnb``; loading twice is harmless)."""
    from kernel_ext.magics import AgentServerMagics

    ipython.register_magics(AgentServerMagics(ipython, registry()))
    _waker.unregister(ipython)
    _waker.register(ipython)
    set_watch(True)
    if type(ipython).__name__ == _KERNEL_SHELL:
        try:
            from kernel_ext import widgets

            widgets.register(ipython)
        except Exception:  # ipywidgets missing or broken: text reprs and progress lines
            _LOGGER.warning("agentnb: live widgets are off (ipywidgets cannot be used)", exc_info=True)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove ``%agent_server``, the widgets and the watching of states (``%unload_ext agentnb``).

    Daemons keep running, and agents keep going to the default daemon chosen
    before: only the magic, the widgets and the watching of states go away.
    """
    manager = ipython.magics_manager
    manager.magics["line"].pop(_MAGIC_NAME, None)
    manager.registry.pop("AgentServerMagics", None)
    _waker.unregister(ipython)
    set_watch(False)
    if type(ipython).__name__ == _KERNEL_SHELL:
        try:
            from kernel_ext import widgets

            widgets.unregister(ipython)
        except Exception:  # they were never registered
            pass
