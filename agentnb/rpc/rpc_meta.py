"""RpcMeta: the metaclass that lets any class's objects run on an agent server.

Which methods a proxy may call, and how, is :mod:`agentnb.rpc.methods`'s part.
"""

from __future__ import annotations

import sys
from abc import ABCMeta
from typing import Any

_INIT_ARGS_ATTR = "_agentnb_init_args"


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
            cls.to_dist = _to_dist

    def __call__(cls, *args: Any, to_dist: Any = None, **kwargs: Any) -> Any:
        if to_dist is None or to_dist is False:
            obj = super().__call__(*args, **kwargs)
            try:
                object.__setattr__(obj, _INIT_ARGS_ATTR, (args, kwargs))
            except (AttributeError, TypeError):  # __slots__ without room for it
                pass
            return obj
        prestart_child_for(to_dist)
        from agentnb.rpc.placement import DistOptions, create_remote

        return create_remote(cls, args, kwargs, DistOptions.parse(to_dist))


def _to_dist(self: Any, host: str | None = None, port: int | str | None = None, **options: Any) -> Any:
    """Move this object to an agent server; return the proxy to use from now on.

    Returns once the creation is sent: the proxy's first use waits for the
    object, and raises what its ``__init__`` raised there.

    Without ``host``/``port``: child mode (or the notebook's default daemon).
    With them: the server already running there (independent mode). Further
    options: ``token`` (else the environment or the runtime directory gives it),
    ``tls_ca``, ``pool``, ``max_timeout_seconds`` and ``retry_strategy``.
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
    prestart_child_for(opts or True)
    from agentnb.rpc.placement import DistOptions, create_remote

    return create_remote(type(self), args, kwargs, DistOptions.parse(opts or True))


def prestart_child_for(to_dist: Any) -> None:
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
    from agentnb.launch.child_servers import prestart_child_server

    prestart_child_server()
