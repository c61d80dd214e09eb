"""The client side: RpcMeta, async_func/sync_func, RpcObject, AsyncResult."""

from agentnb.rpc.async_result import AsyncResult
from agentnb.rpc.rpc_meta import RpcMeta, async_func, sync_func
from agentnb.rpc.rpc_object import RpcObject

__all__ = ["AsyncResult", "RpcMeta", "RpcObject", "async_func", "sync_func"]
