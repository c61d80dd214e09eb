"""The floor: a bare grpcio server that echoes raw bytes, and its client.

It does the least a gRPC server can do for a call (a unary method whose
request and response are the same ``bytes``, no protobuf, no pickle, no
interceptor), so agentnb's figures divided by its figures say what agentnb
adds on top of the transport. Its ``PingPong`` method is the same echo on a
bidirectional stream kept open: one message each way per round, the least a
call on an open stream (as agentnb's calls travel, on one Session stream per
server) can cost. Run as ``python -m agentnb.bench.floor``: it
prints its port on stdout and exits when its stdin closes (so it never
outlives the benchmark).
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc

SERVICE = "agentnb.bench.Floor"
METHOD = f"/{SERVICE}/Echo"
PING_PONG = f"/{SERVICE}/PingPong"
OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def _ping_pong(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    yield from requests


def serve(host: str = "127.0.0.1", port: int = 0, workers: int = 16) -> tuple[grpc.Server, int]:
    """Start the echo server in this process; return it and its port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=OPTIONS)
    # No (de)serializers: the handler gets and returns the raw bytes.
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "PingPong": grpc.stream_stream_rpc_method_handler(_ping_pong),
    })
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


class FloorClient:
    """A channel to the floor server and the measurements taken on it."""

    def __init__(self, host: str, port: int) -> None:
        self._channel = grpc.insecure_channel(f"{host}:{port}", options=OPTIONS)
        self._echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(METHOD)
        self._ping_pong: grpc.StreamStreamMultiCallable[bytes, bytes] = self._channel.stream_stream(PING_PONG)
        grpc.channel_ready_future(self._channel).result(timeout=30)

    def echo(self, data: bytes, timeout: float | None = None) -> bytes:
        """One unary echo of ``data`` in one message."""
        return self._echo(data, timeout=timeout)

    def latencies(self, calls: int, payload: bytes = b"x" * 32) -> list[float]:
        """Seconds taken by each of ``calls`` sequential echoes (the W3 floor)."""
        out = []
        echo = self._echo
        for _ in range(calls):
            start = time.perf_counter()
            echo(payload)
            out.append(time.perf_counter() - start)
        return out

    def stream_latencies(self, calls: int, payload: bytes = b"x" * 32, warm: int = 50) -> list[float]:
        """Seconds taken by each of ``calls`` rounds on one open bidi stream (the W3 stream floor).

        The stream is opened, and ``warm`` rounds run, before timing: a round is
        one message sent and its echo read, as a sync call on an open Session
        stream is one Call sent and its Reply read.
        """
        outbox: queue.SimpleQueue = queue.SimpleQueue()
        stream = self._ping_pong(iter(outbox.get, None))
        out = []
        try:
            for _ in range(warm):
                outbox.put(payload)
                next(stream)
            for _ in range(calls):
                start = time.perf_counter()
                outbox.put(payload)
                next(stream)
                out.append(time.perf_counter() - start)
        finally:
            outbox.put(None)  # ends the request stream: the server's handler returns
            stream.cancel()
        return out

    def threaded_rate(self, calls: int, threads: int = 4, payload: bytes = b"x" * 32) -> float:
        """Calls per second of ``calls`` echoes made by ``threads`` threads (the W4 floor)."""
        echo = self._echo
        per_thread = calls // threads
        barrier = threading.Barrier(threads + 1)
        errors: list[BaseException] = []

        def work() -> None:
            barrier.wait()
            try:
                for _ in range(per_thread):
                    echo(payload)
            except BaseException as exc:  # reported below, on the caller's thread
                errors.append(exc)

        workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        barrier.wait()
        start = time.perf_counter()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
        return per_thread * threads / elapsed

    def close(self) -> None:
        self._channel.close()


def main(argv: list[str] | None = None) -> int:
    """Serve until stdin closes; the first line on stdout is the port."""
    parser = argparse.ArgumentParser(prog="python -m agentnb.bench.floor", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args(argv)
    server, port = serve(args.host, args.port, args.workers)
    print(port, flush=True)
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    server.stop(0)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
