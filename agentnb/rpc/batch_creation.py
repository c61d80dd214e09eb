"""create_many: many objects of one class created on servers at once.

``[Cls(name=f"P{i}", to_dist=target) for i in range(n)]`` does the same work
for every object: it reads ``to_dist``, finds the server and its connection,
and only then sends the creation. :func:`create_many` does that once, and
sends the creations one after another on the connection's session stream,
where they leave several hundred to a frame; their replies are read lazily,
as for ``to_dist``. A million objects cost a million small pickles and
messages, and nothing that grows faster than their number, in the caller or
on the servers (whose log counts them rather than naming each one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from agentnb.rpc.placement import DistOptions, creator
from agentnb.rpc.rpc_meta import prestart_child_for
from agentnb.wire import codec

T = TypeVar("T")


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

