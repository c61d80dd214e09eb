"""The session stream on a Unix socket, for a client on its server's own host.

On gRPC's session stream, a message passes through gRPC's own threads at
both ends: a sync call spends about 300 us in gRPC alone, more than the rest
of its way through agentnb. A server with a private shared-memory directory
(:mod:`agentnb.wire.shm`) therefore also listens on a Unix socket in it,
``session.sock``, and a client on the same host opens its session there; the
directory is the user's own (mode 0700), so no other user reaches it. Over
that socket go the very frames of the gRPC stream (``frames.encode_frame``'s
bytes), each behind a header of five bytes: its kind and its length.

The two sides prove themselves first, with the token and the MACs of
:mod:`agentnb.wire.handshake`, and nothing is unpickled before:

1. the client sends ``HELLO``: a fresh nonce and the name of its process
   (``"<client id> <host id> <pid>"``, as a gRPC session's metadata has it);
2. the server answers ``HELLO``: its nonce and its proof of both nonces;
3. the client checks that proof (else it sends nothing more) and sends
   ``PROOF``, its own proof of both nonces;
4. the server checks that the proof is for the nonce it just gave (no replayed
   proof) and answers ``READY``, or closes the socket.

Then ``FRAME`` carries a frame. The client ends its side with ``END`` (it sends
no more calls; the server replies to those it took, as after a gRPC
half-close); a socket that ends without ``END`` is a client gone, and a server
that dies ends it too. A client waiting for replies that hears nothing for a
while looks at the server's process (the socket names it, ``SO_PEERCRED``): a
stopped one (SIGSTOP) fails the waiting calls within seconds, as gRPC's
keepalive would; a busy one, even one holding the GIL for a long time, is
waited for.
"""

from __future__ import annotations

import os
import select
import socket
import stat
import struct
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from agentnb.errors import AgentServerError, AuthenticationError, ServerUnavailable
from agentnb.wire import frames, handshake
from agentnb.wire.protocol import MAX_MESSAGE_BYTES

SOCKET_NAME = "session.sock"
ENV_LOCAL_SOCKET = "AGENTNB_LOCAL_SOCKET"  # 0/false/no/off: same-host sessions use gRPC's stream too

FRAME, END, HELLO, PROOF, READY = range(5)
_HEADER = struct.Struct("<BI")  # kind, length of the body
_RECV_BYTES = 256 * 2**10
_SEND_JOINED = 64 * 2**10  # a body up to this size is sent with its header in one write

# A client waiting for replies looks at its server's process each time it heard nothing for this long,
# and gives the server up when that process was stopped at two looks in a row.
QUIET_SECONDS = 5.0
HANDSHAKE_SECONDS = 10.0  # the server's limit for a client's handshake


def enabled() -> bool:
    """Whether same-host sessions may use the socket (``$AGENTNB_LOCAL_SOCKET`` is not 0/false/no/off)."""
    return os.environ.get(ENV_LOCAL_SOCKET, "1").strip().lower() not in ("0", "false", "no", "off")


class ProtocolError(AgentServerError):
    """The other side sent something that is not this protocol."""


# Links whose socket a forked child must not keep open (its parent's peer would never see it close).
_LINKS: weakref.WeakSet[Link] = weakref.WeakSet()


def _close_in_child() -> None:
    for link in list(_LINKS):
        link.sock.close()


os.register_at_fork(after_in_child=_close_in_child)


