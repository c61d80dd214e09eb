"""The client side: RpcMeta, async_func/sync_func, RpcObject, AsyncResult.

Its names are imported on first use, so that importing one submodule (e.g.
:mod:`agentnb.rpc.rpc_meta`, all that defining an agent class needs) does not
load grpc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentnb.lazy import lazy_exports

__all__ = ["AsyncResult", "RpcMeta", "RpcObject", "async_func", "concurrent", "sync_func"]

_LAZY = {
    "AsyncResult": "agentnb.rpc.async_result",
    "RpcMeta": "agentnb.rpc.rpc_meta",
    "async_func": "agentnb.rpc.methods",
    "concurrent": "agentnb.rpc.methods",
    "sync_func": "agentnb.rpc.methods",
    "RpcObject": "agentnb.rpc.rpc_object",
}


if TYPE_CHECKING:  # what the names below are, for a type checker (they are imported on first use)
    from agentnb.rpc.async_result import AsyncResult
    from agentnb.rpc.methods import async_func, concurrent, sync_func
    from agentnb.rpc.rpc_meta import RpcMeta
    from agentnb.rpc.rpc_object import RpcObject
else:
    __getattr__ = lazy_exports(__name__, _LAZY)
