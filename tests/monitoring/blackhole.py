"""A TCP relay the test owns, in front of PostgreSQL or RabbitMQ, that can stop forwarding.

``black_hole()`` plays a service that hangs without closing anything (a partition, a frozen
host): connections stay open and new ones are accepted, but no byte goes through either way.
``restore()`` forwards again for new connections and cuts the black-holed ones (as a healed
partition's stale connections would time out), so clients reconnect.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class BlackHoleRelay:
    def __init__(self, upstream: tuple[str, int], *, port: int = 0) -> None:
        self.upstream = upstream
        self.port = port
        self.forwarding = True
        self._listener: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> BlackHoleRelay:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def black_hole(self) -> None:
        self.forwarding = False

    def restore(self) -> None:
        with self._lock:
            self.forwarding = True
            held, self._held = self._held, []
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.restore()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(client)
            if not self.forwarding:
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._held.append(server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _swallow(self, sock: socket.socket) -> None:
        """Read and drop: the peer's writes succeed, nothing ever answers."""
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.forwarding:
                    target.sendall(data)
                # else: dropped, and the connection stays open
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
