"""Large arguments and results on real servers: out-of-band buffers, sent in chunks (or, on one host,
through shared memory), both ways, everywhere a result goes. The codec and frames alone: wire/test_frames.py."""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
import subprocess
import sys
import threading
import uuid

import grpc
import pytest
from agents_for_tests import Worker
from helpers_runtime import pattern, script_env, wait_for
from redis_fixtures import RedisServer

from agentnb import AgentBase, AuthenticationError, TaskCancelled, __version__, async_func
from agentnb._proto import agentnb_pb2 as pb
from agentnb.rpc.connection import ServerConnection
from agentnb.wire import buffers, codec, frames, shm
from agentnb.wire.handshake import authenticate
from agentnb.wire.protocol import SERVICE

MIB = 2**20
CHUNK = frames.CHUNK_BYTES


class Blob:
    """A value rebuilt from its buffer without a copy, as a NumPy array is: it keeps the buffer it is given."""

    def __init__(self, buffer) -> None:
        self.buffer = buffer

    def __reduce_ex__(self, protocol: int):
        return Blob, (pickle.PickleBuffer(self.buffer),)


def _describe(blob: Blob) -> tuple[str, bool, str, str]:
    """The buffer's type, whether it is read-only, where its memory is ("shm": a payload segment), its digest."""
    view = memoryview(blob.buffer)
    return (type(blob.buffer).__name__, view.readonly, _memory_of(view), hashlib.sha256(view).hexdigest())


def _memory_of(view: memoryview) -> str:
    """"shm" when ``view`` is memory of a shared-memory payload segment mapped in this process, else "private"."""
    start = buffers.address_of(view)
    with open("/proc/self/maps") as maps:
        for line in maps:
            if f"{shm.SHM_ROOT}/agentnb-" in line:
                low, high = (int(end, 16) for end in line.split(None, 1)[0].split("-"))
                if low <= start and start + len(view) <= high:
                    return "shm"
    return "private"


class Store(AgentBase):
    """Takes and gives large values."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.buffer = bytearray()

    @async_func
    def fill(self, size: int, value: int) -> bytearray:
        """Fill the agent's own buffer in place, and return it."""
        if len(self.buffer) != size:
            self.buffer = bytearray(size)
        self.buffer[:] = bytes([value]) * size
        return self.buffer

    @async_func
    def digest_later(self, data: bytearray) -> str:
        return hashlib.sha256(data).hexdigest()

    def length(self, data: bytes) -> int:
        return len(data)

    def digest(self, data: bytes | bytearray) -> tuple[str, int, str]:
        return type(data).__name__, len(data), hashlib.sha256(data).hexdigest()

    def make(self, size: int, seed: int = 0) -> bytes:
        return pattern(size, seed)

    @async_func
    def make_later(self, size: int, seed: int = 0) -> bytes:
        return pattern(size, seed)

    @async_func
    def make_bytearray(self, size: int) -> bytearray:
        return bytearray(pattern(size))

    def reverse(self, data: bytearray) -> bytearray:
        data.reverse()  # a bytearray argument arrives writable
        return data

    def choke(self, data: bytes) -> None:
        raise ValueError(f"cannot digest {len(data)} bytes")

    def echo(self, value):
        return value

    def describe(self, blob: Blob) -> tuple[str, bool, str, str]:
        return _describe(blob)

    def bump(self, blob: Blob) -> str:
        """Change a buffer received writable, in place (its first byte + 1)."""
        blob.buffer[0] = (blob.buffer[0] + 1) % 256
        return hashlib.sha256(blob.buffer).hexdigest()

    def make_blob(self, size: int, seed: int = 0, writable: bool = False) -> Blob:
        data = pattern(size, seed)
        return Blob(bytearray(data) if writable else data)

    def mapped_files(self) -> list[str]:
        """The shared-memory payload files this server process has mapped now."""
        return _mapped_payload_files()

    def keep(self, blob: Blob) -> str:
        """Keep a value rebuilt on its argument's buffer (a view of a segment); its digest."""
        self.kept = blob
        return hashlib.sha256(blob.buffer).hexdigest()

    def kept_digest(self) -> str:
        return hashlib.sha256(self.kept.buffer).hexdigest()


