"""The message hub: in a group conversation, every participant hears what the others say.

``with agentnb.msghub(participants, announcement=msg) as hub:`` makes each
participant observe the announcement, then, for as long as the block runs,
each reply of a participant called as ``agent(x)`` (its ``__call__``), by the
other participants. Participants may be local agents or proxies to distributed
ones, mixed. The hub lives in the process that makes it and hears the calls
made there (see :mod:`agentnb.rpc.audience`):

* a distributed participant observes a message through an asynchronous
  ``observe`` call: nobody waits for it, and the message, if it is an
  AsyncResult (a distributed speaker's reply), travels as a reference that
  the listener's server resolves itself, so the reply never comes through this
  process. The listener's later calls run after its observation, so it answers
  knowing the message;
* a local participant observes a distributed speaker's reply in this
  process: ``speaker()`` then waits for the reply before it returns;
* the speaker is never asked to observe itself: participants are compared by
  agent (two proxies of one agent are the same participant, see
  :func:`agentnb.rpc.rpc_object.agent_identity`).

Since a distributed listener's observation is queued as soon as the speaker
is called, the listener takes no other call until the speaker has replied:
a speaker that calls another participant of its hub synchronously from its
reply waits on it for ever. Agents in a hub talk through the hub.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Iterable, Sequence
from types import TracebackType
from typing import Any

from agentnb.rpc import audience
from agentnb.rpc.async_result import AsyncResult
from agentnb.rpc.methods import ASYNC
from agentnb.rpc.rpc_object import RpcObject, agent_identity

_LOGGER = logging.getLogger(__name__)


class MsgHub:
    """A group conversation: see :func:`msghub`.

    Attributes:
        participants: the agents in the hub, in the order they joined.
        announcement: what each participant observes when the ``with`` block starts.
    """

    def __init__(self, participants: Sequence[Any], announcement: Any = None) -> None:
        self.participants: list[Any] = []
        self.announcement = announcement
        self._lock = threading.Lock()
        self._open = False
        # Observations sent to distributed participants and not known to be done: (listener, its
        # observe call, the message). Checked as the hub goes and waited for by wait().
        self._sent: list[tuple[RpcObject, AsyncResult[Any], Any]] = []
        self._failures: list[BaseException] = []
        self._join(_as_list(participants, "participants"))

    # -- the with block ----------------------------------------------------------------------

    def __enter__(self) -> MsgHub:
        with self._lock:
            if self._open:
                raise RuntimeError("this hub is already open (a hub is entered once at a time)")
            self._open = True
            for agent in self.participants:
                audience.listen(_key(agent), self._heard)
        if self.announcement is not None:
            self.broadcast(self.announcement)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            self._open = False
            for agent in self.participants:
                audience.stop_listening(_key(agent), self._heard)
        if exc_type is None:
            self.wait()

    # -- membership ------------------------------------------------------------------------

    def add(self, new_participant: Any | Sequence[Any]) -> None:
        """Add one participant or several; one already in the hub is skipped (with a log line).

        A participant added while the hub is open hears the messages that follow,
        not the announcement."""
        self._join(_as_list(new_participant, "new_participant"))

    def delete(self, participant: Any | Sequence[Any]) -> None:
        """Remove one participant or several; one not in the hub is skipped (with a log line)."""
        for agent in _as_list(participant, "participant"):
            with self._lock:
                index = _index(self.participants, agent)
                if index is None:
                    _LOGGER.warning("%s is not in the hub: not deleted", _label(agent))
                    continue
                gone = self.participants.pop(index)
                if self._open:
                    audience.stop_listening(_key(gone), self._heard)

    def _join(self, agents: list[Any]) -> None:
        for agent in agents:
            _check_participant(agent)
            with self._lock:
                if _index(self.participants, agent) is not None:
                    _LOGGER.warning("%s is already in the hub: not added again", _label(agent))
                    continue
                self.participants.append(agent)
                if self._open:
                    audience.listen(_key(agent), self._heard)

    # -- messages ----------------------------------------------------------------------------

    def broadcast(self, msg: Any) -> None:
        """Have every participant observe ``msg`` (a Msg, a list of them, or an AsyncResult)."""
        self._deliver(msg, list(self.participants))

    def _heard(self, speaker: Any, reply: Any) -> None:
        """A participant spoke: the others observe its reply."""
        listeners = [agent for agent in list(self.participants) if not _same(agent, speaker)]
        self._deliver(reply, listeners)

    def _deliver(self, msg: Any, listeners: Iterable[Any]) -> None:
        value: Any = _NOT_YET
        for listener in listeners:
            if isinstance(listener, RpcObject):
                observation = listener._invoke("observe", ASYNC, (msg,), {})
                with self._lock:
                    self._sent.append((listener, observation, msg))
                continue
            if value is _NOT_YET:
                value = _value_for_local(msg)
            if value is not _FAILED:
                listener.observe(value)
        self._check_sent(wait=False)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every participant has observed what was sent so far.

        Leaving the ``with`` block does this (unless the block raised).

        Raises:
            Exception: the first observation that failed (the participant's
                ``observe`` raised, or its server was lost). A message whose own
                call failed is not observed, and is not reported here: reading
                that call's result raises its error.
            TimeoutError: the observations did not all end within ``timeout``.
        """
        self._check_sent(wait=True, timeout=timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise failures[0]

    def _check_sent(self, wait: bool, timeout: float | None = None) -> None:
        """Forget the observations that ended, keeping their failures; with ``wait``, all of them."""
        with self._lock:
            sent, self._sent = self._sent, []
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = []
        for listener, observation, msg in sent:
            if wait:
                try:
                    error = observation.exception(None if deadline is None else max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    with self._lock:
                        self._sent[:0] = [item for item in sent if not item[1].done()]
                    raise
            elif observation.done():
                error = observation.exception()
            else:
                pending.append((listener, observation, msg))
                continue
            if error is not None and not _failed_message(msg):
                error.add_note(f"(when {_label(listener)} observed a message of the hub)")
                with self._lock:
                    self._failures.append(error)
        with self._lock:
            self._sent[:0] = pending

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<MsgHub {state}: {', '.join(_label(a) for a in self.participants)}>"


def msghub(participants: Sequence[Any], announcement: Any = None) -> MsgHub:
    """A group conversation: every message a participant produces is observed by the others.

    ``with msghub([alice, bob, carol], announcement=Msg("host", "Let us begin")) as hub:``
    has each participant observe the announcement; then, inside the block,
    ``alice(x)`` has ``bob`` and ``carol`` observe alice's reply (``alice``
    does not observe herself). ``hub.broadcast(msg)`` has all of them observe
    ``msg``; ``hub.add(dave)`` and ``hub.delete(bob)`` change who takes part.
    Leaving the block waits until every participant has observed what was said.

    Participants are agents with an ``observe`` method (``AgentBase``), local
    or distributed (proxies returned by ``to_dist``), mixed. A distributed
    speaker's reply reaches distributed listeners without passing through
    this process and without anyone waiting; a local listener needs the reply
    itself, so with one in the hub, calling a distributed participant waits
    for its reply.

    Args:
        participants: the agents taking part.
        announcement: a message (or a list of them) every participant observes
            when the block starts.
    """
    return MsgHub(participants, announcement)


# -- participants --------------------------------------------------------------------------------

_NOT_YET = object()
_FAILED = object()


def _as_list(agents: Any, what: str) -> list[Any]:
    if isinstance(agents, (str, bytes, dict)):
        raise TypeError(f"{what} must be an agent or a list of agents, not {type(agents).__name__}")
    if isinstance(agents, RpcObject) or not isinstance(agents, Iterable):
        return [agents]
    return list(agents)


def _check_participant(agent: Any) -> None:
    """A participant must be able to observe: a proxy whose class has ``observe``, or a local object with it."""
    if isinstance(agent, RpcObject):
        if "observe" in agent._methods:
            return
    elif callable(getattr(agent, "observe", None)):
        return
    raise TypeError(f"{_label(agent)} cannot take part in a message hub: it has no observe() method "
                    "(an agent must be an AgentBase, or define observe(x))")


def _key(agent: Any) -> Hashable:
    """The key under which ``agent`` is heard (see :mod:`agentnb.rpc.audience`)."""
    return agent_identity(agent) or id(agent)


def _same(a: Any, b: Any) -> bool:
    return a is b or _key(a) == _key(b)


def _index(agents: list[Any], agent: Any) -> int | None:
    return next((i for i, known in enumerate(agents) if _same(known, agent)), None)


def _label(agent: Any) -> str:
    if isinstance(agent, RpcObject):
        return repr(agent)
    name = getattr(agent, "name", None)
    return f"{type(agent).__name__} {name!r}" if isinstance(name, str) else repr(agent)


def _value_for_local(msg: Any) -> Any:
    """What a local participant observes of ``msg``: its value, waited for if it is on its way;
    _FAILED when that call failed (whoever reads its result sees why)."""
    try:
        if isinstance(msg, AsyncResult):
            return msg.result()
        if isinstance(msg, list) and any(isinstance(m, AsyncResult) for m in msg):
            return [m.result() if isinstance(m, AsyncResult) else m for m in msg]
    except Exception:
        return _FAILED
    return msg


def _failed_message(msg: Any) -> bool:
    """Whether ``msg`` is (or holds) the result of a call that failed."""
    items = msg if isinstance(msg, list) else [msg]
    return any(isinstance(m, AsyncResult) and m.done() and m.exception() is not None for m in items)
