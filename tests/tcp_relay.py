"""A TCP relay the tests own, in front of RabbitMQ or PostgreSQL, to play what a network does
to one process while the shared services go on serving everyone else.

* :meth:`TcpRelay.stop`: new connections refused, open ones closed (a dead broker);
  :meth:`TcpRelay.start` listens again on the same port.
* :meth:`TcpRelay.cut`: open connections reset (RST, as a node restart or a middlebox does);
  it goes on listening.
* :meth:`TcpRelay.black_hole`: connections stay open and new ones are accepted, but no byte
  goes through either way (a partition, a frozen host); :meth:`TcpRelay.restore` forwards
  again and closes the black-holed connections, as a healed partition's stale ones time out,
  so that clients reconnect.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class TcpRelay:
    """Forwards connections from ``host:port`` (port 0: a free one, known after
    :meth:`start`) to ``upstream``."""

    def __init__(
        self, upstream: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self.forwarding = True
        self._listener: socket.socket | None = None
        self._clients: list[socket.socket] = []  # clients' ends relayed since the last cut
        self._sockets: list[socket.socket] = []  # every socket opened, both ends
        self._lock = threading.Lock()

    def start(self) -> TcpRelay:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and close the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone does not.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self._close_open()

    def cut(self) -> int:
        """Reset every relayed connection (RST, not FIN); return how many."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(OSError):  # already closed by its pump: nothing to reset
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
        return len(clients)

    def connections(self) -> int:
        """Connections relayed since the last :meth:`cut`."""
        with self._lock:
            return len(self._clients)

    def black_hole(self) -> None:
        self.forwarding = False

    def restore(self) -> None:
        self.forwarding = True
        self._close_open()

    def _close_open(self) -> None:
        with self._lock:
            sockets, self._sockets, self._clients = self._sockets, [], []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # stopped
                return
            if self._listener is not listener:  # stopped meanwhile
                client.close()
                return
            with self._lock:
                self._sockets.append(client)
                self._clients.append(client)
            if not self.forwarding:
                threading.Thread(target=_swallow, args=(client,), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.append(server)
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.forwarding:
                    target.sendall(data)
                # else: dropped, and the connection stays open
        except OSError:  # the other side was reset or closed: this direction ends too
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _swallow(sock: socket.socket) -> None:
    """Read and drop: the peer's writes succeed, nothing ever answers."""
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass
