"""Names a package exports but imports only on first use (PEP 562).

A script pays for grpc, the model wrappers or the server side only when it
uses them, and a child-mode script can start its agent server before the
client side is loaded.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for ``package``: the names of ``table``
    (name -> module) are imported from their module on first use, then kept."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
