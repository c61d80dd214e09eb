"""Memory a caller can make a server take: little without the token, bounded with it."""

from __future__ import annotations

import grpc
import pytest
from agents_for_tests import Counter
from helpers_runtime import wait_for

from agentnb import __version__
from agentnb._proto import agentnb_pb2 as pb
from agentnb.wire import codec
from agentnb.wire.handshake import authenticate
from agentnb.wire.protocol import SERVICE

MiB = 2**20


def rss(pid: int) -> int:
    """Resident memory of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_an_unauthenticated_256_mib_request_costs_the_server_almost_nothing(start_server) -> None:
    server = start_server()
    before = rss(server.process.pid)
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(f"{server.host}:{server.port}", options=options) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(f"/{SERVICE}/GetInfo")(b"\0" * (256 * MiB), timeout=60)
    assert refused.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED)
    grown = rss(server.process.pid) - before
    print(f"server RSS grew by {grown / MiB:.1f} MiB")
    assert grown < 24 * MiB, f"the server took {grown / MiB:.0f} MiB for a request it refused"
    assert Counter(to_dist=server.to_dist).add(1) == 1  # and it serves its callers as before


def test_payloads_announced_at_once_are_bounded_per_session(start_server) -> None:
    """A few bytes announcing gigabytes: the second announcement is refused, the session goes on."""
    server = start_server()
    counter = Counter(to_dist=server.to_dist)
    args = codec.dumps(((1,), {}))
    calls = [pb.Call(seq=1, kind=pb.CALL, agent_id=counter.agent_id, method="add", part_sizes=[1200 * MiB]),
             pb.Call(seq=2, kind=pb.CALL, agent_id=counter.agent_id, method="add", part_sizes=[1200 * MiB]),
             pb.Call(seq=3, kind=pb.CALL, agent_id=counter.agent_id, method="add", payload=args)]
    with grpc.insecure_channel(f"{server.host}:{server.port}") as channel:
        session = channel.stream_stream(f"/{SERVICE}/Session")
        stream = session(iter([pb.ClientFrame(calls=calls).SerializeToString()]),
                         metadata=authenticate(channel, server.token, "test", __version__), timeout=30)
        replies: dict[int, pb.Reply] = {}
        for raw in stream:
            replies.update((reply.seq, reply) for reply in pb.ServerFrame.FromString(raw).replies)
            if 2 in replies and 3 in replies:
                stream.cancel()
                break
    assert replies[2].status == pb.ERROR
    assert "still awaited" in str(codec.decode_error(replies[2].payload, ""))
    assert replies[3].status == pb.OK  # the same session's next call runs
    assert rss(server.process.pid) < 512 * MiB
    wait_for(lambda: counter.add(0) >= 1, 30, what="the agent to answer")
