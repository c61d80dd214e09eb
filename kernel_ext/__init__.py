"""The IPython side of agentnb: the ``%agent_server`` magic, live widgets for
AsyncResults, the report of failed creations after each cell, prompt
interrupts of cells that ``await``, and what an interrupt does to a cell's calls.

``%load_ext agentnb`` (see :func:`agentnb.load_ipython_extension`) lands in
:func:`load_ipython_extension` here. Everything here is a view over agentnb's
public API (``agentnb.__all__``): the magic's commands are functions a script
can call too (``agentnb.start_server``, ``list_servers``, ``stop_server``, ...).
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import agentnb
from kernel_ext.interrupts import CellCalls
from kernel_ext.loop_waker import LoopWaker

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

_LOGGER = logging.getLogger(__name__)
_MAGIC_NAME = "agent_server"
_KERNEL_SHELL = "ZMQInteractiveShell"  # ipykernel's: the one with a widget frontend
_waker = LoopWaker()
_cell_calls = CellCalls()


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%agent_server``, make interrupts stop awaiting cells promptly
    (and cancel the calls of the interrupted cell not started yet), have async
    calls report when they are queued and running (:func:`agentnb.set_watch`),
    report at the end of a cell the objects it created whose ``__init__``
    failed, and, in a Jupyter kernel, show AsyncResults and progress as live
    widgets (``%load_ext agentnb``; loading twice is harmless)."""
    from kernel_ext.magics import AgentServerMagics

    ipython.register_magics(AgentServerMagics(ipython))
    _waker.unregister(ipython)
    _waker.register(ipython)
    _cell_calls.unregister(ipython)
    _cell_calls.register(ipython)
    agentnb.set_watch(True)
    agentnb.watch_creations(True)
    _unregister_event(ipython, "post_run_cell", report_failed_creations)
    ipython.events.register("post_run_cell", report_failed_creations)
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
    _cell_calls.unregister(ipython)
    agentnb.set_watch(False)
    agentnb.watch_creations(False)
    _unregister_event(ipython, "post_run_cell", report_failed_creations)
    if type(ipython).__name__ == _KERNEL_SHELL:
        try:
            from kernel_ext import widgets

            widgets.unregister(ipython)
        except Exception:  # they were never registered
            pass


def report_failed_creations(result: Any = None) -> None:
    """After each cell: wait for the objects the cell sent to agent servers with
    ``to_dist`` (which does not wait for ``__init__``), and print why any of
    them could not be created, in that cell's output. The proxy itself raises
    the same error when it is used."""
    created = agentnb.failed_creations()
    done = 0
    try:
        for label, error in created:
            done += 1
            if error is not None:  # (one the cell's own code ran into was raised there already)
                lines = traceback.format_exception_only(type(error), error)
                print(f"agentnb: {label} was not created; using its proxy raises:\n" + "".join(lines).rstrip(),
                      file=sys.stderr)
    except KeyboardInterrupt:  # the user stops waiting: the objects are still being made
        print(f"agentnb: interrupted; {len(created) - done} object(s) of this cell still being created "
              "(their first use waits for them)", file=sys.stderr)


def _unregister_event(ipython: Any, event: str, callback: Any) -> None:
    try:
        ipython.events.unregister(event, callback)
    except ValueError:  # not registered
        pass
