"""ServerConnection: one channel and one session stream per server per process.

Every proxy and AsyncResult of this process that talks to a server shares its
connection. Calls are written to the session stream by gRPC's sending thread,
batched when many are queued; a reader thread completes each call's
CallFuture when the server pushes its reply.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import threading
import uuid
from collections.abc import Iterator

import grpc

from agentnb._proto import agentnb_pb2 as pb
from agentnb._proto import agentnb_pb2_grpc as pb_grpc
from agentnb.errors import (
    AgentServerError,
    AuthenticationError,
    ServerUnavailable,
    TaskNotFound,
)
from agentnb.rpc.future import CallFuture
from agentnb.runtime_dir import _canonical_host

_LOGGER = logging.getLogger(__name__)

TOKEN_METADATA_KEY = "agentnb-token"
ENV_TLS_CA = "AGENTNB_TLS_CA"
MAX_CALLS_PER_FRAME = 512
# Small calls share a frame; a large payload gets a frame to itself.
MAX_FRAME_BYTES = 4 * 2**20

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # Each connection its own TCP connection: a proxy in a server process must
    # not share a subchannel with that process's own clients.
    ("grpc.use_local_subchannel_pool", 1),
]

_CLOSE = object()


def map_rpc_error(error: grpc.RpcError, address: str) -> AgentServerError | TimeoutError:
    """Turn a gRPC error into the agentnb error a user can act on."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AuthenticationError(f"the agent server at {address} refused the token: {details}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return ServerUnavailable(f"the agent server at {address} is unavailable: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return TaskNotFound(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TimeoutError(f"no answer from the agent server at {address} in time")
    return AgentServerError(f"the agent server at {address} failed: {code.name if code else '?'}: {details}")


class _Session:
    """One Session stream: its outgoing queue and the calls awaiting a reply."""

    def __init__(self) -> None:
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.pending: dict[int, CallFuture] = {}
        self.dead = False


class ServerConnection:
    """The process's link to one agent server (get one with :meth:`get`)."""

    _instances: dict[tuple[str, int], ServerConnection] = {}
    _instances_pid = os.getpid()
    _instances_lock = threading.Lock()

    @classmethod
    def get(cls, host: str, port: int, token: str, tls_ca: str | None = None) -> ServerConnection:
        """The shared connection to ``host:port``, made on first use.

        ``tls_ca`` (or ``$AGENTNB_TLS_CA``): the PEM file of the CA that signed the
        server's certificate; the channel is then TLS.
        """
        tls_ca = tls_ca or os.environ.get(ENV_TLS_CA) or None
        key = (_canonical_host(host), int(port))
        with cls._instances_lock:
            if cls._instances_pid != os.getpid():  # forked: the parent's threads are gone
                cls._instances = {}
                cls._instances_pid = os.getpid()
            conn = cls._instances.get(key)
            if conn is None or conn._closed or conn.token != token or conn.tls_ca != tls_ca:
                conn = cls(key[0], key[1], token, tls_ca)
                cls._instances[key] = conn
            return conn

    @classmethod
    def close_all(cls) -> None:
        with cls._instances_lock:
            conns = list(cls._instances.values())
            cls._instances = {}
        for conn in conns:
            conn.close()

    def __init__(self, host: str, port: int, token: str, tls_ca: str | None = None) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.tls_ca = tls_ca
        self.address = f"{host}:{port}"
        self.client_id = uuid.uuid4().hex[:12]
        self._metadata = ((TOKEN_METADATA_KEY, token),)
        if tls_ca:
            with open(tls_ca, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            self._channel = grpc.secure_channel(self.address, credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.AgentServerStub(self._channel)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._closed = False
        self._dropped: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._delete_dropped, name=f"agentnb-janitor-{self.address}", daemon=True).start()

    def __repr__(self) -> str:
        return f"<ServerConnection {self.address}>"

    # -- calls on the session stream -------------------------------------------------

    def new_task_id(self) -> str:
        return f"{self.client_id}-{next(self._seq)}-{uuid.uuid4().hex[:8]}"

    def submit(self, kind: int, agent_id: str, method: str = "", payload: bytes = b"",
               task_id: str = "", watch: bool = False, waiting_chain: tuple[str, ...] = ()) -> CallFuture:
        """Send one call; return the future its reply will complete."""
        future = CallFuture()
        with self._lock:
            if self._closed:
                raise ServerUnavailable(f"the connection to {self.address} is closed")
            session = self._session
            if session is None or session.dead:
                session = self._open_session()
            seq = next(self._seq)
            session.pending[seq] = future
            session.outbox.put(pb.Call(seq=seq, kind=kind, agent_id=agent_id, method=method, payload=payload,
                                       task_id=task_id, watch=watch, waiting_chain=waiting_chain))
        return future

    def drop_agent(self, agent_id: str) -> None:
        """Delete an agent whose owning proxy was garbage-collected, in the background.

        Safe to call from ``__del__`` (any thread, any time): it only queues the id.
        """
        if self._closed:
            return
        self._dropped.put(agent_id)

    def _delete_dropped(self) -> None:
        while True:
            agent_id = self._dropped.get()
            if not agent_id or self._closed:
                return
            try:
                self.submit(pb.DELETE, agent_id)
            except Exception:  # the server is gone: so is the agent
                pass

    def _open_session(self) -> _Session:
        session = _Session()
        responses = self._stub.Session(self._frames(session), metadata=self._metadata)
        thread = threading.Thread(target=self._read, args=(session, responses),
                                  name=f"agentnb-reader-{self.address}", daemon=True)
        thread.start()
        self._session = session
        return session

    @staticmethod
    def _frames(session: _Session) -> Iterator[pb.ClientFrame]:
        outbox = session.outbox
        while True:
            call = outbox.get()
            if call is _CLOSE:
                return
            calls = [call]
            size = len(call.payload)
            while len(calls) < MAX_CALLS_PER_FRAME and size < MAX_FRAME_BYTES:
                try:
                    call = outbox.get_nowait()
                except queue.Empty:
                    break
                if call is _CLOSE:
                    yield pb.ClientFrame(calls=calls)
                    return
                calls.append(call)
                size += len(call.payload)
            yield pb.ClientFrame(calls=calls)

    def _read(self, session: _Session, responses: Iterator[pb.ServerFrame]) -> None:
        error: BaseException
        try:
            for frame in responses:
                for reply in frame.replies:
                    if reply.status in (pb.QUEUED, pb.RUNNING):
                        future = session.pending.get(reply.seq)
                    else:
                        future = session.pending.pop(reply.seq, None)
                    if future is not None:
                        future.set_reply(reply.status, reply.payload, reply.timestamp)
            error = ServerUnavailable(f"the agent server at {self.address} closed the connection")
        except grpc.RpcError as exc:
            error = map_rpc_error(exc, self.address)
        except Exception as exc:  # never leave callers waiting on a dead reader
            error = ServerUnavailable(f"the connection to {self.address} failed: {exc!r}")
        with self._lock:
            session.dead = True
            if self._session is session:
                self._session = None
            pending = list(session.pending.values())
            session.pending.clear()
        session.outbox.put(_CLOSE)
        for future in pending:
            future.set_local_error(error)

    # -- unary requests ------------------------------------------------------------------

    def _unary(self, method: str, request, timeout: float | None = None):
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as exc:
            raise map_rpc_error(exc, self.address) from None

    def get_result(self, task_id: str, timeout: float | None = None) -> pb.Reply:
        """Wait for the stored result of ``task_id`` (``timeout`` in seconds)."""
        request = pb.ResultRequest(task_id=task_id, timeout=timeout or 0.0)
        rpc_timeout = None if timeout is None else timeout + 10.0
        return self._unary("GetResult", request, rpc_timeout)

    def info(self, timeout: float | None = 10.0) -> pb.ServerInfo:
        return self._unary("GetInfo", pb.InfoRequest(), timeout)

    def list_agents(self, timeout: float | None = 30.0) -> list[pb.AgentDescription]:
        return list(self._unary("ListAgents", pb.ListAgentsRequest(), timeout).agents)

    def shutdown(self, grace: float = 5.0) -> None:
        self._unary("Shutdown", pb.ShutdownRequest(grace=grace), grace + 10.0)

    def close(self) -> None:
        """Close the stream and the channel; pending calls fail with ServerUnavailable."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session = self._session
        if session is not None:
            session.outbox.put(_CLOSE)
        self._dropped.put("")
        self._channel.close()


atexit.register(ServerConnection.close_all)
