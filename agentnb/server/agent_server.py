"""AgentServer: a gRPC server hosting agents, with its token and its record."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import secrets
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

import agentnb
from agentnb._proto import agentnb_pb2 as pb
from agentnb.errors import AgentServerError
from agentnb.runtime_dir import (
    LOOPBACK_HOSTS,
    NODE_KEY,
    ServerRecord,
    canonical_host,
    is_unix,
    remove_record,
    server_address,
    this_node,
    write_record,
)
from agentnb.server.late_removals import sweep_stale_files
from agentnb.server.local_sessions import LocalSessions
from agentnb.server.result_store import make_store
from agentnb.server.servicer import AgentServicer
from agentnb.wire import frames, handshake, local_socket, versions
from agentnb.wire.protocol import MAX_MESSAGE_BYTES, SERVICE
from agentnb.wire.shm import ShmDir

_LOGGER = logging.getLogger(__name__)
HELLO_METHOD = f"/{SERVICE}/Hello"

MAX_STREAMS = 2048  # RPCs served at once (each holds a thread while it lasts)

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # An explicit port that is taken must be an error, not a shared socket.
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    # One connection may not take every thread (a client needs a session, GetResults, a few unary calls).
    ("grpc.max_concurrent_streams", 1024),
]


def raise_fd_limit() -> None:
    """Raise this process's soft limit of open files to its hard limit: each connection takes one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def service_handlers(servicer: AgentServicer, keys: handshake.ServerKeys) -> dict[str, grpc.RpcMethodHandler]:
    """The gRPC method handlers of the service (what the generated ``add_AgentServerServicer_to_server``
    makes), except that the two streaming methods read and write their frames with the codec,
    which sends large payloads in chunks without a protobuf copy of their bytes; and Hello,
    the handshake, answered with ``keys``."""

    def hello(request: pb.HelloRequest, context: grpc.ServicerContext) -> pb.HelloReply:
        if len(request.client_nonce) != handshake.NONCE_BYTES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Hello needs a nonce of {handshake.NONCE_BYTES} bytes")
        version = agentnb.__version__
        if not versions.compatible(request.version, version):
            _LOGGER.warning("refused a client of agentnb %s: this server runs agentnb %s (%s)",
                            request.version or "older than 0.2", version, context.peer())
            context.set_trailing_metadata(((versions.VERSION_METADATA_KEY, version),))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, versions.refusal(request.version, version))
        server_nonce, server_proof = keys.hello(request.client_nonce)
        return pb.HelloReply(server_nonce=server_nonce, server_proof=server_proof, version=version)

    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Hello": grpc.unary_unary_rpc_method_handler(hello, request_deserializer=pb.HelloRequest.FromString,
                                                     response_serializer=pb.HelloReply.SerializeToString),
        "Session": grpc.stream_stream_rpc_method_handler(
            servicer.Session, request_deserializer=frames.decode_client_frame,
            response_serializer=frames.encode_frame),
        "GetResult": grpc.unary_stream_rpc_method_handler(
            servicer.GetResult, request_deserializer=pb.ResultRequest.FromString,
            response_serializer=frames.encode_frame),
    }
    for name, request, response in (("GetInfo", pb.InfoRequest, pb.ServerInfo),
                                    ("ListAgents", pb.ListAgentsRequest, pb.AgentList),
                                    ("GetCalls", pb.CallsRequest, pb.CallList),
                                    ("Shutdown", pb.ShutdownRequest, pb.ShutdownReply)):
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name), request_deserializer=request.FromString,
            response_serializer=response.SerializeToString)
    return handlers


