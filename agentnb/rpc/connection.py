"""ServerConnection: one channel and one session stream per server per process.

Every proxy and AsyncResult of this process that talks to a server shares its
connection. Calls are written to the session stream by gRPC's sending thread,
batched when many are queued; a reader thread completes each call's
CallFuture when the server pushes its reply. With a server on the same host,
large payloads go through its shared-memory directory (see :mod:`agentnb.wire.shm`).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

import agentnb
from agentnb._proto import agentnb_pb2 as pb
from agentnb._proto import agentnb_pb2_grpc as pb_grpc
from agentnb.errors import (
    AgentServerError,
    AuthenticationError,
    IntegrityError,
    ServerUnavailable,
    TaskNotFound,
)
from agentnb.rpc.creations import CreationLedger
from agentnb.rpc.future import CallFuture
from agentnb.runtime_dir import canonical_host, find_record, is_unix, server_address
from agentnb.runtime_home import server_display, server_label
from agentnb.wire import codec, frames, handshake, local_socket, shm
from agentnb.wire.ids import random_hex
from agentnb.wire.protocol import CLIENT_METADATA_KEY, ENV_TLS_CA, MAX_FRAME_BYTES, PROGRESS, SERVICE

_LOGGER = logging.getLogger(__name__)

MAX_CALLS_PER_FRAME = 512
HELLO_TIMEOUT = 60.0  # seconds a server may take to answer the handshake
NAME_TIMEOUT = 10.0  # seconds the GetInfo that learns an unrecorded server's name may take
NUDGE_INTERVAL = 0.005  # seconds: the interpreter's default switch interval (see submit)

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    # A server that stops answering (SIGSTOP, a frozen host) fails the waiting calls within 10-15 s.
    ("grpc.keepalive_time_ms", 5_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.ping_timeout_ms", 10_000),  # every ping, not only keepalive ones (default 60 s)
    # Each connection its own TCP connection: a proxy in a server process must
    # not share a subchannel with that process's own clients.
    ("grpc.use_local_subchannel_pool", 1),
]

_CLOSE = object()


def map_rpc_error(error: grpc.RpcError, server: str) -> AgentServerError | TimeoutError:
    """Turn a gRPC error into the agentnb error a user can act on.

    ``server`` names the server as :attr:`ServerConnection.display` does
    (``agent server 'lab' at unix:/…/lab.sock``).
    """
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AuthenticationError(f"the {server} refused the token: {details}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return ServerUnavailable(f"the {server} is unavailable: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return TaskNotFound(details)
    if code == grpc.StatusCode.DATA_LOSS:
        return IntegrityError(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TimeoutError(f"no answer from the {server} in time")
    return AgentServerError(f"the {server} failed: {code.name if code else '?'}: {details}")


def _make_client_frame(calls: list) -> pb.ClientFrame:
    return pb.ClientFrame(calls=calls)


@dataclass(frozen=True)
class StoredReply:
    """The final reply of a task, as :meth:`ServerConnection.get_result` returns it."""

    status: int  # an agentnb_pb2.ReplyStatus
    payload: codec.Encoded
    task_id: str
    timestamp: float


class _Session:
    """One Session stream: its outgoing queue and the calls awaiting a reply."""

    def __init__(self, shm_dir: shm.ShmDir | None) -> None:
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.pending: dict[int, CallFuture] = {}
        # Large replies whose chunks are on their way (or whose shared-memory file is read at once).
        self.incoming = frames.Reassembly(shm=shm_dir)
        self.shm_dir = shm_dir
        self.shm_pool = shm.SegmentPool(shm_dir) if shm_dir is not None else None  # segments for large calls
        self.shm_files: dict[int, str] = {}  # seq -> shared-memory file of a call not answered yet
        self.dead = False
        self.answered = False  # the server has sent something on this stream
        self.link: local_socket.Link | None = None  # the session socket, for a server on this host that has one

    def deliver(self, replies: Sequence[pb.Reply], chunk: frames.Chunk | None) -> None:
        """Complete the futures a frame answers (the reader thread's work).

        Here, not in the stream's deserializer on gRPC's channel thread: there
        the caller and that thread would wake at once and contend for the GIL.
        """
        pending = self.pending
        for reply, payload in self.incoming.receive(replies, chunk):
            if isinstance(payload, frames.PayloadError):  # a large reply that cannot be taken: only that call fails
                future = pending.pop(reply.seq, None)
                if future is not None:
                    future.set_local_error(payload)
                continue
            status = reply.status
            if status in PROGRESS:
                future = pending.get(reply.seq)
            else:
                future = pending.pop(reply.seq, None)
                if self.shm_files:  # the server took (and unlinked) the call's file before answering
                    self.shm_files.pop(reply.seq, None)
            if future is not None:
                future.set_reply(status, payload, reply.timestamp)

    def send(self, call: pb.Call, payload: codec.Encoded) -> None:
        """Queue ``call`` with ``payload`` (in a shared-memory file, remembered until answered, or
        followed by its chunks when large; see ``frames.outgoing``). With the connection's lock held."""
        item = frames.outgoing(call, payload, self.shm_pool)
        if call.shm_name:
            self.shm_files[call.seq] = call.shm_name
        self.outbox.put(item)

    def forget_file(self, seq: int) -> None:
        """Remove the shared-memory file of call ``seq`` if the server has not taken it (it was never read)."""
        name = self.shm_files.pop(seq, None)
        if name is not None and self.shm_dir is not None:
            self.shm_dir.remove(name)

    def forget_files(self) -> None:
        """Remove the files of all calls not answered and let go of the shared-memory segments (the session ended)."""
        for seq in list(self.shm_files):
            self.forget_file(seq)
        if self.shm_pool is not None:
            self.shm_pool.close()
        self.incoming.close()


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
        key = (canonical_host(host), int(port))
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
    def close_all(cls, settle: float = 0.0) -> None:
        """Close every connection, after waiting up to ``settle`` seconds in all for
        the creations of detached objects this process sent (at exit: an object
        placed on a daemon by a script's last line must get there), and logging the
        failed creations nobody looked at."""
        with cls._instances_lock:
            conns = list(cls._instances.values())
            cls._instances = {}
        deadline = time.monotonic() + settle
        for conn in conns:
            conn.creations.wait(deadline, detached_only=True)  # an owned object goes with its owner
        for conn in conns:
            conn.creations.report_unseen()
            conn.close()

    @classmethod
    def close_to(cls, host: str, port: int, reason: str) -> None:
        """Close this process's connection to ``host:port``, if it has one: every later use
        of it (a proxy, an AsyncResult) raises ServerUnavailable saying ``reason``."""
        key = (canonical_host(host), int(port))
        with cls._instances_lock:
            conn = cls._instances.pop(key, None) if cls._instances_pid == os.getpid() else None
        if conn is not None:
            conn.close(reason)

    def __init__(self, host: str, port: int, token: str, tls_ca: str | None = None) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.tls_ca = tls_ca
        self.address = server_address(host, port)
        self.client_id = random_hex(12)
        # The proof this client sends with every RPC, once the server proved itself (see _proof).
        self._metadata: tuple[tuple[str, str], ...] | None = None
        self._hello_lock = threading.Lock()
        if tls_ca:
            with open(tls_ca, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            self._channel = grpc.secure_channel(self.address, credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.AgentServerStub(self._channel)
        # The two streaming methods read and write frames with the codec: large
        # payloads come and go in chunks, without a protobuf copy of their bytes.
        # (_registered_method, as grpc's generated stubs pass it, is missing from types-grpcio.)
        self._session_rpc = self._channel.stream_stream(  # type: ignore[call-arg]
            f"/{SERVICE}/Session", request_serializer=frames.encode_frame,
            response_deserializer=frames.decode_server_frame, _registered_method=True)
        self._get_result_rpc = self._channel.unary_stream(  # type: ignore[call-arg]
            f"/{SERVICE}/GetResult", request_serializer=pb.ResultRequest.SerializeToString,
            response_deserializer=frames.decode_server_frame, _registered_method=True)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._closed = False
        self._closed_reason = ""  # why it was closed, for the errors of its later uses
        self._shm: shm.ShmDir | None = None  # the server's shared-memory directory, if it shares our host
        self._session_socket = ""  # its session socket, if it has one (agentnb.wire.local_socket)
        self._shm_probed = False
        self._probe_lock = threading.Lock()
        self._dropped: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._janitor_started = False  # started with the first owning proxy: most connections need none
        self._nudged_at = 0.0  # time.monotonic() of the last nudge of the sending thread (see submit)
        self.creations = CreationLedger(self.address)  # this process's CREATE calls to the server
        self._name: str | None = None  # the server's name, once looked up (see name)
        self._name_asked = False  # a GetInfo was sent to learn it

    def __repr__(self) -> str:
        return f"<ServerConnection {self.display}>"

    # -- what the server is called ---------------------------------------------------------

    @property
    def name(self) -> str:
        """The name given to the server (a daemon's ``lab``, a pool replica's ``farm-1``), or ``""``.

        Looked up once, without a round trip: in this user's server records, or
        in the server's GetInfo when this connection has it. A server that is
        not recorded (on another machine) is asked for it once, in the
        background, after its handshake: until it answers, the name is empty.
        Never raises.
        """
        name = self._name
        if name is None:
            try:
                record = find_record(self.host, self.port)
            except Exception:  # an unreadable runtime directory: no name, no error
                record = None
            name = self._name = record.name if record is not None else ""
        if not name and not self._name_asked:
            self._ask_name()
        return name

    @property
    def label(self) -> str:
        """What a person calls the server, shortly: its name, ``child server of this kernel``, or
        its address (see :func:`agentnb.runtime_home.server_label`). Never raises."""
        return server_label(self.address, self.name)

    @property
    def display(self) -> str:
        """The server as errors and reprs show it: ``agent server 'lab' at unix:/…/lab.sock``
        (see :func:`agentnb.runtime_home.server_display`). Cheap, never raises."""
        return server_display(self.address, self.name)

    def _ask_name(self) -> None:
        """Ask the server for its name with a GetInfo in the background, once, if it proved itself already."""
        metadata = self._metadata
        if metadata is None or self._closed or server_label(self.address) != self.address:
            return  # not proven yet, closed, or a child server (its label says whose it is)
        self._name_asked = True
        try:
            call = self._stub.GetInfo.future(pb.InfoRequest(), metadata=metadata, timeout=NAME_TIMEOUT)
            call.add_done_callback(self._take_name)
        except Exception:  # a closed channel: the name stays unknown
            pass

    def _take_name(self, call: grpc.Future) -> None:
        try:
            name = call.result().name
        except Exception:  # unanswered: the name stays unknown
            return
        if not self._name:
            self._name = name

    # -- calls on the session stream -------------------------------------------------

    def answering(self) -> bool:
        """Whether this connection's session stream is open and the server has answered on it."""
        session = self._session
        return session is not None and not session.dead and session.answered

    @property
    def transport(self) -> str:
        """How this process's calls travel to the server now: ``"session socket"`` (a server on this host,
        see :mod:`agentnb.wire.local_socket`), ``"gRPC stream"``, or ``""`` while no session is open."""
        session = self._session
        if session is None or session.dead:
            return ""
        return "session socket" if session.link is not None else "gRPC stream"

    def new_task_id(self) -> str:
        return f"{self.client_id}-{next(self._seq)}-{random_hex(8)}"

    def submit(self, kind: int, agent_id: str, method: str = "", payload: codec.Encoded = b"",
               task_id: str = "", watch: bool = False, waiting_chain: tuple[str, ...] = (),
               nudge: bool = False, owned: bool = False) -> CallFuture:
        """Send one call; return the future its reply will complete.

        ``payload`` is what :func:`codec.dumps` made; a large one follows its
        call in chunks. ``nudge``: the caller goes on without waiting (an async
        call), so hand the GIL to the sending thread if the stream was idle.
        ``owned`` (a CREATE): the object ends with this process's session.
        """
        future = CallFuture()
        self._before_sending()
        with self._lock:
            session = self._session_to_send_on()
            seq = next(self._seq)
            session.pending[seq] = future
            call = pb.Call(seq=seq, kind=kind,  # type: ignore[arg-type]  # (an int: a CallKind)
                           agent_id=agent_id, method=method, task_id=task_id, shm_reply=session.shm_dir is not None)
            if watch or waiting_chain or owned:  # (most calls have none of these: not passed, they cost nothing)
                call.watch, call.owned = watch, owned
                call.waiting_chain.extend(waiting_chain)
            idle = session.outbox.empty()
            session.send(call, payload)
        if nudge and idle:
            self._nudge()
        return future

    def _before_sending(self) -> None:
        """Refuse a closed connection; learn once per session whether the server shares this host."""
        if self._closed:
            raise self._closed_error()
        if not self._shm_probed:
            self._probe_shm()

    def _session_to_send_on(self) -> _Session:
        """The open session (one is opened if there is none), with ``_lock`` held; refuses a closed connection."""
        if self._closed:
            raise self._closed_error()
        session = self._session
        if session is None or session.dead:
            session = self._open_session()
        return session

    def _nudge(self) -> None:
        """Let the sending thread have the GIL now, after async calls put in an idle outbox.

        Otherwise a burst of async calls leaves nothing on the wire until the
        interpreter's switch interval (5 ms) forces a switch, and the server idles
        meanwhile. A sync caller needs no nudge: it waits at once, which lets the
        sender run. At most once per switch interval: with a busy thread about, each
        nudge costs the caller up to that interval to get the GIL back.
        """
        now = time.monotonic()
        if now - self._nudged_at >= NUDGE_INTERVAL:
            self._nudged_at = now
            time.sleep(0)

    def submit_calls(self, agent_ids: Sequence[str], method: str, payload: codec.Encoded,
                     watch: bool = False) -> list[tuple[str, CallFuture]]:
        """Send an asynchronous call of ``method`` with the same ``payload`` to each agent of
        ``agent_ids``, in order; their task ids and futures (:func:`agentnb.call_many`).

        What :meth:`submit` does for each, once for them all: one lock, one look at
        the session, one nudge of the sending thread.
        """
        self._before_sending()
        # One random part for them all: the client id and the seq make each id unique in this
        # process, and the random part keeps those of a forked child (same client id) apart.
        suffix = random_hex(8)
        sent: list[tuple[str, CallFuture]] = []
        with self._lock:
            session = self._session_to_send_on()
            pending, send, seqs = session.pending, session.send, self._seq
            shm_reply = session.shm_dir is not None
            idle = session.outbox.empty()
            for agent_id in agent_ids:
                seq = next(seqs)
                task_id = f"{self.client_id}-{seq}-{suffix}"
                future = CallFuture()
                pending[seq] = future
                call = pb.Call(seq=seq, kind=pb.CALL, agent_id=agent_id, method=method, task_id=task_id,
                               shm_reply=shm_reply)
                if watch:
                    call.watch = True
                send(call, payload)
                sent.append((task_id, future))
        if idle:
            self._nudge()
        return sent

    def _probe_shm(self) -> None:
        """Find out (once per session) whether the server shares this host: ask for its shared-memory directory."""
        if not self._shm_possible():
            with self._probe_lock:
                self._shm, self._session_socket, self._shm_probed = None, "", True
            return
        try:
            self.info()  # records the answer (see _learn_shm)
        except (AgentServerError, TimeoutError):
            with self._probe_lock:  # the call itself will tell; stream until the next session asks again
                self._shm, self._session_socket, self._shm_probed = None, "", True

    def _shm_possible(self) -> bool:
        """Shared memory is for a loopback server without TLS, when it is not turned off."""
        return not self.tls_ca and shm.enabled() and (canonical_host(self.host) == "127.0.0.1" or is_unix(self.host))

    def _learn_shm(self, info: pb.ServerInfo) -> None:
        """Take the server's shared-memory directory from its info, unless this session knows it already."""
        with self._probe_lock:
            if self._shm_probed:
                return
            same_host = self._shm_possible() and bool(info.host_id) and info.host_id == shm.host_id()
            self._shm = shm.ShmDir.adopt(info.shm_dir) if same_host else None
            self._session_socket = ""
            if self._shm is not None and local_socket.enabled():
                self._session_socket = local_socket.socket_path(self._shm.path, info.session_socket) or ""
            self._shm_probed = True

    def drop_agent(self, agent_id: str) -> None:
        """Delete an agent whose owning proxy was garbage-collected, in the background.

        Safe to call from ``__del__`` (any thread, any time): it only queues the id.
        """
        if self._closed:
            return
        self._dropped.put(agent_id)

    def start_janitor(self) -> None:
        """Make sure the thread that deletes dropped agents runs (called for each owning proxy)."""
        if self._janitor_started:
            return
        with self._lock:
            if self._janitor_started:
                return
            self._janitor_started = True
        threading.Thread(target=self._delete_dropped, name=f"agentnb-janitor-{self.address}", daemon=True).start()

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
        session = _Session(self._shm)
        client = f"{self.client_id} {shm.host_id()} {os.getpid()}"
        outgoing = frames.from_outbox(session.outbox, _make_client_frame, _CLOSE, MAX_CALLS_PER_FRAME,
                                      MAX_FRAME_BYTES)
        session.link = self._connect_socket(client) if self._session_socket else None
        responses: Iterator[tuple]
        if session.link is not None:  # the server's session socket: no gRPC thread on the way
            link = session.link
            responses = local_socket.replies(link, frames.decode_server_frame, lambda: bool(session.pending),
                                             self.display)
            threading.Thread(target=_write, args=(link, outgoing), name=f"agentnb-writer-{self.address}",
                             daemon=True).start()
        else:
            responses = self._session_rpc(outgoing, metadata=(*self._proof(), (CLIENT_METADATA_KEY, client)))
        thread = threading.Thread(target=self._read, args=(session, responses),
                                  name=f"agentnb-reader-{self.address}", daemon=True)
        thread.start()
        self._session = session
        return session

    def _connect_socket(self, client: str) -> local_socket.Link | None:
        """A session on the server's session socket; None when it cannot be reached (gRPC's stream then).

        Raises AuthenticationError when what answers there does not prove it holds the token.
        """
        try:
            return local_socket.connect(self._session_socket, self.token, client, self.address, HELLO_TIMEOUT)
        except OSError as exc:
            _LOGGER.debug("the session socket of the %s cannot be used (%s): the session uses gRPC's stream",
                          self.display, exc)
            return None

    def _read(self, session: _Session, responses: Iterator[tuple]) -> None:
        error: BaseException
        try:
            for replies, chunk in responses:
                session.answered = True
                session.deliver(replies, chunk)
            error = ServerUnavailable(f"the {self.display} closed the connection")
        except grpc.RpcError as exc:
            error = map_rpc_error(exc, self.display)
        except AgentServerError as exc:  # the session socket: the server stopped answering, or broke the protocol
            error = exc
        except OSError as exc:
            error = ServerUnavailable(f"the connection to the {self.display} failed: {exc}")
        except Exception as exc:  # never leave callers waiting on a dead reader
            error = ServerUnavailable(f"the connection to {self.address} failed: {exc!r}")
        if self._closed:  # closed on purpose (its server was stopped): say so
            error = self._closed_error()
        with self._lock:
            session.dead = True
            if self._session is session:
                self._session = None
            self._shm_probed = False  # the next session may be with a restarted server
            pending = list(session.pending.values())
            session.pending.clear()
        session.forget_files()
        session.outbox.put(_CLOSE)
        if session.link is not None:
            session.link.close()
        for future in pending:
            future.set_local_error(error)

    # -- the handshake ---------------------------------------------------------------------

    def _proof(self) -> tuple[tuple[str, str], ...]:
        """The metadata of every RPC to this server, after the handshake on first use.

        Nothing is sent to the server, and nothing it sends is unpickled, before
        it proved that it holds the token (:mod:`agentnb.wire.handshake`).

        Raises:
            AuthenticationError: the server could not prove it (another process
                listens at the address, or the token is wrong).
            VersionMismatch: the server runs an agentnb version that does not work with
                this one (:mod:`agentnb.wire.versions`).
            ServerUnavailable: the server cannot be reached.
        """
        metadata = self._metadata
        if self._closed:
            raise self._closed_error()
        if metadata is None:
            with self._hello_lock:
                if self._metadata is None:
                    try:
                        self._metadata = handshake.authenticate(self._channel, self.token, self.address,
                                                                agentnb.__version__, timeout=HELLO_TIMEOUT,
                                                                display=self.display)
                    except grpc.RpcError as exc:
                        raise map_rpc_error(exc, self.display) from None
                metadata = self._metadata
        return metadata

    # -- unary requests ------------------------------------------------------------------

    def _unary(self, method: str, request: Message, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(request, metadata=self._proof(), timeout=timeout)
        except grpc.RpcError as exc:
            raise map_rpc_error(exc, self.display) from None
        except ValueError:  # "Cannot invoke RPC on closed channel!": closed meanwhile
            if self._closed:
                raise self._closed_error() from None
            raise

    def get_result(self, task_id: str, timeout: float | None = None) -> StoredReply:
        """Wait for the stored result of ``task_id`` (``timeout`` in seconds)."""
        if not self._shm_probed:
            self._probe_shm()
        shm_dir = self._shm
        request = pb.ResultRequest(task_id=task_id, timeout=timeout or 0.0, shm_reply=shm_dir is not None)
        rpc_timeout = None if timeout is None else timeout + 10.0
        incoming = frames.Reassembly(shm=shm_dir)
        try:
            for replies, chunk in self._get_result_rpc(request, metadata=self._proof(), timeout=rpc_timeout):
                for reply, payload in incoming.receive(replies, chunk):
                    if isinstance(payload, frames.PayloadError):
                        raise payload
                    return StoredReply(reply.status, payload, task_id, reply.timestamp)
        except grpc.RpcError as exc:
            raise map_rpc_error(exc, self.display) from None
        except ValueError:  # the channel was closed meanwhile
            if self._closed:
                raise self._closed_error() from None
            raise
        raise AgentServerError(f"the {self.display} sent no complete result for task {task_id}")

    def info(self, timeout: float | None = 10.0) -> pb.ServerInfo:
        """The server's live figures and who it is (one GetInfo)."""
        info = self._unary("GetInfo", pb.InfoRequest(), timeout)
        if not self._shm_probed:
            self._learn_shm(info)
        if not self._name:
            self._name = info.name
        return info

    def list_agents(self, timeout: float | None = 30.0) -> list[pb.AgentDescription]:
        """The server's objects, including every one this process sent it to create
        (those still being created are waited for first: a list right after
        ``to_dist()`` shows its object)."""
        self.creations.wait(None if timeout is None else time.monotonic() + timeout)
        return list(self._unary("ListAgents", pb.ListAgentsRequest(), timeout).agents)

    def calls(self, limit: int = 0, timeout: float | None = 30.0) -> pb.CallList:
        """The server's recent calls, oldest first (GetCalls): the last ``limit``, or all it keeps for 0."""
        return self._unary("GetCalls", pb.CallsRequest(limit=limit), timeout)

    def shutdown(self, grace: float = 5.0) -> None:
        self._unary("Shutdown", pb.ShutdownRequest(grace=grace), grace + 10.0)

    def close(self, reason: str = "") -> None:
        """Close the stream and the channel; pending calls, and any later use, fail with
        ServerUnavailable (saying ``reason``, e.g. that the server was stopped)."""
        with self._lock:
            if self._closed:
                return
            self._closed_reason = reason
            self._closed = True
            session = self._session
        if session is not None:
            session.outbox.put(_CLOSE)
            if session.link is not None:  # its reader ends, failing the calls still waiting
                session.link.close()
        self._dropped.put("")
        self._channel.close()


    def _closed_error(self) -> ServerUnavailable:
        return ServerUnavailable(self._closed_reason or f"the connection to the {self.display} was closed")


def _write(link: local_socket.Link, outgoing: Iterator[pb.ClientFrame | frames.Chunk]) -> None:
    """Write a session's frames to its socket, then END (its last call is sent); the session's reader
    notices a socket that failed."""
    try:
        link.send_frames(outgoing)
        link.send(local_socket.END)
    except OSError:
        link.close()


# Seconds a process at exit waits for the creations it sent (see close_all).
EXIT_SETTLE_SECONDS = 10.0
atexit.register(ServerConnection.close_all, EXIT_SETTLE_SECONDS)
