"""A TCP proxy in front of PostgreSQL that a test can make deaf or heal: outages
without mocks (the way psycopg's own test suite simulates them). It also counts the round
trips its clients make (``turns``: a client sending after it last heard from the server),
which is what a far link charges for."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def proxy_in_front_of(dsn: str) -> tuple[Proxy, str]:
    """A proxy to the server of ``dsn`` and the DSN that goes through it."""
    info = conninfo_to_dict(dsn)
    host, port = str(info.get("host") or "localhost"), int(info.get("port") or 5432)
    proxy = Proxy(f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port))
    return proxy, make_conninfo(dsn, host="127.0.0.1", port=proxy.port)


class Proxy:
    def __init__(self, target: str | tuple[str, int]) -> None:
        self.target = target  # a unix socket path or (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._deaf = threading.Event()
        self._refusing = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.connections = 0  # accepted
        self.turns = 0  # client turns, over every connection
        self._open = 0  # connections still being pumped
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def deafen(self) -> None:
        """Keep accepting connections but never answer again, on old and new ones."""
        self._deaf.set()

    def refuse(self) -> None:
        """The database goes down: open connections are cut, new ones closed at once."""
        self._refusing.set()
        self._cut()

    def heal(self) -> None:
        """Answer again; connections that were deaf are cut so that clients reconnect."""
        self._cut()
        self._deaf.clear()
        self._refusing.clear()

    def _cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self.heal()
        with contextlib.suppress(OSError):
            self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._refusing.is_set():
                client.close()
                continue
            if isinstance(self.target, str):
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            else:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1
                self._open += 1
            self._spawn(self._pump, client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        client_spoke_last = False
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                if self._deaf.is_set():
                    continue  # swallow nothing, answer nothing: the peer just waits
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client and not client_spoke_last:
                        with self._lock:
                            self.turns += 1
                    client_spoke_last = sock is client
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._open -= 1

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """Wait until every connection has ended (its last message counted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._open:
                    return True
            time.sleep(0.01)
        return False
