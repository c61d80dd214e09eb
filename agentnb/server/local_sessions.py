"""LocalSessions: the session socket of a server, for clients on its host (see :mod:`agentnb.wire.local_socket`).

A thread accepts connections on ``session.sock`` in the server's shared-memory
directory. Each connection gets a thread of its own: it runs the handshake,
opens a :class:`~agentnb.server.session.ClientSession` with the servicer as
gRPC's Session would, has the session's reader take the calls from the
socket, and writes the session's reply frames to it until the stream ends.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from agentnb.server.ownership import Client
from agentnb.server.servicer import AgentServicer
from agentnb.wire import frames, handshake, local_socket
from agentnb.wire.protocol import CLIENT_METADATA_KEY

_LOGGER = logging.getLogger(__name__)


class LocalSessions:
    """The listening session socket of one server and the sessions opened on it."""

    def __init__(self, servicer: AgentServicer, keys: handshake.ServerKeys, directory: str) -> None:
        self._servicer = servicer
        self._keys = keys
        self.path = os.path.join(directory, local_socket.SOCKET_NAME)
        self._listener: socket.socket | None = None
        self._open: dict[local_socket.Link, threading.Thread] = {}  # each session's link and writing thread
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> str:
        """Listen; the socket's path, or ``""`` when it cannot be made (clients then use gRPC's stream)."""
        try:
            self._listener = local_socket.listen(self.path)
        except OSError as exc:
            _LOGGER.warning("no session socket for clients on this host (they use gRPC's stream): %s", exc)
            return ""
        threading.Thread(target=self._accept, args=(self._listener,), name="agentnb-local-accept",
                         daemon=True).start()
        return self.path

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:  # the listener was closed: the server stops
                return
            threading.Thread(target=self._serve, args=(sock,), name="agentnb-local-session", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        """One client's session: the handshake, then its reply frames written until the stream ends."""
        try:
            link, name = local_socket.accept_client(sock, self._keys)
        except Exception as exc:  # refused: nothing of it was read past the handshake
            _LOGGER.warning("refused a connection on the session socket: %s", exc)
            sock.close()
            return
        with self._lock:
            if self._stopping:
                link.close()
                return
            self._open[link] = threading.current_thread()
        servicer = self._servicer
        client = Client.of(((CLIENT_METADATA_KEY, name),))
        session, who = servicer.open_session(client, f"unix:{self.path}")
        try:
            servicer.read_calls(session, local_socket.calls(link, frames.decode_client_frame))
            link.send_frames(session.replies())
        except OSError:  # the client went away: its session closes below
            pass
        except Exception:
            _LOGGER.exception("the session socket's writer failed")
        finally:
            link.close()
            servicer.session_ended(session, client, who)
            with self._lock:
                self._open.pop(link, None)

    def stop(self, flush: float) -> None:
        """Stop listening; give the sessions up to ``flush`` s to write the replies they have, then end them."""
        with self._lock:
            self._stopping = True
            listener, self._listener = self._listener, None
            writers = list(self._open.values())
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept() (close alone would not)
            except OSError:
                pass
            listener.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass
        deadline = time.monotonic() + flush
        for writer in writers:
            writer.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            links = list(self._open)
        for link in links:
            link.close()