class _ProofCheck(grpc.ServerInterceptor):
    """Refuses every call but Hello that carries no valid proof of the token, before its request is read."""

    def __init__(self, keys: handshake.ServerKeys) -> None:
        self._keys = keys

        def deny_unary(request: bytes, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no valid proof of the agent server's token")

        def deny_stream(request_iterator: object, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no valid proof of the agent server's token")

        self._deny_unary: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(deny_unary)
        self._deny_unary_stream: grpc.RpcMethodHandler[Any, Any] = grpc.unary_stream_rpc_method_handler(deny_unary)
        self._deny_stream: grpc.RpcMethodHandler[Any, Any] = grpc.stream_stream_rpc_method_handler(deny_stream)

    def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The method's own handler for Hello and for a call with a valid proof, else one that refuses it."""
        method = handler_call_details.method
        if method == HELLO_METHOD or self._keys.accepts(handler_call_details.invocation_metadata):
            return continuation(handler_call_details)
        _LOGGER.warning("refused a call to %s: no valid proof of the token", method)
        if method.endswith("/Session"):
            return self._deny_stream
        if method.endswith("/GetResult"):
            return self._deny_unary_stream
        return self._deny_unary


# How long a stopping server lets its streams send the replies already made.
FLUSH_SECONDS = 1.0


class AgentServer:
    """One agent server in this process.

    Args:
        host: the interface to bind; loopback by default.
        port: the port; 0 or None picks a free one (see :attr:`port` after start).
        name: how the server is known in the runtime directory and in listings.
        token: the token callers must send; made up when not given.
        capacity: threads running agent calls at once.
        record: write a record (with the token) to the runtime directory so that
            this user's other processes can find the server.
        local_mode: only loopback addresses may be bound unless this is False.
        tls_cert, tls_key: PEM files; when given the server speaks TLS only.
        tls_client_ca: PEM file of a CA; when given, clients must present a
            certificate it signed (mutual TLS), on top of the token.
    """

    def __init__(self, host: str = "localhost", port: int | None = None, *, name: str | None = None,
                 token: str | None = None, capacity: int = 32, pool_type: str = "local",
                 redis_url: str | None = None, max_len: int = 8192, max_expire_time: float = 7200.0,
                 record: bool = True, record_kind: str = "server", log_path: str = "",
                 local_mode: bool = True, tls_cert: str | None = None, tls_key: str | None = None,
                 tls_client_ca: str | None = None) -> None:
        if local_mode and host not in LOOPBACK_HOSTS and not is_unix(host):
            raise AgentServerError(f"host {host!r} is not a loopback address; pass local_mode=False "
                                   "(--no-local-mode) to serve other machines")
        if bool(tls_cert) != bool(tls_key):
            raise AgentServerError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
        if tls_client_ca and not tls_cert:
            raise AgentServerError("--tls-client-ca needs --tls-cert and --tls-key")
        # (certificate, key, client CA): both or neither of the first two, as checked above.
        self.tls: tuple[str, str, str | None] | None = (
            (tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None)
        self.host = host
        self.requested_port = int(port or 0)
        self.port = 0
        self.name = name
        self.token = token or secrets.token_urlsafe(32)
        self.capacity = capacity
        self.record = record
        self.record_kind = record_kind
        self.log_path = log_path
        results = make_store(pool_type, max_len=max_len, max_expire_time=max_expire_time, redis_url=redis_url,
                             integrity_key=handshake.derived_key(self.token, "result store"))
        self.servicer = AgentServicer(name=name or "agent-server", capacity=capacity, results=results,
                                      pool_type=pool_type, on_shutdown=self.stop)
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._local: LocalSessions | None = None  # the session socket for clients on this host

    def start(self) -> AgentServer:
        """Bind and start serving. Raises AgentServerError if the port is taken."""
        keys = handshake.ServerKeys(self.token)
        raise_fd_limit()
        # A stream being served holds one of these threads for its whole life (an idle session,
        # a GetResult waiting for a long task): plenty of them, made only when needed, so that
        # such streams do not keep the server from other callers; RPCs beyond the bound are
        # refused at once (RESOURCE_EXHAUSTED), not queued behind them.
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_STREAMS + self.capacity, thread_name_prefix="agentnb-grpc"),
            interceptors=[_ProofCheck(keys)],
            options=SERVER_OPTIONS,
            maximum_concurrent_rpcs=MAX_STREAMS + self.capacity,
        )
        handlers = service_handlers(self.servicer, keys)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_registered_method_handlers(SERVICE, handlers)
        if is_unix(self.host):  # a socket in the runtime directory: only this user can connect
            address = self.host
        else:
            bind_host = canonical_host(self.host) if self.host in LOOPBACK_HOSTS else self.host
            if ":" in bind_host and not bind_host.startswith("["):
                bind_host = f"[{bind_host}]"
            address = f"{bind_host}:{self.requested_port}"
        credentials = self._credentials() if self.tls else None
        try:
            if credentials is not None:
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:
            port = 0
            cause: Exception | None = exc
        else:
            cause = None
        if not port:
            raise AgentServerError(f"cannot listen on {server_address(self.host, self.requested_port)}: "
                                   "the port is taken or the address is not available") from cause
        if is_unix(self.host):
            port = 0  # the socket's path is the whole address
        self.port = port
        self.name = self.name or f"server-{port or os.getpid()}"
        self.servicer.name = self.name
        self.servicer.host, self.servicer.port, self.servicer.token = self.host, port, self.token
        if not self.tls:  # TLS clients stream: their payloads stay encrypted
            self.servicer.shm = ShmDir.create()
            if self.servicer.shm is not None:
                sweep_stale_files(self.servicer.shm, self._stopped)
                if local_socket.enabled():  # same-host clients' sessions, past gRPC's threads
                    self._local = LocalSessions(self.servicer, keys, self.servicer.shm.path)
                    self.servicer.session_socket = self._local.start()
        server.start()
        self._server = server
        if self.record:
            write_record(ServerRecord(
                name=self.name, host=self.host, port=port, pid=os.getpid(), token=self.token,
                kind=self.record_kind, log_path=self.log_path, started=time.time(), capacity=self.capacity,
                extra={NODE_KEY: this_node()},
            ))
        _LOGGER.info("agent server %s listening on %s (capacity %d, pid %d)", self.name,
                     server_address(self.host, port), self.capacity, os.getpid())
        return self

    def _credentials(self) -> grpc.ServerCredentials:
        assert self.tls is not None  # called only for a TLS server
        cert, key, client_ca = self.tls
        try:
            with open(cert, "rb") as f:
                cert_pem = f.read()
            with open(key, "rb") as f:
                key_pem = f.read()
            ca_pem = None
            if client_ca:
                with open(client_ca, "rb") as f:
                    ca_pem = f.read()
        except OSError as exc:
            raise AgentServerError(f"cannot read a TLS file: {exc}") from exc
        return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem,
                                           require_client_auth=bool(ca_pem))

    def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls, let accepted ones finish for up to ``grace`` s, then stop."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            _LOGGER.info("agent server %s stopping (running calls get a grace of %g s)", self.name, grace)
            if grace > 0:
                if not self.servicer.drain(grace):
                    _LOGGER.warning("agent server %s: calls still running after %g s are abandoned",
                                    self.name, grace)
            else:
                self.servicer.accepting = False
            if self.record and self.name:
                remove_record(self.name, os.getpid())
            if self._server is not None:
                flush = FLUSH_SECONDS if grace > 0 else 0.0
                if grace > 0:  # the replies of the calls that just finished go out before the streams end
                    self.servicer.end_sessions()
                stopped = self._server.stop(flush)
                if self._local is not None:
                    self._local.stop(flush)
                if grace > 0:
                    stopped.wait(flush + 1.0)
            self.servicer.stop_replier()
            self.servicer.results.close()
            if self.servicer.shm is not None:
                self.servicer.shm.close()
            self._stopped.set()
            _LOGGER.info("agent server %s stopped", self.name)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped (or ``timeout`` passed)."""
        return self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        """Whether the server has stopped."""
        return self._stopped.is_set()
