"""Which methods of a class a proxy may call, and whether each waits (sync) or not (async).

``@async_func`` and ``@sync_func`` mark methods; :func:`class_methods` reads
the marks of a class's hierarchy once. Proxies, placement and servers share
this table, so a class's methods are worked out in one place.
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
