"""The handshake: each side proves it holds the server's token, and the token never travels.

A client that sent its token to whatever listens on an address would hand it,
and then its pickled agents, to another user who bound that port first (a
server not up yet, a crashed one whose port was freed). Instead:

1. ``Hello(client_nonce)``. The server answers a fresh ``server_nonce`` (random
   bytes and their MAC under the token, so that the server keeps no state) and
   ``server_proof``, a MAC under the token of both nonces.
2. The client checks ``server_proof``. If it is wrong, the server does not hold
   the token (an impostor, or the client has the wrong token): the client sends
   nothing more and unpickles nothing from it.
3. Every later RPC carries ``client_nonce``, ``server_nonce`` and
   ``client_proof`` (a MAC under the token, of another label) in its metadata
   (:data:`AUTH_METADATA_KEY`). The server checks that it issued
   ``server_nonce`` and that ``client_proof`` is right before it reads the
   request, in constant time.

The MACs are HMAC-SHA256, each under its own label, so that no proof of one
kind serves as another.

Hello also carries each side's agentnb version; a client and a server that do
not work together (:mod:`agentnb.wire.versions`) refuse each other there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from agentnb.errors import AuthenticationError
from agentnb.wire import versions

AUTH_METADATA_KEY = "agentnb-auth"
NONCE_BYTES = 32
_SERVER_PROOF = b"agentnb server proof\0"
_CLIENT_PROOF = b"agentnb client proof\0"
_NONCE_MAC = b"agentnb server nonce\0"


def _mac(token: bytes, label: bytes, *parts: bytes) -> bytes:
    return hmac.new(token, label + b"".join(parts), hashlib.sha256).digest()


def derived_key(token: str, purpose: str) -> bytes:
    """A key for ``purpose`` that only holders of ``token`` can make (e.g. the MAC key of stored results)."""
    return _mac(token.encode(), b"agentnb derived key\0", purpose.encode())


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


# -- the server's side ---------------------------------------------------------------------------


class ServerKeys:
    """What a server answers to Hello, and how it checks the proof each RPC carries."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def hello(self, client_nonce: bytes) -> tuple[bytes, bytes]:
        """``(server_nonce, server_proof)`` for a client's Hello."""
        random_part = new_nonce()
        server_nonce = random_part + _mac(self._token, _NONCE_MAC, random_part)
        return server_nonce, _mac(self._token, _SERVER_PROOF, client_nonce, server_nonce)

    def accepts(self, metadata: Any) -> bool:
        """Whether an RPC's metadata carries a valid proof (see the module's doc)."""
        value = next((v for k, v in metadata or () if k == AUTH_METADATA_KEY), None)
        if not isinstance(value, str):
            return False
        try:
            client_nonce, server_nonce, proof = (bytes.fromhex(part) for part in value.split(":"))
        except ValueError:
            return False
        random_part, signature = server_nonce[:NONCE_BYTES], server_nonce[NONCE_BYTES:]
        issued = hmac.compare_digest(signature, _mac(self._token, _NONCE_MAC, random_part))
        proven = hmac.compare_digest(proof, _mac(self._token, _CLIENT_PROOF, client_nonce, server_nonce))
        return issued & proven and len(client_nonce) == NONCE_BYTES


# -- the client's side ---------------------------------------------------------------------------


def client_metadata(token: str, client_nonce: bytes, server_nonce: bytes, server_proof: bytes,
                    address: str) -> tuple[tuple[str, str], ...]:
    """Check a server's Hello reply; return the metadata every later RPC to it carries.

    Raises:
        AuthenticationError: the server did not prove it holds ``token``.
    """
    key = token.encode()
    if not hmac.compare_digest(server_proof, _mac(key, _SERVER_PROOF, client_nonce, server_nonce)):
        raise AuthenticationError(
            f"the server at {address} could not prove it holds the agent server's token: it is not the "
            "agent server you meant (another process listens there), or the token is wrong; nothing was sent to it"
        )
    proof = _mac(key, _CLIENT_PROOF, client_nonce, server_nonce)
    return ((AUTH_METADATA_KEY, f"{client_nonce.hex()}:{server_nonce.hex()}:{proof.hex()}"),)


def authenticate(channel: Any, token: str, address: str, version: str, timeout: float | None = None,
                 display: str = "") -> tuple[tuple[str, str], ...]:
    """Run the handshake on a gRPC ``channel`` as a client of agentnb ``version``; return the metadata
    of later RPCs (see :func:`client_metadata`). ``display`` names the server in a version error
    (``agent server 'lab' at ...``; by default ``agent server at ADDRESS``).

    Raises:
        AuthenticationError: the server did not prove it holds ``token``.
        VersionMismatch: the server runs an agentnb version that does not work with ``version``
            (:mod:`agentnb.wire.versions`); the message names both.
        grpc.RpcError: the server could not be reached.
    """
    import grpc

    from agentnb._proto import agentnb_pb2 as pb
    from agentnb.wire.protocol import SERVICE

    hello = channel.unary_unary(f"/{SERVICE}/Hello", request_serializer=pb.HelloRequest.SerializeToString,
                                response_deserializer=pb.HelloReply.FromString, _registered_method=True)
    client_nonce = new_nonce()
    try:
        reply = hello(pb.HelloRequest(client_nonce=client_nonce, version=version), timeout=timeout)
    except grpc.RpcError as exc:
        if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        # Unproven, as the refusal comes before the server's proof; nothing is sent or unpickled after it.
        trailing: dict[str, str | bytes] = {key: value for key, value in exc.trailing_metadata() or ()}
        their = trailing.get(versions.VERSION_METADATA_KEY, "")
        raise versions.mismatch(version, their if isinstance(their, str) else their.decode(errors="replace"),
                                display or f"agent server at {address}") from None
    metadata = client_metadata(token, client_nonce, reply.server_nonce, reply.server_proof, address)
    versions.check_server(version, reply.version, display or f"agent server at {address}")
    return metadata