# -- on real servers -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7])
def test_large_argument_and_result_both_ways(server, size: int) -> None:
    store = Store("s", to_dist=server.to_dist)
    data = pattern(size, seed=size)
    assert store.length(data) == size  # the argument only
    made = store.make(size, seed=size)  # the result only
    assert type(made) is bytes and made == data
    assert store.echo(data) == data  # both
    assert store.digest(bytearray(data)) == ("bytearray", size, hashlib.sha256(data).hexdigest())
    assert store.reverse(bytearray(data)) == bytearray(data[::-1])


def test_writable_buffers_travel_as_they_were_when_the_call_was_made(server) -> None:
    store = Store("s", to_dist=server.to_dist)
    size = 8 * CHUNK
    # An argument changed right after an async call: the call has the value it was made with.
    data = bytearray(b"\x01" * size)
    digest = store.digest_later(data)
    data[:] = b"\x02" * size
    assert digest.result(timeout=60) == hashlib.sha256(b"\x01" * size).hexdigest()
    # A result the agent changes later: the stored result keeps the value it had.
    first = store.fill(size, 1)
    assert first.result(timeout=60) == bytearray(b"\x01" * size)
    assert store.fill(size, 2).result(timeout=60) == bytearray(b"\x02" * size)
    assert pickle.loads(pickle.dumps(first.as_reference())).result(timeout=60) == bytearray(b"\x01" * size)


def test_many_large_calls_at_once_are_not_mixed_up(server) -> None:
    stores = [Store(f"s{i}", to_dist=server.to_dist) for i in range(3)]
    results = [stores[i % 3].make_later(2 * CHUNK + i, seed=i) for i in range(9)]
    small = [Worker("w", to_dist=server.to_dist).echo(i) for i in range(5)]  # small calls pass between them
    assert small == list(range(5))
    for i, res in enumerate(results):
        assert res.result(timeout=60) == pattern(2 * CHUNK + i, seed=i)


@pytest.mark.timeout(240)
def test_256_mib_round_trip(server) -> None:
    store = Store("big", to_dist=server.to_dist)
    data = pattern(256 * MIB, seed=256)
    back = store.echo(data)
    assert len(back) == len(data) and back == data
    del back
    assert store.length(b"small after big") == 15


def test_large_result_fetched_by_reference_and_by_another_server(two_servers) -> None:
    first, second = two_servers
    maker = Store("maker", to_dist=first.to_dist)
    reader = Store("reader", to_dist=second.to_dist)
    size = 4 * CHUNK + 3
    made = maker.make_later(size, seed=4)
    expected = ("bytes", size, hashlib.sha256(pattern(size, seed=4)).hexdigest())
    # The second server fetches the value from the first (GetResult, in chunks).
    assert reader.digest(made) == expected
    # A reference that travelled here asks the first server for it (GetResult) too.
    reference = pickle.loads(pickle.dumps(made))
    assert reference.result(timeout=60) == pattern(size, seed=4)
    stored = first.connection().get_result(made.task_id, timeout=30)
    assert stored.status == pb.OK and isinstance(stored.payload, codec.Payload)
    assert type(maker.make_bytearray(CHUNK + 1).result(timeout=60)) is bytearray


def test_large_results_in_the_redis_pool(start_server, redis_server: RedisServer) -> None:
    server = start_server("--pool-type", "redis", "--redis-url", redis_server.url)
    store = Store("s", to_dist=server.to_dist)
    size = 3 * CHUNK + 11
    made = store.make_later(size, seed=9)
    assert made.result(timeout=60) == pattern(size, seed=9)
    fields = redis_server.client().hgetall(f"agentnb:default:task:{made.task_id}")
    assert fields[b"buffers"] == b"1" and fields[b"buffer:0"] == pattern(size, seed=9)
    reference = pickle.loads(pickle.dumps(made.as_reference()))  # read back from Redis, through GetResult
    assert reference.result(timeout=60) == pattern(size, seed=9)
    mutable = store.make_bytearray(CHUNK + 1)
    again = pickle.loads(pickle.dumps(mutable)).result(timeout=60)
    assert type(again) is bytearray and again == bytearray(pattern(CHUNK + 1))


