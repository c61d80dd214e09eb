"""Streams that never end, with or without the token, must not keep a server from its other callers."""

from __future__ import annotations

import threading
import time

import grpc
from agents_for_tests import Counter

from agentnb import __version__
from agentnb._proto import agentnb_pb2 as pb
from agentnb.wire.handshake import authenticate
from agentnb.wire.protocol import SERVICE

STREAMS = 100


def _idle(stop: threading.Event):  # noqa: ANN202
    """A request stream that sends nothing until ``stop``."""
    stop.wait()
    yield from ()


def test_a_server_answers_while_idle_streams_with_and_without_the_token_are_open(start_server) -> None:
    server = start_server("--capacity", "4")
    stop = threading.Event()
    channels = [grpc.insecure_channel(f"{server.host}:{server.port}", options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(4)]
    try:
        proofs = [authenticate(channel, server.token, "test", __version__) for channel in channels]
        streams = []
        for i in range(STREAMS):
            channel = channels[i % len(channels)]
            session = channel.stream_stream(f"/{SERVICE}/Session", request_serializer=lambda b: b)
            streams.append(session(_idle(stop), timeout=120))  # no proof: refused
            streams.append(session(_idle(stop), metadata=proofs[i % len(channels)], timeout=120))  # idle
        get_result = channels[0].unary_stream(f"/{SERVICE}/GetResult")
        request = pb.ResultRequest(task_id="000000000001-1-00000001", timeout=100).SerializeToString()
        streams += [get_result(request, metadata=proofs[0], timeout=120) for _ in range(STREAMS)]  # waiters

        started = time.monotonic()
        counter = Counter(to_dist=server.to_dist)  # a new client: its handshake, session and calls
        assert [counter.add(1) for _ in range(3)] == [1, 2, 3]
        took = time.monotonic() - started
        print(f"a new client's creation and 3 calls took {took * 1000:.1f} ms beside {3 * STREAMS} open streams")
        assert took < 10.0
    finally:
        stop.set()
        for channel in channels:
            channel.close()
