"""Which methods of a class a proxy may call, and whether each waits (sync) or not (async).

``@async_func`` and ``@sync_func`` mark methods; :func:`class_methods` reads
the marks of a class's hierarchy once. Proxies, placement and servers share
this table, so a class's methods are worked out in one place.

``@concurrent`` marks a method its server may run beside the agent's other
calls; only the server reads that mark (:func:`concurrent_methods`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from types import FunctionType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

SYNC = "sync"
ASYNC = "async"
_KIND_ATTR = "_agentnb_call_kind"
_CONCURRENT_ATTR = "_agentnb_concurrent"


def async_func(func: F) -> F:
    """Mark a method as asynchronous: on a distributed object, calling it returns
    an :class:`AsyncResult` at once instead of waiting for the value."""
    setattr(func, _KIND_ATTR, ASYNC)
    return func


def sync_func(func: F) -> F:
    """Mark a method as synchronous (the default): the caller waits for the value."""
    setattr(func, _KIND_ATTR, SYNC)
    return func


def concurrent(func: F) -> F:
    """Let a method of a distributed object run beside the object's other calls.

    Each distributed object runs one call at a time, in arrival order. A call
    of a method marked ``@concurrent`` skips that queue: it runs on a free
    worker thread of its server at once, even while another call of the same
    object runs (e.g. a quick status read during a long ``reply``). The price
    is the race the actor model otherwise rules out: the method and the
    running call share the object's state with no lock, so it may see state
    half-updated, and what it writes may be lost to, or lose, the other
    call's writes. Mark only methods that read simple values or guard what
    they share with a lock. It still needs a free worker thread (the
    server's ``capacity``) and, being out of the queue, it may run before
    calls sent earlier. Combines with ``@async_func``; an override in a
    subclass must be marked again. Without ``to_dist`` it changes nothing.
    """
    setattr(func, _CONCURRENT_ATTR, True)
    return func


def _unwrapped(attr: Any) -> Any:
    return attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr


def _marked_kind(attr: Any) -> str | None:
    return getattr(_unwrapped(attr), _KIND_ATTR, None)


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


T = TypeVar("T")


def per_class(cache: weakref.WeakKeyDictionary[type, T], cls: type, make: Callable[[type], T]) -> T:
    """``make(cls)``, worked out once per class and kept in ``cache`` (shared: nobody may change it)."""
    try:
        return cache[cls]
    except (KeyError, TypeError):  # TypeError: a class that cannot be weakly referenced
        value = make(cls)
        with contextlib.suppress(TypeError):
            cache[cls] = value
        return value


_class_methods: weakref.WeakKeyDictionary[type, dict[str, str]] = weakref.WeakKeyDictionary()


def class_methods(cls: type) -> dict[str, str]:
    """:func:`remote_methods` of ``cls``, worked out once per class (for every proxy
    and hosted object of it: the dict is shared, nobody may change it)."""
    return per_class(_class_methods, cls, remote_methods)


_concurrent: weakref.WeakKeyDictionary[type, frozenset[str]] = weakref.WeakKeyDictionary()


def concurrent_methods(cls: type) -> frozenset[str]:
    """The methods of ``cls`` a proxy may call that are marked ``@concurrent``
    (where the class that defines the method last marks it), worked out once per class."""
    try:
        return _concurrent[cls]
    except (KeyError, TypeError):
        marked = frozenset(name for name in class_methods(cls)
                           if getattr(_unwrapped(_defining_attr(cls, name)), _CONCURRENT_ATTR, False))
        with contextlib.suppress(TypeError):
            _concurrent[cls] = marked
        return marked


def _defining_attr(cls: type, name: str) -> Any:
    """``name`` as the first class of ``cls.__mro__`` that defines it has it (undecorated by lookup)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def qualified_name(cls: type) -> str:
    """How proxies and servers name a class: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"
