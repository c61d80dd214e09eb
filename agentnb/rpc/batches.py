"""Many objects at once: :func:`create_many` creates them, :func:`call_many` calls them all.

``[Cls(name=f"P{i}", to_dist=target) for i in range(n)]`` does the same work
for every object: it reads ``to_dist``, finds the server and its connection,
and only then sends the creation. :func:`create_many` does that once, and
sends the creations one after another on the connection's session stream,
where they leave several hundred to a frame; their replies are read lazily,
as for ``to_dist``. A million objects cost a million small pickles and
messages, and nothing that grows faster than their number, in the caller or
on the servers (whose log counts them rather than naming each one).

``[p.reply(x) for p in proxies]`` pickles ``x`` once per call; :func:`call_many`
pickles the arguments once for all the calls (a moderator asking a million
participants the same question), and hands them to each server's connection
a few hundred at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from agentnb.rpc import audience, rpc_object
from agentnb.rpc.async_result import AsyncResult
from agentnb.rpc.connection import ServerConnection
from agentnb.rpc.placement import DistOptions, creator
from agentnb.rpc.rpc_meta import prestart_child_for
from agentnb.rpc.rpc_object import RpcObject
from agentnb.wire import codec

T = TypeVar("T")

# call_many sends the calls to one server this many at a time (one lock and one look at the session each).
_CALLS_SENT_TOGETHER = 256


def create_many(cls: type[T], inits: Iterable[Mapping[str, Any] | tuple[Any, ...]], *, to_dist: Any = True,
                **common: Any) -> list[T]:
    """Create one object of ``cls`` on a server for each item of ``inits``; return their proxies, in order.

    Each item gives one object's constructor arguments: a dict of keyword
    arguments, or a tuple of positional ones; ``common`` keyword arguments go
    to every object (an item's own keyword arguments win). So
    ``create_many(Participant, [{"name": f"P{i}"} for i in range(n)], to_dist=server, max_value=100)``
    builds ``Participant(name=f"P{i}", max_value=100)`` for each ``i``.

    As with ``to_dist``, it returns once the creations are sent: an object
    whose ``__init__`` failed raises that error (naming the object) at its
    proxy's first use or :func:`agentnb.wait_created`, and the others are not
    affected. Works the same from a script, a notebook, or inside an agent
    (e.g. a moderator creating its participants in its own ``__init__``).

    Args:
        cls: the class of the objects (any picklable class).
        inits: one item per object: a dict of keyword arguments or a tuple of positional ones.
        to_dist: where, as the ``to_dist=`` argument of an RpcMeta class takes it: True
            (child mode, or the notebook's default server or pool), a ServerPool (each
            object on its least loaded replica), or a dict of ``host``, ``port``,
            ``token`` ... (see ``to_dist``).
        common: keyword arguments given to every object.

    Raises:
        TypeError: an item is neither a dict nor a tuple, or a wrong ``to_dist``.
        SerializationError: an item's arguments cannot be pickled (nothing after it is sent).
        ServerUnavailable: the server cannot be reached.
    """
    if not isinstance(cls, type):
        raise TypeError(f"create_many() takes a class first, not {type(cls).__name__}")
    options = DistOptions.parse(to_dist)
    prestart_child_for(to_dist)
    create = creator(options)
    proxies: list[Any] = []
    for number, item in enumerate(inits):
        args, kwargs = _arguments(item, common, number)
        payload = codec.dumps((cls, args, kwargs), f"{cls.__name__} or the constructor arguments of item {number}")
        name = kwargs.get("name", args[0] if args else None)
        proxies.append(create(cls, payload, name if isinstance(name, str) else None))
    return proxies


def _arguments(item: Mapping[str, Any] | tuple[Any, ...], common: dict[str, Any],
               number: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments of one object, from its item and the common keyword arguments."""
    if isinstance(item, Mapping):
        return (), {**common, **item}
    if isinstance(item, tuple):
        return item, common
    raise TypeError(f"create_many() item {number} is a {type(item).__name__}: give each object's constructor "
                    "arguments as a dict of keyword arguments or a tuple of positional ones")



def call_many(proxies: Iterable[Any], method: str, /, *args: Any, **kwargs: Any) -> list[AsyncResult[Any]]:
    """Call ``method(*args, **kwargs)`` on every proxy at once; return their AsyncResults, in order.

    The same as ``[getattr(p, method)(*args, **kwargs) for p in proxies]`` for an
    ``@async_func`` method, but the arguments are pickled once for all the calls
    (as they are now: changing them later reaches none of the calls), and every
    call returns an AsyncResult, a synchronous method's too: nothing waits here
    but for objects still being created. ``method="__call__"`` calls the objects
    themselves (``p(x)``), as a message hub hears them.

    Args:
        proxies: proxies returned by ``to_dist``, :func:`create_many` or ``get_agent``.
        method: the name of a public method of their objects (``"reply"``, ``"__call__"``).
        args, kwargs: the arguments of every call.

    Raises:
        TypeError: an item is not a proxy.
        AttributeError: ``method`` is not a public method of some proxy's object
            (nothing is sent to that one or the ones after it).
        SerializationError: the arguments cannot be pickled (nothing is sent).
        Exception: the ``__init__`` error of an object whose creation failed
            (the calls before it are sent).
    """
    targets = list(proxies)
    for number, proxy in enumerate(targets):
        if not isinstance(proxy, RpcObject):
            raise TypeError(f"call_many() takes proxies returned by to_dist(); item {number} is a "
                            f"{type(proxy).__name__}")
    payload = codec.dumps((args, kwargs), f"an argument of {method}()")
    results: list[AsyncResult[Any] | None] = [None] * len(targets)
    waiting: dict[ServerConnection, list[int]] = {}  # by connection: the calls checked, not yet sent

    def send(connection: ServerConnection, numbers: list[int]) -> None:
        sent = connection.submit_calls([targets[i]._agent_id for i in numbers], method, payload,
                                       watch=rpc_object.WATCH_STATES)
        for number, (task_id, future) in zip(numbers, sent, strict=True):
            proxy = targets[number]
            results[number] = AsyncResult(connection, task_id, future, agent=proxy._label(), method=method,
                                          policy=proxy._policy)
        numbers.clear()

    def send_waiting() -> None:
        for connection, numbers in waiting.items():
            if numbers:
                send(connection, numbers)

    try:
        for number, proxy in enumerate(targets):
            if proxy._creating is not None:
                send_waiting()  # (the calls before it need not wait for its creation)
                proxy._created()  # its methods are known once it exists; a failed creation raises here
            if method not in proxy._methods:
                raise AttributeError(f"{method!r} is not a public method of {proxy._short_class()}: "
                                     "call_many() calls methods a proxy may call")
            numbers = waiting.setdefault(proxy._conn, [])
            numbers.append(number)
            if len(numbers) >= _CALLS_SENT_TOGETHER:
                send(proxy._conn, numbers)
    finally:
        send_waiting()  # those checked before a failure are sent, as by a loop of calls
        if method == "__call__" and audience.LISTENERS:  # a message hub of this process may hear them speak
            for proxy, result in zip(targets, results, strict=True):
                if result is not None:
                    audience.spoke(proxy._identity(), proxy, result)
    return results  # type: ignore[return-value]  # (every item is set once no error was raised)
