"""A loopback TCP proxy that plays the network between a client and a server on two hosts:
its open connections can be cut, and what one side sends can be held back first."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

TO_SERVER, TO_CLIENT = "to server", "to client"


class CuttableProxy:
    """A loopback TCP proxy to ``port`` whose open connections can be cut (new ones still pass).

    ``hold(direction)`` keeps what is sent that way from arriving (as a network
    that stopped carrying it would) until ``cut()``, which throws it away.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._connections: list[tuple[list[socket.socket], list[threading.Thread]]] = []
        self._lock = threading.Lock()
        self._flowing = {TO_SERVER: threading.Event(), TO_CLIENT: threading.Event()}
        for flowing in self._flowing.values():
            flowing.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            pumps = [threading.Thread(target=self._pump, args=(source, sink, self._flowing[way]), daemon=True)
                     for source, sink, way in ((client, upstream, TO_SERVER), (upstream, client, TO_CLIENT))]
            with self._lock:  # (started under the lock: a cut joins them)
                self._connections.append(([client, upstream], pumps))
                for pump in pumps:
                    pump.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, flowing: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def hold(self, direction: str) -> None:
        """From now on, what is sent ``direction`` (TO_SERVER or TO_CLIENT) stays in the proxy."""
        self._flowing[direction].clear()

    def cut(self) -> None:
        """Break every open connection, as a network failure would; what was held is lost."""
        with self._lock:
            connections, self._connections = self._connections, []
        for sockets, _ in connections:
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        # Held pumps wake to find their sockets shut and send nothing; new connections flow.
        for flowing in self._flowing.values():
            flowing.set()
        for sockets, pumps in connections:  # closed once no pump uses them: no descriptor is reused under one
            for pump in pumps:
                pump.join(10)
            for sock in sockets:
                sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@contextlib.contextmanager
def proxy_to(port: int) -> Iterator[CuttableProxy]:
    """A proxy to ``port``, closed (its connections cut) when the block ends."""
    proxy = CuttableProxy(port)
    try:
        yield proxy
    finally:
        proxy.close()
