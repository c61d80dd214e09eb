"""RpcMeta: the metaclass that lets any class's objects run on an agent server."""

from __future__ import annotations

import contextlib
import sys
import weakref
from abc import ABCMeta
from collections.abc import Callable
from types import FunctionType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

SYNC = "sync"
ASYNC = "async"
_KIND_ATTR = "_agentnb_call_kind"
_INIT_ARGS_ATTR = "_agentnb_init_args"


def async_func(func: F) -> F:
    """Mark a method as asynchronous: on a distributed object, calling it returns
    an :class:`AsyncResult` at once instead of waiting for the value."""
    setattr(func, _KIND_ATTR, ASYNC)
    return func


def sync_func(func: F) -> F:
    """Mark a method as synchronous (the default): the caller waits for the value."""
    setattr(func, _KIND_ATTR, SYNC)
    return func


def _marked_kind(attr: Any) -> str | None:
    func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
    return getattr(func, _KIND_ATTR, None)


def remote_methods(cls: type) -> dict[str, str]:
    """The methods a proxy of ``cls`` may call, each ``"sync"`` or ``"async"``.

    Public methods (and ``__call__`` where a class of the hierarchy defines it)
    count. A method overridden without a decorator keeps the kind its base class
    gave it, so ``reply`` stays asynchronous in every AgentBase subclass.
    """
    methods: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        for name, attr in vars(klass).items():
            if (name.startswith("_") and name != "__call__") or name == "to_dist":
                continue
            if not (isinstance(attr, FunctionType) or isinstance(attr, (staticmethod, classmethod))):
                methods.pop(name, None)  # a property or value shadows a base's method
                continue
            methods[name] = _marked_kind(attr) or methods.get(name, SYNC)
    return methods


_class_methods: weakref.WeakKeyDictionary[type, dict[str, str]] = weakref.WeakKeyDictionary()


def class_methods(cls: type) -> dict[str, str]:
    """:func:`remote_methods` of ``cls``, worked out once per class (for every proxy
    and hosted object of it: the dict is shared, nobody may change it)."""
    try:
        return _class_methods[cls]
    except (KeyError, TypeError):  # TypeError: a class that cannot be weakly referenced
        methods = remote_methods(cls)
        with contextlib.suppress(TypeError):
            _class_methods[cls] = methods
        return methods


def qualified_name(cls: type) -> str:
    """How proxies and servers name a class: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class RpcMeta(ABCMeta):
    """Gives a class ``to_dist()`` and the ``to_dist=`` constructor argument.

    * ``Cls(...)`` builds a local object, as always.
    * ``Cls(..., to_dist=True)`` builds it on a server instead (child mode, or the
      notebook's default daemon) and returns an :class:`RpcObject` proxy; the
      object is never built in the caller.
    * ``Cls(..., to_dist={"host": h, "port": p})`` builds it on that server.
    * ``obj.to_dist(...)`` re-creates a local object on a server from the
      arguments it was built with (state changed since is not carried).
    """

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, bases, namespace, **kwargs)
        # Only where no class of the hierarchy has one: a to_dist a base class
        # defines itself must not be replaced in its subclasses.
        if not any("to_dist" in vars(klass) for klass in cls.__mro__):
            cls.to_dist = _to_dist  # type: ignore[attr-defined]

    def __call__(cls, *args: Any, to_dist: Any = None, **kwargs: Any) -> Any:
        if to_dist is None or to_dist is False:
            obj = super().__call__(*args, **kwargs)
            try:
                object.__setattr__(obj, _INIT_ARGS_ATTR, (args, kwargs))
            except (AttributeError, TypeError):  # __slots__ without room for it
                pass
            return obj
        _prestart_child_server(to_dist)
        from agentnb.rpc.placement import DistOptions, create_remote

        return create_remote(cls, args, kwargs, DistOptions.parse(to_dist))


def _to_dist(self: Any, host: str | None = None, port: int | str | None = None, **options: Any) -> Any:
    """Move this object to an agent server; return the proxy to use from now on.

    Returns once the creation is sent: the proxy's first use waits for the
    object, and raises what its ``__init__`` raised there.

    Without ``host``/``port``: child mode (or the notebook's default daemon).
    With them: the server already running there (independent mode). Further
    options: ``token`` (else the environment or the runtime directory gives it).
    """
    init_args = getattr(self, _INIT_ARGS_ATTR, None)
    if init_args is None:
        raise TypeError(f"{type(self).__name__} object was not built through its class; cannot re-create it remotely")
    opts = dict(options)
    if host is not None:
        opts["host"] = host
    if port is not None:
        opts["port"] = port
    args, kwargs = init_args
    _prestart_child_server(opts or True)
    from agentnb.rpc.placement import DistOptions, create_remote

    return create_remote(type(self), args, kwargs, DistOptions.parse(opts or True))


def _prestart_child_server(to_dist: Any) -> None:
    """For an object bound to a child server, have that server start now.

    It then boots (its interpreter, its imports) while this process loads
    the client side (placement, grpc, the protocol: imported on first
    ``to_dist``) and pickles the object, instead of after.
    """
    if to_dist is not True:  # an address or a pool: no child
        return
    placement = sys.modules.get("agentnb.rpc.placement")  # a default pool can only be set through it
    if placement is not None and placement.default_pool() is not None:
        return
    from agentnb.rpc.child_servers import prestart_child_server

    prestart_child_server()
