"""Garbage straight to every RPC of the servicer: errors, never a fallen server or lost state."""

from __future__ import annotations

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentnb import AgentBase, __version__, async_func
from agentnb._proto import agentnb_pb2 as pb
from agentnb.wire.handshake import authenticate

UNARY = ("Hello", "GetResult", "GetInfo", "ListAgents")  # Shutdown is left out: a valid one would stop the server


class Ledger(AgentBase):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.entries: list[int] = []

    @async_func
    def record(self, value: int) -> int:
        self.entries.append(value)
        return sum(self.entries)

    def total(self) -> int:
        return sum(self.entries)


calls = st.builds(
    pb.Call,
    seq=st.integers(0, 2**64 - 1),
    kind=st.sampled_from([k for k in pb.CallKind.values() if k != pb.DELETE]) | st.integers(7, 2**31 - 1),
    agent_id=st.text(max_size=40),
    method=st.text(max_size=20) | st.sampled_from(["record", "total", "__call__", "_secret", "__init__"]),
    payload=st.binary(max_size=300),
    task_id=st.text(max_size=20),
    watch=st.booleans(),
    waiting_chain=st.lists(st.text(max_size=10), max_size=3),
)


def test_fuzzed_requests_leave_server_agents_and_results_intact(server):
    ledger = Ledger("ledger", to_dist=server.to_dist)
    stored = ledger.record(5)
    assert stored.result(timeout=30) == 5
    channel = grpc.insecure_channel(f"{server.host}:{server.port}")
    metadata = authenticate(channel, server.token, "test", __version__)
    unary = {name: channel.unary_unary(f"/agentnb.AgentServer/{name}") for name in UNARY}
    session = channel.stream_stream("/agentnb.AgentServer/Session")

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=st.binary(max_size=200), method=st.sampled_from(UNARY), frame_calls=st.lists(calls, max_size=4),
           target_ledger=st.booleans())
    def fuzz(raw: bytes, method: str, frame_calls: list[pb.Call], target_ledger: bool) -> None:
        try:
            unary[method](raw, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.UNAVAILABLE
        try:  # bytes that are not a ClientFrame end that stream with an error
            list(session(iter([raw]), metadata=metadata, timeout=10))
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.UNAVAILABLE
        for call in frame_calls:
            if target_ledger:
                call.agent_id = ledger.agent_id
        frame = pb.ClientFrame(calls=frame_calls).SerializeToString()
        try:
            replies = list(session(iter([frame]), metadata=metadata, timeout=10))
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
        else:
            for raw_reply in replies:
                reply_frame = pb.ServerFrame.FromString(raw_reply)
                assert all(r.status in pb.ReplyStatus.values() for r in reply_frame.replies)

    fuzz()
    channel.close()
    assert server.process.poll() is None
    assert ledger.total() == 5
    assert stored.result(timeout=30) == 5
    again = server.connection().get_result(stored.task_id, timeout=10)
    assert again.status == pb.OK
    assert ledger.record(1).result(timeout=30) == 6
