"""Objects created with ``to_dist`` whose creation nobody waited for: which failed, and telling someone.

``to_dist`` sends a creation and returns its proxy at once; the object's
``__init__`` runs later on its server. A failure is raised by the proxy's
first use. So that a failure nobody runs into is not silent:

- a notebook (``%load_ext agentnb``) turns :func:`watch_creations` on, and
  reports after each cell the failures of the objects that cell created
  (:func:`failed_creations`);
- elsewhere the connection logs a failed creation nothing used when the
  proxy goes or at exit (:meth:`agentnb.rpc.connection.ServerConnection.report_unseen_failures`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentnb.rpc.rpc_object import RpcObject

# Proxies created since the last take (a kernel reports the failed ones at the end
# of each cell); None where nobody watches (scripts).
_created: list[RpcObject] | None = None
_lock = threading.Lock()


def watch_creations(enabled: bool = True) -> None:
    """Remember the proxies created from now on (until turned off), for :func:`failed_creations`."""
    global _created
    with _lock:
        if not enabled:
            _created = None
        elif _created is None:
            _created = []


def note(proxy: RpcObject) -> None:
    """Remember a proxy just created (when someone watches)."""
    if _created is not None:  # swapped only under the lock: look again there
        with _lock:
            if _created is not None:
                _created.append(proxy)


def take() -> list[RpcObject]:
    """The proxies created since the last call (with :func:`watch_creations` on)."""
    global _created
    with _lock:
        if _created is None:
            return []
        taken, _created = _created, []
        return taken


class Creations:
    """The objects created since the last :func:`failed_creations` (``len()`` of them).

    Iterating waits for each creation's answer in turn and yields its class
    name and, if it failed and nobody was told yet, its error (else None).
    """

    def __init__(self, proxies: list[RpcObject]) -> None:
        self._proxies = proxies

    def __len__(self) -> int:
        return len(self._proxies)

    def __iter__(self) -> Iterator[tuple[str, BaseException | None]]:
        return unseen_failures(self._proxies)


def failed_creations() -> Creations:
    """The objects created since the last call (with :func:`watch_creations` on), to wait
    for and report the failed ones (see :class:`Creations`)."""
    return Creations(take())


def unseen_failures(proxies: Iterable[RpcObject]) -> Iterator[tuple[str, BaseException | None]]:
    """For each proxy in turn, once its creation is answered: its label, and the error
    of its creation if it failed and nobody was told yet (else None)."""
    for proxy in proxies:
        creating = proxy._creating
        error = None
        if creating is not None and creating.wait() and proxy._conn.creation_seen(creating):
            try:
                proxy._created()
            except Exception as exc:
                error = exc
        yield proxy._short_class(), error