def test_large_payloads_over_tls(start_server, tls_files) -> None:
    cert, key = tls_files
    server = start_server("--tls-cert", cert, "--tls-key", key)
    store = Store("s", to_dist={**server.to_dist, "tls_ca": cert})
    data = pattern(3 * CHUNK + 1, seed=3)
    assert store.echo(data) == data
    made = store.make_later(2 * CHUNK + 1, seed=5)
    assert pickle.loads(pickle.dumps(made)).result(timeout=60) == pattern(2 * CHUNK + 1, seed=5)


class _TouchOnUnpickle:
    """Unpickling this creates a file: proof that a payload was (or was not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_large_payload_to_a_server_with_another_token_is_refused_before_unpickling(server, tmp_path) -> None:
    marker = tmp_path / "unpickled"
    payload = codec.dumps((Store, (pattern(3 * CHUNK),), {"x": _TouchOnUnpickle(str(marker))}))
    assert isinstance(payload, codec.Payload)
    wrong = ServerConnection(server.host, server.port, "not-the-token")
    try:
        with pytest.raises(AuthenticationError):  # the server could not prove it holds this token: nothing is sent
            wrong.submit(pb.CREATE, "evil", payload=payload)
        with pytest.raises(AuthenticationError):
            wrong.get_result("0123456789ab-1-01234567", timeout=1)
    finally:
        wrong.close()
    assert not marker.exists(), "the server unpickled a payload from a caller with a wrong token"
    assert server.process.poll() is None
    assert Store("after", to_dist=server.to_dist).length(pattern(CHUNK + 1)) == CHUNK + 1


def test_a_failing_large_call_does_not_hurt_the_next_calls(server) -> None:
    store = Store("s", to_dist=server.to_dist)
    with pytest.raises(ValueError, match=f"cannot digest {2 * CHUNK + 1} bytes"):
        store.choke(pattern(2 * CHUNK + 1))
    assert store.echo(pattern(2 * CHUNK + 2)) == pattern(2 * CHUNK + 2)
    assert store.length(b"x") == 1


def test_a_queued_large_call_can_be_cancelled(server) -> None:
    worker = Worker("w", to_dist=server.to_dist)
    gate = uuid.uuid4().hex
    busy = worker.hold(gate, "held")
    queued = Store("s", to_dist=server.to_dist)
    # Calls to one agent run one at a time: this one waits behind `busy` (same agent).
    waiting = worker.hold(gate, pattern(3 * CHUNK))
    assert waiting.cancel()
    Worker("opener", to_dist=server.to_dist).release(gate)  # gates are per server process
    assert busy.result(timeout=30) == "held"
    with pytest.raises(TaskCancelled):
        waiting.result(timeout=30)
    assert queued.length(pattern(CHUNK)) == CHUNK


def test_sizes_that_do_not_add_up_fail_that_call_only(server) -> None:
    store = Store("s", to_dist=server.to_dist)
    args = codec.dumps(((b"fine",), {}))
    calls = [
        # Announces more than MAX_PAYLOAD_BYTES: refused at once, nothing is allocated.
        pb.Call(seq=1, kind=pb.CALL, agent_id=store.agent_id, method="length",
                part_sizes=[codec.MAX_PAYLOAD_BYTES + 1]),
        # Announces 10 bytes, then sends 11.
        pb.Call(seq=2, kind=pb.CALL, agent_id=store.agent_id, method="length", part_sizes=[10]),
        pb.Call(seq=3, kind=pb.CALL, agent_id=store.agent_id, method="length", payload=args),
    ]
    raw_frames = [pb.ClientFrame(calls=calls[:2]).SerializeToString(),
                  frames.encode_frame(frames.Chunk(2, memoryview(b"x" * 11))),
                  pb.ClientFrame(calls=calls[2:]).SerializeToString()]
    with grpc.insecure_channel(f"{server.host}:{server.port}") as channel:
        session = channel.stream_stream(f"/{SERVICE}/Session")
        replies: dict[int, pb.Reply] = {}
        metadata = authenticate(channel, server.token, "test", __version__)
        stream = session(iter(raw_frames), metadata=metadata, timeout=30)
        for raw in stream:
            for reply in pb.ServerFrame.FromString(raw).replies:
                replies[reply.seq] = reply
            if len(replies) == 3:
                stream.cancel()
                break
    assert replies[1].status == pb.ERROR and "MAX_PAYLOAD_BYTES" in str(codec.decode_error(replies[1].payload, ""))
    assert replies[2].status == pb.ERROR and "do not match" in str(codec.decode_error(replies[2].payload, ""))
    assert replies[3].status == pb.OK and codec.loads(replies[3].payload) == 4
    assert store.length(pattern(CHUNK + 1)) == CHUNK + 1


# -- the same-host fast path: shared memory ----------------------------------------------------


def _shm_dir(server) -> shm.ShmDir:
    """The server's private shared-memory directory, as its GetInfo announces it (``server``: a
    ServerProcess or a ServerConnection)."""
    info = (server if isinstance(server, ServerConnection) else server.connection()).info()
    assert info.host_id == shm.host_id() and info.shm_dir, "the server announced no shared-memory directory"
    found = shm.ShmDir.adopt(info.shm_dir)
    assert found is not None
    return found


class ShmTraffic:
    """Counts the payloads this process writes to and reads from shared-memory segments (the real ones do the work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent = self.received = 0
        self.segments: set[str] = set()  # the names of the segments written
        fill, read = shm._Segment.fill, shm.MappedSegments.read

        def counted_fill(segment, parts: list) -> None:
            fill(segment, parts)
            self.sent += 1
            self.segments.add(segment.name)

        def counted_read(segments: shm.MappedSegments, *args, **kwargs) -> list:
            parts = read(segments, *args, **kwargs)
            self.received += 1
            return parts

        monkeypatch.setattr(shm._Segment, "fill", counted_fill)
        monkeypatch.setattr(shm.MappedSegments, "read", counted_read)


@pytest.fixture
def traffic(monkeypatch: pytest.MonkeyPatch) -> ShmTraffic:
    return ShmTraffic(monkeypatch)


def test_same_host_payloads_go_through_shared_memory_and_leave_no_file(server, traffic: ShmTraffic) -> None:
    directory = _shm_dir(server)
    assert oct(os.stat(directory.path).st_mode & 0o777) == "0o700"
    store = Store("s", to_dist=server.to_dist)
    data = pattern(5 * CHUNK + 7, seed=1)
    assert store.echo(data) == data
    assert (traffic.sent, traffic.received) == (1, 1)  # the argument, the result
    assert store.reverse(bytearray(data)) == bytearray(data[::-1])  # writable parts stay writable
    made = store.make_later(3 * CHUNK, seed=2)
    assert made.result(timeout=60) == pattern(3 * CHUNK, seed=2)
    before = traffic.received
    stored = server.connection().get_result(made.task_id, timeout=30)  # GetResult: through a file too
    assert traffic.received == before + 1 and codec.loads(stored.payload) == pattern(3 * CHUNK, seed=2)
    assert directory.files() == []


def test_shared_memory_files_are_removed_after_failures_and_cancels(server) -> None:
    directory = _shm_dir(server)
    store = Store("s", to_dist=server.to_dist)
    with pytest.raises(ValueError, match=f"cannot digest {2 * CHUNK} bytes"):
        store.choke(pattern(2 * CHUNK))
    worker = Worker("w", to_dist=server.to_dist)
    gate = uuid.uuid4().hex
    busy = worker.hold(gate, "held")
    waiting = worker.hold(gate, pattern(3 * CHUNK))  # queued behind `busy`, its argument already taken
    assert waiting.cancel()
    Worker("opener", to_dist=server.to_dist).release(gate)
    assert busy.result(timeout=30) == "held"
    with pytest.raises(TaskCancelled):
        waiting.result(timeout=30)
    wait_for(lambda: not directory.files(), 30, "no payload file left in the shared-memory directory")


def test_a_result_file_its_reader_never_opens_is_removed_later(monkeypatch) -> None:
    """A GetResult whose reply went into a file nobody opened: the server removes the file itself."""
    from agentnb import RpcAgentServerLauncher
    from agentnb.server import servicer

    monkeypatch.setattr(servicer, "UNCLAIMED_FILE_SECONDS", 0.5)
    launcher = RpcAgentServerLauncher(host="127.0.0.1", port=None, capacity=4)  # in this process
    launcher.launch(in_subprocess=False)
    try:
        host, port, token = launcher.host, launcher.port, launcher.token
        directory = _shm_dir(ServerConnection.get(host, port, token))
        made = Store("s", to_dist={"host": host, "port": port, "token": token}).make_later(3 * CHUNK, seed=4)
        assert made.result(timeout=60) == pattern(3 * CHUNK, seed=4)
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            get_result = channel.unary_stream(f"/{SERVICE}/GetResult")
            request = pb.ResultRequest(task_id=made.task_id, timeout=30, shm_reply=True).SerializeToString()
            frames = list(get_result(request, metadata=authenticate(channel, token, "test", __version__), timeout=30))
        name = pb.ServerFrame.FromString(frames[0]).replies[0].shm_name
        assert name and name in directory.files()  # the reply named its file, which nobody opened
        wait_for(lambda: name not in directory.files(), 15, "the unclaimed file to be removed")
    finally:
        launcher.shutdown(grace=0)


_KILLED_CLIENT = """
import sys
from agents_for_tests import Worker
worker = Worker("doomed", to_dist={{"host": "127.0.0.1", "port": {port}, "token": {token!r}}})
print("ready", flush=True)
worker.hold({gate!r}, b"r" * (3 * 2**20)).result()  # its reply is large: written to shared memory after the kill
"""


def test_a_killed_client_leaves_no_shared_memory_file(server) -> None:
    directory = _shm_dir(server)
    gate = uuid.uuid4().hex
    script = _KILLED_CLIENT.format(port=server.port, token=server.token, gate=gate)
    client = subprocess.Popen([sys.executable, "-c", script], env=script_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "ready"
        connection = server.connection()
        # the held call is running (or the client died, which the assertion below names)
        wait_for(lambda: connection.info().busy >= 1 or client.poll() is not None, 30, what="the client's call")
        assert client.poll() is None, "the client's call never started"
    finally:
        client.kill()
        client.wait(10)
    Worker("opener", to_dist=server.to_dist).release(gate)  # the reply is made for a client that is gone
    wait_for(lambda: not connection.info().busy, 30, what="the server to be idle")
    wait_for(lambda: not directory.files(), 30, "no payload file left in the shared-memory directory")
    assert Store("after", to_dist=server.to_dist).length(pattern(CHUNK + 1)) == CHUNK + 1


def _raw_session(server, calls: list[pb.Call]) -> dict[int, pb.Reply]:
    """Send ``calls`` on a Session stream of their own; their replies, by seq."""
    with grpc.insecure_channel(f"{server.host}:{server.port}") as channel:
        session = channel.stream_stream(f"/{SERVICE}/Session")
        replies: dict[int, pb.Reply] = {}
        raw_frames = [pb.ClientFrame(calls=calls).SerializeToString()]
        metadata = authenticate(channel, server.token, "test", __version__)
        stream = session(iter(raw_frames), metadata=metadata, timeout=30)
        for raw in stream:
            for reply in pb.ServerFrame.FromString(raw).replies:
                replies[reply.seq] = reply
            if len(replies) == len(calls):
                stream.cancel()
                break
    return replies


def test_forged_shared_memory_names_are_refused(server, tmp_path) -> None:
    directory = _shm_dir(server)
    store = Store("s", to_dist=server.to_dist)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for the server" * 100)
    link = "ab" * 16  # a valid name, but a symbolic link to a file outside the directory
    os.symlink(secret, os.path.join(directory.path, link))
    names = ["../../../etc/passwd", str(secret), "ab" * 15 + "/x", "cd" * 16, link]
    calls = [pb.Call(seq=i + 1, kind=pb.CALL, agent_id=store.agent_id, method="length", shm_name=name,
                     part_sizes=[10]) for i, name in enumerate(names)]
    replies = _raw_session(server, calls)
    errors = [str(codec.decode_error(replies[i + 1].payload, "")) for i in range(len(names))]
    assert all(replies[i + 1].status == pb.ERROR for i in range(len(names)))
    for error in errors[:3]:
        assert "refused the shared-memory name" in error
    assert "cannot be opened" in errors[3] and "cannot be opened" in errors[4]
    assert secret.exists() and not os.path.lexists(os.path.join(directory.path, link))  # unlinked, not followed
    assert server.process.poll() is None
    assert store.echo(pattern(2 * CHUNK)) == pattern(2 * CHUNK)


def test_the_stream_is_used_when_shared_memory_is_off(start_server, monkeypatch, traffic: ShmTraffic) -> None:
    # Off in the server: it announces no directory, and payloads stream.
    server = start_server(extra_env={shm.ENV_SHM: "0"})
    assert server.connection().info().shm_dir == ""
    data = pattern(3 * CHUNK + 1, seed=7)
    assert Store("s", to_dist=server.to_dist).echo(data) == data
    # Off in the client: it does not even ask.
    other = start_server()
    assert other.connection().info().shm_dir
    monkeypatch.setenv(shm.ENV_SHM, "0")
    ServerConnection.close_all()
    assert Store("s", to_dist=other.to_dist).echo(data) == data
    assert (traffic.sent, traffic.received) == (0, 0)


def _mapped_payload_files() -> list[str]:
    """The payload files of agentnb server directories this process has mapped now (from /proc/self/maps)."""
    with open("/proc/self/maps") as maps:
        return [line.split(None, 5)[-1].strip() for line in maps if f"{shm.SHM_ROOT}/agentnb-" in line]


def test_values_rebuilt_from_their_buffer_are_views_of_the_mapped_file(server) -> None:
    """A value that rebuilds from a buffer (a NumPy array, here a Blob) gets a view of the mapped file: no copy.
    It outlives the file's name, reads right after many more calls, and its mapping goes with it."""
    directory = _shm_dir(server)
    store = Store("s", to_dist=server.to_dist)
    size = 3 * CHUNK + 5
    kept = store.make_blob(size, seed=5)
    assert type(kept.buffer) is memoryview and _memory_of(kept.buffer) == "shm"
    assert kept.buffer.readonly  # it was bytes
    assert directory.files() == []  # the name went when the file was opened; the mapping holds the memory
    assert _mapped_payload_files(), "the kept value's mapping is not there"
    for seed in range(20):  # many calls both ways: none leaves a file, none disturbs the kept value
        assert store.echo(pattern(2 * CHUNK, seed=seed)) == pattern(2 * CHUNK, seed=seed)
    assert directory.files() == []
    assert bytes(kept.buffer) == pattern(size, seed=5)
    connection = server.connection()
    connection.close()  # the stream ends: its segments are let go of, but the kept value keeps its memory
    wait_for(lambda: connection._session is None, 30, "the stream to end")
    assert bytes(kept.buffer) == pattern(size, seed=5) and _mapped_payload_files()
    del kept
    # The client's threads drop their own last references as they go on (a reader between two frames).
    wait_for(lambda: gc.collect() >= 0 and _mapped_payload_files() == [], 10,
             "the mapping to go with the last value that used it")


def test_writable_buffers_arrive_writable_and_their_changes_stay_theirs(server) -> None:
    store = Store("s", to_dist=server.to_dist)
    size = 2 * CHUNK + 1
    data = bytearray(pattern(size, seed=8))
    # The server's argument: a writable view of the mapped file, changed in place there.
    assert store.describe(Blob(data)) == ("memoryview", False, "shm", hashlib.sha256(data).hexdigest())
    changed = bytearray(data)
    changed[0] = (changed[0] + 1) % 256
    assert store.bump(Blob(data)) == hashlib.sha256(changed).hexdigest()
    assert data == pattern(size, seed=8)  # the caller's buffer is not the server's
    # The caller's result: writable too, and a change to it is its own.
    made = store.make_blob(size, seed=9, writable=True)
    assert type(made.buffer) is memoryview and not made.buffer.readonly
    made.buffer[:4] = b"abcd"
    assert bytes(made.buffer) == b"abcd" + pattern(size, seed=9)[4:]
    again = store.make_blob(size, seed=9, writable=True)
    assert bytes(again.buffer) == pattern(size, seed=9)
    # bytes and bytearray own their memory: they are copied out of the file, once, into their own type.
    assert type(store.echo(data)) is bytearray and type(store.echo(bytes(data))) is bytes


def test_a_server_keeps_no_mapping_of_a_client_that_left(server) -> None:
    store = Store("s", to_dist=server.to_dist)
    for seed in range(5):
        assert store.length(pattern(2 * CHUNK, seed=seed)) == 2 * CHUNK
        assert store.describe(Blob(pattern(2 * CHUNK, seed=seed)))[:3] == ("memoryview", True, "shm")
    assert 0 < len(store.mapped_files()) <= 2 * shm.POOL_SEGMENTS  # reused, not one per call
    server.connection().close()
    probe = Store("probe", to_dist=server.to_dist)  # on a new connection, with small calls only
    wait_for(lambda: probe.mapped_files() == [], 15, "the server to unmap the segments of the client that left")


def test_segments_are_reused_and_a_value_using_one_is_never_overwritten(server, traffic: ShmTraffic) -> None:
    """A segment is written again only once its reader is done with it: values rebuilt on it (here Blobs,
    as NumPy arrays are) stay as they were, on both sides, while payloads of the same size keep coming."""
    directory = _shm_dir(server)
    store = Store("s", to_dist=server.to_dist)
    size = 3 * CHUNK
    kept_here = store.make_blob(size, seed=1)  # a view of the server's reply segment, in this process
    kept_there = store.keep(Blob(pattern(size, seed=2)))  # a view of this process's call segment, in the server
    for seed in range(3, 23):
        data = pattern(size, seed=seed)
        assert store.echo(data) == data
        assert store.make(size, seed=seed) == data
    assert bytes(kept_here.buffer) == pattern(size, seed=1) and _memory_of(kept_here.buffer) == "shm"
    assert store.kept_digest() == kept_there == hashlib.sha256(pattern(size, seed=2)).hexdigest()
    assert traffic.sent == 21 and len(traffic.segments) <= 3  # 21 large calls from here: few segments, reused
    assert directory.files() == []


def test_large_calls_from_many_threads_on_one_connection_are_not_mixed_up(server) -> None:
    store = Store("s", to_dist=server.to_dist)
    size = 2 * CHUNK
    errors: list[str] = []

    def run(thread: int) -> None:
        for round_ in range(6):
            data = pattern(size, seed=100 * thread + round_)
            back = store.echo(data)
            if back != data:
                errors.append(f"thread {thread}, round {round_}: a different value came back")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads) and errors == []
    assert _shm_dir(server).files() == []


_POOLED_CLIENT = """
from agents_for_tests import Worker
from helpers_runtime import pattern
worker = Worker("pooled", to_dist={{"host": "127.0.0.1", "port": {port}, "token": {token!r}}})
for seed in range(3):
    assert worker.echo(pattern(3 * 2**20, seed)) == pattern(3 * 2**20, seed)
print("ready", flush=True)
input()
"""


def test_a_killed_client_leaves_no_file_and_no_mapping_in_the_server(server) -> None:
    directory = _shm_dir(server)
    script = _POOLED_CLIENT.format(port=server.port, token=server.token)
    client = subprocess.Popen([sys.executable, "-c", script], env=script_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "ready"
        probe = Store("probe", to_dist=server.to_dist)
        assert probe.mapped_files(), "the server keeps no segment of its client for reuse"
    finally:
        client.kill()
        client.wait(10)
    assert directory.files() == []
    wait_for(lambda: probe.mapped_files() == [], 30, "the server to unmap the segments of the killed client")


def test_idle_segments_are_let_go_of(start_server, monkeypatch) -> None:
    monkeypatch.setattr(shm, "IDLE_SECONDS", 0.5)
    monkeypatch.setattr(shm, "_SWEEP_SECONDS", 0.2)
    server = start_server(extra_env={shm.ENV_IDLE: "0.5"})
    store = Store("s", to_dist=server.to_dist)
    data = pattern(3 * CHUNK, seed=3)
    assert store.echo(data) == data
    # The connection stays open, idle: both sides retire their segments, and let go of the other's.
    wait_for(lambda: _mapped_payload_files() == [] and store.mapped_files() == [], 30,
             "both sides to let go of idle segments")
    assert store.echo(data) == data  # and new ones are made when needed
