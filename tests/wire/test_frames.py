"""The wire without servers: large values as out-of-band buffers, in chunk frames that are the
protobuf frames of protos/agentnb.proto, reassembled whole; the payload limit; the client's
shared-memory directory."""

from __future__ import annotations

import os
import pickle

import cloudpickle
import pytest
from agents_for_tests import Box
from helpers_runtime import pattern

from agentnb import SerializationError
from agentnb._proto import agentnb_pb2 as pb
from agentnb.wire import codec, frames, shm

MIB = 2**20
CHUNK = frames.CHUNK_BYTES


def _through_the_wire(payload: codec.Encoded, seq: int = 7) -> codec.Encoded:
    """Send ``payload`` as a Call would go (frames, bytes), and reassemble it as a server does."""
    item = frames.outgoing(pb.Call(seq=seq, kind=pb.CALL, agent_id="a"), payload)
    incoming = frames.Reassembly()
    done = []
    for frame in frames.of_item(item, lambda calls: pb.ClientFrame(calls=calls)):
        done += incoming.receive(*frames.decode_client_frame(frames.encode_frame(frame)))
    assert len(done) == 1 and len(incoming) == 0
    return done[0][1]


def test_a_chunk_frame_is_the_protobuf_frame_of_that_chunk() -> None:
    data = pattern(3000)
    for seq in (0, 1, 300, 2**40):
        raw = frames.encode_frame(frames.Chunk(seq, memoryview(data)))
        assert raw == pb.ClientFrame(chunk=pb.Chunk(seq=seq, data=data)).SerializeToString()
        assert pb.ServerFrame.FromString(raw).chunk.data == data  # the same bytes in both directions
        calls, chunk = frames.decode_client_frame(raw)
        assert list(calls) == [] and chunk.seq == seq and bytes(chunk.data) == data
    # A frame protobuf wrote some other way (calls and a chunk) is read by protobuf.
    mixed = pb.ClientFrame(calls=[pb.Call(seq=3, method="m")], chunk=pb.Chunk(seq=3, data=b"xyz"))
    calls, chunk = frames.decode_client_frame(mixed.SerializeToString())
    assert [c.method for c in calls] == ["m"] and bytes(chunk.data) == b"xyz" and chunk.seq == 3


@pytest.mark.parametrize("size", [codec.OUT_OF_BAND_BYTES - 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
def test_values_around_the_chunk_size_come_back_whole(size: int) -> None:
    data = pattern(size)
    payload = codec.dumps(((data,), {}))
    assert isinstance(payload, codec.Payload) == (size >= codec.OUT_OF_BAND_BYTES)
    (back,), _ = codec.loads(_through_the_wire(payload))
    assert type(back) is bytes and back == data


def test_buffers_are_set_apart_once_and_keep_their_type() -> None:
    data, mutable = pattern(2 * MIB), bytearray(pattern(MIB, 1))
    long_list = list(range(300_000))  # its pickle is larger than a chunk: it is chunked too
    payload = codec.dumps({"a": data, "b": [data, mutable], "c": long_list})
    assert isinstance(payload, codec.Payload)
    assert sorted(len(b) for b in payload.buffers) == [MIB, 2 * MIB]  # `data` once, though it is there twice
    back = codec.loads(_through_the_wire(payload))
    assert back["a"] == data and back["b"][0] is back["a"]
    assert type(back["b"][1]) is bytearray and back["b"][1] == mutable
    back["b"][1][0] ^= 0xFF  # writable
    assert back["c"] == long_list


def test_chunks_that_do_not_fit_their_sizes_are_refused() -> None:
    incoming = frames.Reassembly()
    call = pb.Call(seq=5, part_sizes=[10])
    assert incoming.start(call) is None
    _, chunk = frames.decode_client_frame(frames.encode_frame(frames.Chunk(5, memoryview(b"x" * 11))))
    with pytest.raises(frames.PayloadError, match="do not match") as err:
        incoming.add(chunk)
    assert err.value.message.seq == 5 and len(incoming) == 0
    assert incoming.add(chunk) is None  # chunks of a refused call: dropped
    with pytest.raises(frames.PayloadError, match="MAX_PAYLOAD_BYTES"):
        incoming.start(pb.Call(seq=6, part_sizes=[codec.MAX_PAYLOAD_BYTES, 1]))


def test_an_importable_class_is_pickled_as_cloudpickle_would_and_a_local_one_by_value() -> None:
    value = (Box, (1,), {"n": 1})
    assert codec.dumps(value) == cloudpickle.dumps(value, protocol=codec.PROTOCOL)  # by reference, fast path

    class Local:  # not importable: travels by value, through cloudpickle
        def hello(self) -> str:
            return "hi"

    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(Local)  # plain pickle cannot: the class must go by value
    local = (Local, (), {})
    rebuilt, _, _ = codec.loads(codec.dumps(local))
    assert rebuilt().hello() == "hi"
    # Its code keeps the file it was written in (cloudpickle alone names it "<dynamic-code>"):
    # a failure in it is shown at its place in this file (see wire/tracebacks).
    assert rebuilt.hello.__code__.co_filename == __file__
    assert pickle.loads(cloudpickle.dumps(Local)).hello.__code__.co_filename == "<dynamic-code>"


def test_a_value_above_the_limit_is_refused_with_its_size(monkeypatch) -> None:
    monkeypatch.setattr(codec, "MAX_PAYLOAD_BYTES", 3 * MIB)
    with pytest.raises(SerializationError, match=r"an argument of f\(\) is \d+ bytes pickled, above the limit of "
                                                 r"3145728 bytes \(MAX_PAYLOAD_BYTES\)"):
        codec.dumps(((pattern(2 * MIB), pattern(2 * MIB, 1)), {}), "an argument of f()")


def test_a_client_writes_only_into_a_private_directory_of_its_own(tmp_path) -> None:
    assert shm.ShmDir.adopt(str(tmp_path)) is None  # not under /dev/shm
    assert shm.ShmDir.adopt(os.path.join(shm.SHM_ROOT, "agentnb-1-..")) is None
    made = shm.ShmDir.create()
    assert made is not None
    try:
        assert shm.ShmDir.adopt(made.path) is not None
        os.chmod(made.path, 0o755)
        assert shm.ShmDir.adopt(made.path) is None  # others could read it
    finally:
        made.close()
    assert not os.path.exists(made.path)
