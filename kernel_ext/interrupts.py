"""What interrupting a cell does to the agentnb calls it made.

An interrupted cell ends with KeyboardInterrupt (it was blocked in
``res.result()``, ``agentnb.wait``, ...) or, when it was awaiting, with
CancelledError (ipykernel's way; see :mod:`kernel_ext.loop_waker`). Its calls
would go on regardless: the ones not started yet are cancelled here, all at
once, and instead of the traceback of agentnb's waiting frames the cell shows
one line: how many calls were cancelled, which still run where, and how to
stop them. An interrupt of a cell with no unfinished agentnb call is shown as
IPython shows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import agentnb
from agentnb import CANCELLED, FINAL_STATES, RUNNING, AsyncResult

_LOGGER = logging.getLogger(__name__)

INTERRUPTS = (KeyboardInterrupt, asyncio.CancelledError)
CALLS_NAMED = 3  # running calls named in the message, per server


class CellCalls:
    """Keeps the AsyncResults of the running cell (``agentnb.watch_results``), and
    turns an interrupt of the cell into the cancelling of its queued calls and a
    one-line report (an IPython custom exception handler)."""

    def __init__(self) -> None:
        self._installed: Any = None  # our handler, as the shell holds it
        self._previous: tuple[tuple[type, ...], Any] | None = None  # the shell's own, restored at unregister

    def register(self, ipython: Any) -> None:
        """Watch each cell's calls in ``ipython`` and report its interrupts."""
        agentnb.watch_results(True)
        ipython.events.register("pre_run_cell", self.forget)
        ipython.events.register("post_run_cell", self.forget)
        self._previous = (ipython.custom_exceptions, ipython.CustomTB)
        ipython.set_custom_exc((*INTERRUPTS, *ipython.custom_exceptions), self._show)
        self._installed = ipython.CustomTB

    def unregister(self, ipython: Any) -> None:
        """Undo :meth:`register` (harmless when it was not done)."""
        for event in ("pre_run_cell", "post_run_cell"):
            try:
                ipython.events.unregister(event, self.forget)
            except ValueError:  # was not registered
                pass
        if self._installed is not None and ipython.CustomTB is self._installed:  # (no one replaced it since)
            assert self._previous is not None
            ipython.custom_exceptions, ipython.CustomTB = self._previous
        self._installed = self._previous = None
        agentnb.watch_results(False)
        agentnb.new_results()

    @staticmethod
    def forget(*_: Any) -> None:
        """Drop the calls remembered so far (a cell starts or ended: they are no longer its)."""
        agentnb.new_results()

    def _show(self, shell: Any, etype: type[BaseException], value: BaseException, tb: Any,
              tb_offset: int | None = None) -> None:
        """Show an exception that ended a cell (IPython calls it for the exceptions registered)."""
        exc_tuple = (etype, value, tb)
        try:
            if isinstance(value, INTERRUPTS):
                message = interrupt_report(agentnb.new_results())
                if message is not None:
                    # IPython shows what an exception's _render_traceback_ returns in place of its traceback.
                    value._render_traceback_ = lambda: [message]  # type: ignore[union-attr]
                    shell.showtraceback(exc_tuple)
                    return
            previous = self._previous
            if previous is not None and previous[0] and isinstance(value, previous[0]):
                previous[1](etype, value, tb, tb_offset)  # the handler someone set before us
                return
        except BaseException:  # (a second interrupt, a broken server): IPython's own display then
            _LOGGER.warning("agentnb: cannot report the interrupted calls", exc_info=True)
        shell.showtraceback(exc_tuple, tb_offset=tb_offset, running_compiled_code=True)


def interrupt_report(results: Sequence[AsyncResult]) -> str | None:
    """Cancel the calls of ``results`` not started yet, and say so and what still runs where;
    None when every call has finished (then there is nothing to say)."""
    pending = [res for res in results if res.status not in FINAL_STATES]
    if not pending:
        return None
    try:
        agentnb.cancel(pending)
    except KeyboardInterrupt:  # interrupted again: report what the servers confirmed so far
        pass
    cancelled = sum(1 for res in pending if res.status == CANCELLED)
    running = [res for res in pending if res.status == RUNNING]
    unsettled = sum(1 for res in pending if res.status not in FINAL_STATES and res.status != RUNNING)
    parts = []
    if cancelled:
        parts.append(f"{_calls(cancelled)} of this cell cancelled before "
                     f"{'it' if cancelled == 1 else 'they'} started")
    if running:
        parts.append(_running(running, first=not parts))
    if unsettled:
        parts.append(f"{_calls(unsettled)} not cancelled (no answer from the server)")
    return "Interrupted: " + "; ".join(parts) + "."


def _calls(n: int) -> str:
    return f"{n} call{'s' if n != 1 else ''}"


def _server(res: AsyncResult, daemon: str | None) -> str:
    """How the message names the server of ``res``: a daemon's name quoted, else its label or address."""
    label = getattr(res.call_info, "server", "") or res.call_info.address
    name = daemon or (label if label != res.call_info.address and " " not in label else None)
    if name:
        return repr(name)
    return f"the {label}" if label.startswith("child server") else label


def _running(running: list[AsyncResult], first: bool) -> str:
    """``2 still running on 'lab' (W0.reply, W1.reply) and will finish there -- ...``."""
    names = _server_names()
    by_server: dict[str, list[AsyncResult]] = {}
    for res in running:
        by_server.setdefault(res.call_info.address, []).append(res)
    lead = f"{_calls(len(running))} of this cell still running" if first else f"{len(running)} still running"
    places = []
    for address, group in by_server.items():
        calls = list(dict.fromkeys(f"{r.call_info.agent}.{r.call_info.method}" for r in group))
        shown = ", ".join(calls[:CALLS_NAMED]) + (", ..." if len(calls) > CALLS_NAMED else "")
        places.append(f"on {_server(group[0], names.get(address))} ({shown})")
    if len(places) == 1:
        text = f"{lead} {places[0]}"
    else:
        text = f"{lead}: " + ", ".join(f"{len(group)} {place}" for group, place in zip(by_server.values(), places,
                                                                                         strict=True))
    daemons = [names[address] for address in by_server if address in names]
    if len(daemons) == len(by_server):
        hint = f"`%agent_server stop {' '.join(dict.fromkeys(daemons))}` stops {_them(len(running))}"
    else:  # a child server of this kernel, or one started by hand
        servers = "that server" if len(by_server) == 1 else "those servers"
        hint = f"stopping {servers} (a child server: restarting the kernel) stops {_them(len(running))}"
    return f"{text} and will finish there -- {hint}"


def _them(n: int) -> str:
    return "it" if n == 1 else "them"


def _server_names() -> dict[str, str]:
    """The daemons of this user by address: their name (their pool's, for a replica)."""
    try:
        return {record.address: record.pool or record.name for record in agentnb.DaemonRegistry().records()}
    except Exception:  # an unreadable runtime directory: the addresses will do
        return {}
