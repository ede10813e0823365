"""A TCP relay in front of a service, which a test can stop, crash and start again."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.platform_helpers import free_port


class TcpRelay:
    """Forwards connections on ``port`` to ``target`` while open.

    :meth:`open` starts listening; :meth:`stop` refuses new connections and closes the open
    ones (as a server that was stopped); :meth:`crash` cuts the open ones with a reset and
    refuses new ones (as a server that died), until :meth:`open` again.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        self._close_all(reset=False)

    def crash(self) -> None:
        self._close_all(reset=True)

    close = stop

    def _close_all(self, *, reset: bool) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with self._lock:
            connections, self._open = self._open, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                if reset:  # RST instead of FIN: the peer sees "connection reset"
                    connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                else:
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
