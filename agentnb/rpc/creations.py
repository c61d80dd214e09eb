"""Objects created with ``to_dist`` whose creation nobody waited for: which failed, and telling someone.

``to_dist`` sends a creation and returns its proxy at once; the object's
``__init__`` runs later on its server. A failure is raised by the proxy's
first use. So that a failure nobody runs into is not silent:

- a notebook (``%load_ext agentnb``) turns :func:`watch_creations` on, and
  reports after each cell the failures of the objects that cell created
  (:func:`failed_creations`);
- elsewhere a failed creation nothing used is logged when the proxy goes or
  at exit (:meth:`CreationLedger.report_unseen`).

Each connection keeps a :class:`CreationLedger` of the creations it sent:
which are not answered yet (a process at exit, and ``list_agents``, wait for
them) and which failed without anyone being told why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentnb.rpc.future import CallFuture
    from agentnb.rpc.rpc_object import RpcObject

_LOGGER = logging.getLogger(__name__)

class CreationLedger:
    """The CREATE calls one connection sent: unanswered ones, and failed ones nobody was told of."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._unanswered: dict[CallFuture, bool] = {}  # the value: whether the object is detached
        self._unseen_failures: dict[CallFuture, str] = {}  # the value: what was created

    def track(self, future: CallFuture, label: str, detached: bool) -> None:
        """Follow a CREATE call until it is answered and, if it fails, until someone sees why."""
        with self._lock:
            self._unanswered[future] = detached
        future.add_callback(lambda answered: self._answered(answered, label))

    def _answered(self, future: CallFuture, label: str) -> None:
        if not future.done():
            return
        with self._lock:
            self._unanswered.pop(future, None)
            if future.failed:
                self._unseen_failures[future] = label

    def seen(self, future: CallFuture) -> bool:
        """Someone is told why a creation failed; whether nobody was before."""
        with self._lock:
            return self._unseen_failures.pop(future, None) is not None

    def report_unseen(self, futures: Sequence[CallFuture] | None = None) -> None:
        """Log the failed creations (of ``futures``, or all) that nobody was told about:
        an object created and never used must not fail in silence."""
        with self._lock:
            keys = list(self._unseen_failures) if futures is None else [f for f in futures
                                                                           if f in self._unseen_failures]
            taken = [(future, self._unseen_failures.pop(future)) for future in keys]
        for future, label in taken:
            if future.error is not None:  # the transport's: the answer was lost, the object may exist
                _LOGGER.warning("the answer to the creation of %s on the agent server at %s was lost (%s), and "
                                "nothing used it since to ask again", label, self.address, future.error)
                continue
            try:
                future.outcome(self.address, label)
            except Exception as error:
                _LOGGER.warning("%s was not created on the agent server at %s, and nothing used it: %s: %s",
                                label, self.address, type(error).__name__, error)

    def wait(self, deadline: float | None = None, detached_only: bool = False) -> None:
        """Wait until the server answered every creation sent so far (or only those of
        detached objects; or until ``deadline``, a ``time.monotonic()`` time)."""
        with self._lock:
            futures = [future for future, detached in self._unanswered.items() if detached or not detached_only]
        for future in futures:
            future.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))


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
        if creating is not None and creating.wait() and proxy._conn.creations.seen(creating):
            try:
                proxy._created()
            except Exception as exc:
                error = exc
        yield proxy._short_class(), error
