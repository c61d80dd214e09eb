"""The seed's ``Example``: any class with ``metaclass=RpcMeta`` can be distributed.

    python agentnb/examples/example_class.py [--sleep 1]

``sync_method`` blocks its caller for ``--sleep`` seconds; the ``@async_func``
methods return an AsyncResult at once.
"""

from __future__ import annotations

import argparse
import time
from typing import cast

from agentnb import AsyncResult, RpcMeta, async_func

DEFAULT_SLEEP = 1.0


class Example(metaclass=RpcMeta):
    def __init__(self, sleep: float = DEFAULT_SLEEP) -> None:
        self.sleep = sleep

    # @sync_func  # Default is sync_func, can be omitted
    def sync_method(self) -> str:
        # Synchronous method, the caller is blocked for `sleep` seconds
        time.sleep(self.sleep)
        return "sync"

    @async_func
    def async_method_basic(self) -> str:
        # Asynchronous method: the caller goes on until it asks for the result
        time.sleep(self.sleep)
        # Return a basic type
        return "async"

    @async_func
    def async_method_composite(self) -> dict:
        # Asynchronous method
        time.sleep(self.sleep)
        # Return a dictionary
        return {"a": 1, "b": 2, "c": "hello world"}

    def _protected_method(self) -> str:
        # Not a public method: a distributed object refuses to call it
        time.sleep(self.sleep)
        return "protected"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The seed's Example class, distributed.")
    parser.add_argument("--sleep", type=float, default=DEFAULT_SLEEP, help="seconds each method takes")
    args = parser.parse_args()

    example = Example(sleep=args.sleep, to_dist=True)  # type: ignore[call-arg]  # RpcMeta.__call__ takes to_dist (mypy reads __init__)
    # Calling a protected method raises AttributeError before anything is sent
    # protected_result = example._protected_method()
    t1 = time.time()
    sync_result = example.sync_method()
    assert sync_result == "sync"
    t2 = time.time()
    print(f"Sync func cost: {t2 - t1} s")
    t3 = time.time()
    # A checker sees a proxy's calls as returning their values (see the typing guide): it is
    # told here that this one returns an AsyncResult.
    async_basic = cast("AsyncResult[str]", example.async_method_basic())
    async_composite = example.async_method_composite()
    t4 = time.time()
    print(f"Async func cost: {t4 - t3} s")
    # Basic type results need to call the result method to get the asynchronous execution result
    assert async_basic.result() == "async"
    # Composite types automatically update asynchronous execution results when accessing required fields
    assert async_composite["a"] == 1
    assert async_composite["b"] == 2
    assert async_composite["c"] == "hello world"
    print("all assertions passed")
