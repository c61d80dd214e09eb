"""The client side: RpcMeta, async_func/sync_func, RpcObject, AsyncResult.

Its names are imported on first use, so that importing one submodule (e.g.
:mod:`agentnb.rpc.rpc_meta`, all that defining an agent class needs) does not
load grpc.
"""

from __future__ import annotations

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


__getattr__ = lazy_exports(__name__, _LAZY)
