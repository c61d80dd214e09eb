"""``agentnb.to_dist(obj_or_class, ...)``: distribute an object of any class, RpcMeta or not.

Classes of other libraries have a metaclass of their own, so they cannot take
``metaclass=RpcMeta``. This function does for them what ``RpcMeta`` does: an
object is sent as it is (its state included) and hosted on a server; a class is
built on the server from the arguments given. Either way the caller gets the
same proxy ``to_dist`` returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar, overload

from agentnb.rpc.methods import ASYNC, class_methods
from agentnb.rpc.rpc_meta import prestart_child_for
from agentnb.rpc.rpc_object import RpcObject

T = TypeVar("T")


# A type checker sees the proxy as an object of the class it stands for (as RpcMeta's to_dist
# returns it): RpcObject forwards what that class has. The constructor's arguments are not checked.
@overload
def to_dist(target: type[T], *args: Any, to_dist: Any = True, async_methods: Iterable[str] = (),
            **kwargs: Any) -> T: ...
@overload
def to_dist(target: T, *, to_dist: Any = True, async_methods: Iterable[str] = ()) -> T: ...
def to_dist(target: Any, *args: Any, to_dist: Any = True, async_methods: Iterable[str] = (),
            **kwargs: Any) -> Any:
    """Move an object of any picklable class to an agent server; return its proxy.

    ``agentnb.to_dist(obj)`` sends ``obj`` itself, as it is now (unlike
    ``obj.to_dist()``, which re-creates an RpcMeta object from its constructor
    arguments), and ``agentnb.to_dist(Cls, *args, **kwargs)`` builds
    ``Cls(*args, **kwargs)`` on the server only. The class keeps its own
    metaclass and base classes: nothing in its ``class`` statement changes.

    The proxy is the one ``to_dist`` returns for RpcMeta classes: public methods
    are synchronous (the caller waits for the value) unless marked
    ``@async_func`` or named in ``async_methods``; attribute reads are forwarded.

    Args:
        target: the object to send, or the class to build remotely.
        args, kwargs: the constructor's arguments (only with a class).
        to_dist: where, as the ``to_dist=`` argument of an RpcMeta class takes it:
            True (child mode, or the notebook's default server), a ServerPool, or a
            dict of ``host``, ``port``, ``token``, ``tls_ca``, ``pool``,
            ``max_timeout_seconds``, ``retry_strategy``.
        async_methods: names of public methods whose calls return an
            :class:`AsyncResult` at once, e.g. ``["reply"]``.

    Raises:
        TypeError: ``target`` is already a proxy, arguments given with an object,
            or a wrong ``to_dist``.
        ValueError: a name of ``async_methods`` is not a public method of the class.
        SerializationError: the object (or an argument) cannot be pickled.
    """
    if isinstance(target, RpcObject):
        return target.to_dist()  # refused, saying why
    cls = target if isinstance(target, type) else type(target)
    if not isinstance(target, type) and (args or kwargs):
        raise TypeError(f"agentnb.to_dist() takes constructor arguments with a class, not with a {cls.__name__} "
                        f"object, which travels as it is: agentnb.to_dist({cls.__name__}, *args, **kwargs)")
    from agentnb.rpc.placement import DistOptions, create_remote

    options = DistOptions.parse(to_dist)
    kinds = _chosen_kinds(cls, async_methods)
    if kinds:
        options = dataclasses.replace(options, method_kinds=kinds)
    prestart_child_for(to_dist)
    if isinstance(target, type):
        return create_remote(cls, args, kwargs, options)
    return create_remote(cls, (), {}, options, instance=target)


def _chosen_kinds(cls: type, async_methods: Iterable[str]) -> dict[str, str]:
    names = [async_methods] if isinstance(async_methods, str) else list(async_methods)
    methods = class_methods(cls)
    wrong = [name for name in names if name not in methods]
    if wrong:
        listed = ", ".join(sorted(methods)) or "none"
        raise ValueError(f"async_methods {', '.join(map(repr, wrong))}: {cls.__name__} has no public method of "
                         f"that name (its public methods: {listed})")
    return {name: ASYNC for name in names}