class Link:
    """One end of a session socket: one thread writes to it (the handshake, then the frames), one reads.

    ``sock`` is connected, in blocking mode.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._quiet: Callable[[], None] | None = None
        self._poll: select.poll | None = None
        self.peer_pid = 0  # the process at the other end (a client's link: its server)
        _LINKS.add(self)

    def send(self, kind: int, body: bytes = b"") -> None:
        """Write one message (OSError when the socket is closed)."""
        header = _HEADER.pack(kind, len(body))
        if len(body) <= _SEND_JOINED:
            self.sock.sendall(header + body)
        else:
            self.sock.sendall(header)
            self.sock.sendall(body)

    def send_frames(self, items: Iterable[Any]) -> None:
        """Write each frame of ``items`` (messages and chunks, as ``frames.encode_frame`` writes them)."""
        for item in items:
            self.send(FRAME, frames.encode_frame(item))

    def receive(self) -> tuple[int, bytes] | None:
        """The next message, as ``(kind, body)``; None when the socket ended between two messages.

        Raises ProtocolError for a message over the size limit, ConnectionError when the socket ended
        inside one, OSError when it failed.
        """
        buffer = self._buffer
        while len(buffer) < _HEADER.size:
            if not self._fill():
                if buffer:
                    raise ConnectionResetError("the session socket ended inside a message")
                return None
        kind, size = _HEADER.unpack_from(buffer)
        if size > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"refused a message of {size} bytes on the session socket "
                                f"(at most {MAX_MESSAGE_BYTES})")
        end = _HEADER.size + size
        while len(buffer) < end:
            if not self._fill():
                raise ConnectionResetError("the session socket ended inside a message")
        with memoryview(buffer) as view:
            body = bytes(view[_HEADER.size:end])
        del buffer[:end]
        return kind, body

    def watch(self, quiet: Callable[[], None]) -> None:
        """Have the reader call ``quiet()`` (which may raise) each :data:`QUIET_SECONDS` that nothing arrives."""
        self._quiet = quiet

    def _fill(self) -> bool:
        """Read what the socket has into the buffer; False at its end."""
        if self._quiet is not None:
            if self._poll is None:
                self._poll = select.poll()
                self._poll.register(self.sock, select.POLLIN)
            while not self._poll.poll(int(QUIET_SECONDS * 1000)):
                self._quiet()
        data = self.sock.recv(_RECV_BYTES)
        if not data:
            return False
        self._buffer += data
        return True

    def expect(self, kind: int, what: str) -> bytes:
        """The body of the next message, which must be of ``kind`` (``what`` names it in the error)."""
        message = self.receive()
        if message is None:
            raise ConnectionResetError(f"the session socket ended before its {what}")
        if message[0] != kind:
            raise ProtocolError(f"expected the {what} on the session socket, got a message of kind {message[0]}")
        return message[1]

    def close(self) -> None:
        """End the socket both ways (the threads using it see its end); its file closes with the last of them."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # not connected any more
            pass


# -- the client's side ---------------------------------------------------------------------------


def socket_path(shm_dir_path: str, announced: str) -> str | None:
    """The session socket a server announced, if it is where it must be: ``session.sock`` in the server's
    shared-memory directory (which the client checked is its user's own), a socket owned by this user."""
    if not announced or announced != os.path.join(shm_dir_path, SOCKET_NAME):
        return None
    try:
        info = os.lstat(announced)
    except OSError:
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        return None
    return announced


