"""Client-side deadlines for database calls.

A server-side statement_timeout cannot help when the network path stops answering
(a dead proxy or a silent firewall keeps the TCP connection "alive" forever). A guarded
call whose deadline passes gets its socket shut down from this watcher thread, so the
blocked call fails at once with a connection error (transient) instead of hanging.

Threads: ``SocketDeadlines`` starts one, ``syncd-deadlines``, at its first guarded call, and
ends it in ``close`` (joined for at most 5 s); whoever made the object owns it (the daemon).
One lock (``_cond``) guards the armed deadlines, the stop's cap and whether it is closed; the
``on_expire`` callback is told under it."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class SocketDeadlines:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_expire: Callable[[float, bool], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_expire = on_expire
        self._cond = threading.Condition()
        # token -> (fd, expiry, its start): the call has run (expiry - start) when shut
        self._slots: dict[int, tuple[int, float, float]] = {}
        self._tokens = itertools.count()
        self._closed = False
        self._cap: float | None = None  # no call outlives this (the stop's deadline)
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, conn: Any, seconds: float) -> Iterator[None]:
        """Shut down ``conn``'s socket if the block is still running after ``seconds``."""
        token = next(self._tokens)
        with self._cond:
            self._start()
            now = self._clock()
            expiry = now + seconds
            if self._cap is not None:
                expiry = min(expiry, self._cap)
            self._slots[token] = (conn.fileno(), expiry, now)
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._slots.pop(token, None)

    def bounded(self, seconds: float) -> float:
        """``seconds``, or less if the stop's deadline comes first (at least a moment)."""
        with self._cond:
            if self._cap is None:
                return seconds
            return max(0.05, min(seconds, self._cap - self._clock()))

    def cap(self, at: float) -> None:
        """From now on no guarded call outlives ``at`` (the stop's deadline): calls under
        way and calls to come have their sockets shut then."""
        with self._cond:
            self._cap = at
            for token, (fd, expiry, start) in list(self._slots.items()):
                self._slots[token] = (fd, min(expiry, at), start)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="syncd-deadlines")
            self._thread.start()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = self._clock()
                for token, (fd, expiry, start) in list(self._slots.items()):
                    if expiry <= now:
                        del self._slots[token]
                        _shutdown(fd)
                        if self._on_expire is not None:  # how long it ran; cut by the stop?
                            stopping = self._cap is not None and expiry >= self._cap
                            self._on_expire(now - start, stopping)
                upcoming = min((e for _, e, _ in self._slots.values()), default=None)
                self._cond.wait(None if upcoming is None else max(upcoming - now, 0.01))


def _shutdown(fd: int) -> None:
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()
