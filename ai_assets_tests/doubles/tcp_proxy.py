"""A TCP proxy on 127.0.0.1 that can cut a database off: every open connection is shut down
and new ones are refused until `restore()` — a restarted or unreachable PostgreSQL, without
touching the machine's server that other processes share."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._up = threading.Event()
        self._up.set()
        self._closed = False
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                self._forget(s)

    def _forget(self, s: socket.socket) -> None:
        with self._lock:
            self._open.discard(s)
        _reset(s)

    def cut(self) -> None:
        """Shut every open connection down and refuse new ones."""
        self._up.clear()
        self.cuts += 1
        with self._lock:
            sockets, self._open = list(self._open), set()
        for s in sockets:
            _reset(s)

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reset(s: socket.socket) -> None:
    # shutdown first: close() alone does not wake a pump thread blocked in recv() on the
    # socket, which would keep the connection open and the client waiting forever.
    for step in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
        try:
            step()
        except OSError:
            pass