def connect(path: str, token: str, client: str, address: str, timeout: float) -> Link:
    """Open a session on the socket at ``path``, once the server there proved it holds ``token``.

    ``client`` names this process (``"<client id> <host id> <pid>"``); ``address`` names the server in errors.

    Raises:
        AuthenticationError: the server did not prove it holds the token (nothing was sent to it but a nonce),
            or refused this client's proof.
        OSError: the socket cannot be reached (the caller may use gRPC's stream instead).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        pid, uid = peer(sock)
        if uid != os.getuid():
            raise AuthenticationError(f"the session socket of the server at {address} belongs to another user "
                                      f"(uid {uid}); nothing was sent to it")
        link = Link(sock)
        link.peer_pid = pid
        client_nonce = handshake.new_nonce()
        link.send(HELLO, client_nonce + client.encode())
        body = link.expect(HELLO, "server's hello")
        nonce_bytes = 2 * handshake.NONCE_BYTES
        metadata = handshake.client_metadata(token, client_nonce, body[:nonce_bytes], body[nonce_bytes:], address)
        link.send(PROOF, metadata[0][1].encode())
        try:
            link.expect(READY, "server's ready")
        except ConnectionResetError:
            raise AuthenticationError(f"the server at {address} refused this client's proof of the token on its "
                                      "session socket") from None
        sock.settimeout(None)
        return link
    except BaseException:
        sock.close()
        raise


def replies(link: Link, decode: Callable[[bytes], tuple], waiting: Callable[[], bool],
            display: str) -> Iterator[tuple]:
    """The decoded frames a server sends on ``link`` until it ends the socket.

    While calls wait for replies (``waiting()``) and nothing comes, the server's process is looked at
    each :data:`QUIET_SECONDS`: stopped at two looks in a row, it is given up (ServerUnavailable).
    """
    stopped_looks = [0]

    def quiet() -> None:
        if waiting() and process_stopped(link.peer_pid):
            stopped_looks[0] += 1
            if stopped_looks[0] >= 2:
                link.close()
                raise ServerUnavailable(f"the {display} stopped answering: its process (pid {link.peer_pid}) "
                                        "is stopped (SIGSTOP, or a debugger)")
        else:
            stopped_looks[0] = 0

    link.watch(quiet)
    while True:
        message = link.receive()
        if message is None:
            return
        kind, body = message
        if kind != FRAME:
            raise ProtocolError(f"a message of unknown kind {kind} on the session socket")
        yield decode(body)


def peer(sock: socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end of a connected Unix socket (``SO_PEERCRED``)."""
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid


def process_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (state T or t in ``/proc``); False when it cannot be told."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except OSError:
        return False
    state = stat_line[stat_line.rfind(b")") + 2:][:1]
    return state in (b"T", b"t")


# -- the server's side ---------------------------------------------------------------------------


def accept_client(sock: socket.socket, keys: handshake.ServerKeys,
                  timeout: float = HANDSHAKE_SECONDS) -> tuple[Link, str]:
    """Prove this server to a client that connected, and check its proof; return the link and the
    client's name for itself (``"<client id> <host id> <pid>"``).

    Raises AuthenticationError (the client is another user's process, or its proof is wrong or not
    fresh), ProtocolError or OSError; the caller then closes the socket.
    """
    _, uid = peer(sock)
    if uid != os.getuid():  # (the directory keeps other users out already)
        raise AuthenticationError(f"a process of another user (uid {uid}) connected to the session socket")
    sock.settimeout(timeout)
    link = Link(sock)
    body = link.expect(HELLO, "client's hello")
    client_nonce, client = body[:handshake.NONCE_BYTES], body[handshake.NONCE_BYTES:]
    if len(client_nonce) != handshake.NONCE_BYTES:
        raise ProtocolError("the client's hello on the session socket has no nonce")
    server_nonce, server_proof = keys.hello(client_nonce)
    link.send(HELLO, server_nonce + server_proof)
    proof = link.expect(PROOF, "client's proof").decode("ascii", errors="replace")
    fresh = proof.startswith(f"{client_nonce.hex()}:{server_nonce.hex()}:")
    if not (fresh and keys.accepts(((handshake.AUTH_METADATA_KEY, proof),))):
        raise AuthenticationError("a client on the session socket had no valid proof of the token")
    link.send(READY)
    sock.settimeout(None)
    return link, client.decode("utf-8", errors="replace")


def calls(link: Link, decode: Callable[[bytes], tuple]) -> Iterator[tuple]:
    """The decoded frames a client sends on ``link``, until its ``END``.

    Raises ConnectionResetError when the socket ends without ``END`` (the client is gone).
    """
    while True:
        message = link.receive()
        if message is None:
            raise ConnectionResetError("the client's session socket ended")
        kind, body = message
        if kind == FRAME:
            yield decode(body)
        elif kind == END:
            return
        else:
            raise ProtocolError(f"a message of unknown kind {kind} on the session socket")


def listen(path: str) -> socket.socket:
    """A listening Unix socket at ``path`` (mode 0600; its directory is the server's private one)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock
